"""Lowering: the validated IR → one jitted train step with explicit shardings."""
