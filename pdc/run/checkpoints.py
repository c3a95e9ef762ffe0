"""Orbax checkpoints of a run: save synchronously, restore the latest *complete* one.

Orbax finishes a save by writing `commit_success.txt` into `<step>.orbax-checkpoint-tmp-*`
and renaming that directory to `<step>`. So a run killed mid-save leaves a tmp directory
(which orbax silently ignores), and a step directory without the commit file is a partial
copy. Resume therefore walks the checkpoints newest first and skips, with one stderr line
naming the step and the reason, every one that is interrupted, uncommitted or cannot be
read back (a truncated or missing data file). Skipped checkpoints are moved to
`RUN/ckpts-skipped/` — kept for inspection, but out of orbax's way, since the resumed run
saves that step again. When only interrupted saves exist the run starts afresh; when
other checkpoints exist but none restores, nothing is moved and resume stops: that
points at a systematic problem (a changed state layout), not at one bad save.
"""

from __future__ import annotations

import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import orbax.checkpoint as ocp

from pdc.run.quiet import quiet_closed_loop_callbacks

COMMIT_FILE = "commit_success.txt"  # orbax writes it last, inside the directory it then renames
SKIPPED = "ckpts-skipped"
_TMP = re.compile(r"^(\d+)\.orbax-checkpoint-tmp-")


@dataclass(frozen=True)
class Skipped:
    """A checkpoint that resume could not use, and why (one line for people)."""

    step: int
    path: Path
    reason: str

    @property
    def incomplete(self) -> bool:
        """An interrupted save (a tmp directory): never finished, so starting afresh when
        nothing else exists loses nothing. A step directory without its commit file does not
        count — an orbax that wrote none would otherwise make every checkpoint look unfinished."""
        return self.reason.startswith("incomplete")


class NoCheckpoint(Exception):
    """Checkpoints exist but none can be restored; the message lists each one's problem."""


def open_manager(directory: Path, keep: int) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False)
    return ocp.CheckpointManager(directory.resolve(), options=options)


def save(manager: ocp.CheckpointManager, step: int, state: Any) -> None:
    manager.save(step, args=ocp.args.StandardSave(state), force=True)
    manager.wait_until_finished()  # synchronous: a SIGTERM save is on disk before exit


class Upgrade(NamedTuple):
    """An older layout of the saved state (`abstract`) and how to bring a state restored
    in it up to date (`convert`): tried when a checkpoint does not restore as it is."""

    abstract: Any
    convert: Callable[[Any], Any]


def restore_step(manager: ocp.CheckpointManager, step: int, abstract: Any, upgrade: Upgrade | None = None) -> Any:
    """Checkpoint `step` restored onto `abstract`, or else onto `upgrade.abstract` and
    converted; the first error is raised when neither reads."""
    quiet_closed_loop_callbacks()  # a failed read's stray callbacks would print dozens of tracebacks
    try:
        return manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as error:  # noqa: BLE001 — re-raised unless the older layout reads
        if upgrade is None:
            raise
        try:
            old = manager.restore(step, args=ocp.args.StandardRestore(upgrade.abstract))
        except Exception:  # noqa: BLE001
            raise error from None
        return upgrade.convert(old)


def restore_latest(manager: ocp.CheckpointManager, abstract: Any, step_of: Any, primary: bool,
                   upgrade: Upgrade | None = None) -> Any | None:
    """The newest checkpoint that restores onto `abstract`, or None when there is none
    but interrupted saves; `step_of(state)` must equal its step. Skipped ones are reported
    and set aside; raises `NoCheckpoint` when other checkpoints exist but none restores."""
    directory = Path(manager.directory)
    skipped: list[Skipped] = []
    for step, path in _candidates(manager, directory):
        reason = _incomplete(path)
        state = None
        if reason is None:
            try:
                state = restore_step(manager, step, abstract, upgrade)
            except Exception as error:  # noqa: BLE001 — any unreadable checkpoint is skipped, loudly
                reason = f"unreadable ({_first_line(error)})"
        if state is not None and step_of(state) != step:
            reason, state = f"holds step {step_of(state)}", None
        if state is not None:
            _set_aside(manager, skipped, primary)
            return state
        skipped.append(Skipped(step, path, reason or "unreadable"))
        print(f"pdc train: checkpoint {step} is {reason}; skipping it", file=sys.stderr)
    if all(s.incomplete for s in skipped):
        _set_aside(manager, skipped, primary)
        return None
    raise NoCheckpoint("no checkpoint in {} can be restored ({}); they are left in place".format(
        directory, "; ".join(f"{s.step}: {s.reason}" for s in skipped)))


def _candidates(manager: ocp.CheckpointManager, directory: Path) -> list[tuple[int, Path]]:
    """Every checkpoint directory with its step, newest first; at one step, the
    interrupted (tmp) save sorts before the finished one."""
    found = [(step, 1, directory / str(step)) for step in manager.all_steps()]
    if directory.is_dir():
        found += [(int(m.group(1)), 0, p) for p in directory.iterdir() if (m := _TMP.match(p.name))]
    return [(step, path) for step, _, path in sorted(found, key=lambda f: (-f[0], f[1]))]


def _incomplete(path: Path) -> str | None:
    if _TMP.match(path.name):
        return "incomplete (its save was interrupted)"
    if path.is_dir() and not (path / COMMIT_FILE).exists():
        return f"partial (no {COMMIT_FILE}: a torn save or copy)"
    return None


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    text = lines[0].split(" See full TensorStore details")[0] if lines else ""  # then a dump of its spec
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _set_aside(manager: ocp.CheckpointManager, skipped: list[Skipped], primary: bool) -> None:
    """Move skipped checkpoints to RUN/ckpts-skipped/ (process 0; the others wait) and let
    the manager forget them, so the resumed run can save those steps again."""
    if not skipped:
        return
    _barrier("pdc-ckpt-skip-start")
    if primary:
        for item in skipped:
            target = _free_name(Path(manager.directory).parent / SKIPPED / item.path.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(item.path), str(target))
            print(f"pdc train: moved the skipped checkpoint {item.step} to {target}", file=sys.stderr)
    _barrier("pdc-ckpt-skip-done")
    manager.reload()


def _free_name(path: Path) -> Path:
    n = 1
    candidate = path
    while candidate.exists():
        candidate, n = path.with_name(f"{path.name}.{n}"), n + 1
    return candidate


def _barrier(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


__all__ = ["COMMIT_FILE", "NoCheckpoint", "SKIPPED", "Skipped", "Upgrade", "open_manager", "restore_latest",
           "restore_step", "save"]
