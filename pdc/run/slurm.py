"""`pdc train SWEEP --slurm`: a SLURM array script that trains one sweep point per task."""

from __future__ import annotations

import shlex
from typing import Sequence


def array_script(path: str, spec: str, sweep: str, points: Sequence[str], overrides: Sequence[str] = (),
                 out: str | None = None) -> str:
    """The submission script (printed; `sbatch` it, or edit the `#SBATCH` lines first). Task
    i trains point i into runs/<spec>-<point> (or OUT/<point>), resuming when rerun."""
    sets = "".join(f" --set {shlex.quote(o)}" for o in overrides)
    where = f"{shlex.quote(out)}/\"$POINT\"" if out else f"runs/{spec}-\"$POINT\""
    return "\n".join([
        "#!/bin/bash",
        f"#SBATCH --job-name={spec}-{sweep}",
        f"#SBATCH --array=0-{len(points) - 1}",
        "#SBATCH --output=%x-%a.out",
        f"# pdc sweep `{sweep}` of {path}: {len(points)} points, one per array task",
        f"POINTS=({' '.join(shlex.quote(p) for p in points)})",
        'POINT="${POINTS[$SLURM_ARRAY_TASK_ID]}"',
        f"exec pdc train {shlex.quote(path)} --point \"$POINT\" --out {where}{sets}",
        "",
    ])
