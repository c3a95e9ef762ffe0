"""Running a compiled program: data, the train loop, checkpoints, export."""
