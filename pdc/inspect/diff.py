"""`pdc diff A B`: a semantic diff of two resolved specs, key by key, for review.

Each side is a spec file, a run directory (its recorded RUN/spec.pd) or a git revision of a
spec (`HEAD:specs/x.pd`, `git:REV:path`). Both are checked and resolved (imports, params,
defaults), flattened to `block.key` paths over checked values, and compared; each change is
grouped by the determinism class of its top block (DESIGN.md §3): *decomposition* (the
weights will differ: the decomposition hash changes), *runtime* (mesh, sharding, remat,
precision: the same math, another program) and *observation only* (logging, eval,
checkpoints, budget: bit-identical weights). JAX-free; `--compile` adds both dry-runs.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pdc.registry import SPEC
from pdc.registry.schema import Determinism
from pdc.syntax.flatten import flatten
from pdc.syntax.load import CheckResult, check_file, check_text

CLASSES = {Determinism.DECOMPOSITION: "decomposition", Determinism.RUNTIME: "runtime",
           Determinism.OBSERVATION: "observation only"}
ORDER = ("decomposition", "runtime", "observation only")


@dataclass(frozen=True)
class Side:
    """One operand, checked: what the user wrote, and the check result."""

    given: str
    result: CheckResult
    kind: str  # file | run | git


@dataclass(frozen=True)
class Change:
    key: str
    group: str
    a: Any  # None when the key is absent on that side
    b: Any
    a_from: str
    b_from: str

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "class": self.group, "a": self.a, "b": self.b, "a_from": self.a_from,
                "b_from": self.b_from}


@dataclass
class Diff:
    a: Side
    b: Side
    changes: list[Change]
    hashes: dict[str, tuple[str, str]] = field(default_factory=dict)
    memory: dict[str, Any] | None = None

    @property
    def equal(self) -> bool:
        return not self.changes

    @property
    def groups(self) -> list[str]:
        return [g for g in ORDER if any(c.group == g for c in self.changes)]

    @property
    def verdict(self) -> str:
        """The strongest class a change touches: what a reviewer must worry about first."""
        return self.groups[0] if self.changes else "equal"


def load_side(given: str, passes: bool = True) -> Side:
    """A spec file, a run directory or a git revision of a spec, checked."""
    path = Path(given)
    if path.is_dir() and (path / "run.json").exists() and (path / "spec.pd").exists():
        record = json.loads((path / "run.json").read_text())
        text = (path / "spec.pd").read_text()
        return Side(given, _with_passes(check_text(text, record.get("spec_path", str(path / "spec.pd"))), passes),
                    "run")
    if not path.exists() and ":" in given:
        rev, _, file = given.removeprefix("git:").rpartition(":")
        text = _git_show(rev or "HEAD", file)
        if text is not None:
            return Side(given, _with_passes(check_text(text, file), passes), "git")
    if not passes:
        return Side(given, check_file(given), "file")
    from pdc.passes import check

    return Side(given, check(given), "file")


def _git_show(rev: str, file: str) -> str | None:
    """The file at a revision (path relative to the working directory); imports it names
    are read from the working tree."""
    try:
        done = subprocess.run(["git", "show", f"{rev}:./{file}"], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return done.stdout if done.returncode == 0 else None


def _with_passes(result: CheckResult, passes: bool) -> CheckResult:
    if not passes or not result.ok or result.spec is None:
        return result
    from dataclasses import replace

    from pdc.passes import run_passes
    from pdc.syntax.diagnostics import sorted_diagnostics

    ir = run_passes(result.spec)
    return replace(result, diagnostics=sorted_diagnostics(result.diagnostics + ir.diagnostics), ir=ir)


def group_of(key: str) -> str:
    child = SPEC.child(key.split(".", 1)[0])
    determinism = child.determinism if child is not None else Determinism.OBSERVATION
    return CLASSES[determinism or Determinism.OBSERVATION]


def diff(a: Side, b: Side) -> Diff:
    """The key-by-key changes from `a` to `b` (both checked without errors)."""
    assert a.result.spec is not None and b.result.spec is not None
    fa, fb = flatten(a.result.spec), flatten(b.result.spec)
    changes = []
    for key in sorted(set(fa) | set(fb), key=lambda k: (ORDER.index(group_of(k)), k)):
        va, oa = fa.get(key, (None, "absent"))
        vb, ob = fb.get(key, (None, "absent"))
        if va != vb:
            changes.append(Change(key, group_of(key), va, vb, oa, ob))
    hashes = {}
    if a.result.ir is not None and b.result.ir is not None:
        hashes = {name: (a.result.ir.facts[f"{name}_hash"], b.result.ir.facts[f"{name}_hash"])
                  for name in ("decomposition", "runtime")}
    return Diff(a, b, changes, hashes)


def memory_delta(a: Any, b: Any) -> dict[str, Any]:
    """Both dry-runs' per-device memory and the peak groups whose bytes changed."""
    fields = ("argument", "output", "alias", "temp", "total")
    memory = {f: [a.memory.get(f), b.memory.get(f)] for f in fields} if a.memory and b.memory else {}
    groups_a = {g["what"]: g["bytes"] for g in (a.peak or {}).get("groups", [])}
    groups_b = {g["what"]: g["bytes"] for g in (b.peak or {}).get("groups", [])}
    changed = [{"what": w, "a": groups_a.get(w, 0), "b": groups_b.get(w, 0)}
               for w in sorted(set(groups_a) | set(groups_b)) if groups_a.get(w, 0) != groups_b.get(w, 0)]
    changed.sort(key=lambda g: -abs(g["b"] - g["a"]))
    return {"per_device": memory, "verdicts": [a.verdict, b.verdict],
            "peak": [(a.peak or {}).get("bytes"), (b.peak or {}).get("bytes")], "changed_peak_groups": changed}


