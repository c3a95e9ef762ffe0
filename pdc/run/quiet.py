"""Silence one kind of noise a failed orbax restore leaves behind.

When orbax cannot read a checkpoint (a truncated data file), the restore's event loop
closes while tensorstore still has reads in flight; as each finishes, its callback calls
`loop.call_soon_threadsafe` on the closed loop, and Python reports every one of those
`RuntimeError: Event loop is closed` through `sys.unraisablehook` — dozens of bare
tracebacks around pdc's own one-line "checkpoint N is unreadable; skipping it". They say
nothing that line does not, so this hook drops exactly them and passes everything else on.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any


def _is_closed_loop_callback(unraisable: Any) -> bool:
    """A `RuntimeError('Event loop is closed')` raised by asyncio's own closed-loop check."""
    error = unraisable.exc_value
    if not isinstance(error, RuntimeError) or str(error) != "Event loop is closed":
        return False
    frames = traceback.extract_tb(unraisable.exc_traceback)
    return bool(frames) and frames[-1].name == "_check_closed" and "asyncio" in frames[-1].filename


def quiet_closed_loop_callbacks() -> None:
    """Put the filter in front of the current hook, unless it is there already (a test
    runner that swaps hooks per test gets it again on the next restore)."""
    previous = sys.unraisablehook
    if getattr(previous, "pdc_quiet", False):
        return

    def hook(unraisable: Any) -> None:
        if not _is_closed_loop_callback(unraisable):
            previous(unraisable)

    hook.pdc_quiet = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


__all__ = ["quiet_closed_loop_callbacks"]