def to_json(d: Diff) -> dict[str, Any]:
    return {"schema": "pdc.diff/1", "a": d.a.given, "b": d.b.given, "equal": d.equal, "verdict": d.verdict,
            "classes": d.groups, "hashes": {k: list(v) for k, v in d.hashes.items()},
            "changes": [c.to_json() for c in d.changes], "memory": d.memory}


def render(d: Diff) -> str:
    """Text for people: the verdict, then the changes grouped by class, with provenance."""
    if d.equal:
        return f"equal: {d.a.given} and {d.b.given} resolve to the same spec\n"
    lines = [f"--- {d.a.given}", f"+++ {d.b.given}", f"changes: {', '.join(d.groups)}"]
    for name, (ha, hb) in d.hashes.items():
        why = "  (a file path is written differently; it names the same file)" if ha != hb and \
            {"decomposition": "decomposition", "runtime": "runtime"}[name] not in d.groups else ""
        lines.append(f"{name} hash: {ha} → {hb}{why}" if ha != hb else f"{name} hash: {ha} (unchanged)")
    notes = {"decomposition": "the trained weights will differ",
             "runtime": "the same math, another program: memory and speed",
             "observation only": "bit-identical weights; only what is logged, evaluated or saved changes"}
    for group in d.groups:
        lines += ["", f"{group} — {notes[group]}:"]
        for c in (c for c in d.changes if c.group == group):
            lines.append(f"  {c.key}: {_show(c.a)} → {_show(c.b)}    ({c.a_from} → {c.b_from})")
    if d.memory:
        lines += ["", "dry-run, per device:"]
        from pdc.ir.plan import gib

        for name, (ma, mb) in d.memory["per_device"].items():
            if ma is None or mb is None:
                continue
            delta = mb - ma
            lines.append(f"  {name:<9} {gib(ma):>11} → {gib(mb):>11}  ({'+' if delta >= 0 else '-'}{gib(abs(delta))})")
        lines.append(f"  verdict   {d.memory['verdicts'][0]} → {d.memory['verdicts'][1]}")
        if d.memory["changed_peak_groups"]:
            lines.append("  peak groups that changed:")
            for g in d.memory["changed_peak_groups"][:10]:
                lines.append(f"    {gib(g['a']):>11} → {gib(g['b']):>11}  {g['what']}")
    return "\n".join(lines) + "\n"


def _show(value: Any) -> str:
    return "(absent)" if value is None else json.dumps(value) if not isinstance(value, str) else value
