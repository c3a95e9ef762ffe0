"""Pass 2 — expand site patterns against the target's module tree.

A pattern that matches no matrix, or a matrix claimed by two entries, is an error.
Sites come out in the target's canonical order, whatever the order of the entries."""

from __future__ import annotations

import difflib

from pdc.ir.graph import IR
from pdc.ir.nodes import SiteNode
from pdc.syntax.checked import Entry
from pdc.syntax.diagnostics import Diagnostic, Related
from pdc.syntax.patterns import literal_path, matches
from pdc.targets import TargetShape



def run(ir: IR) -> IR:
    shape: TargetShape = ir.facts["target"]
    decompose = ir.spec.block("decompose")
    assert decompose is not None
    claimed: dict[str, Entry] = {}
    paths = {m.path for m in shape.matrices}
    for entry in decompose.entries:
        literal = literal_path(entry.pattern)
        if literal is not None:
            hits = [literal] if literal in paths else []
        else:
            hits = [m.path for m in shape.matrices if matches(entry.pattern, m.path)]
        if not hits:
            ir.error(_no_match(entry, shape))
        elif (beyond := _indices_beyond(entry, paths)):
            ir.error(beyond)
        for path in hits:
            if path in claimed:
                ir.error(Diagnostic("PD0304", f"`{path}` is claimed by two site patterns", entry.pattern.span,
                                    "claims it again", (Related(claimed[path].pattern.span, "first claimed"),),
                                    ("each matrix may be decomposed once; narrow one of the patterns",)))
            else:
                claimed[path] = entry
    for order, matrix in enumerate(m for m in shape.matrices if m.path in claimed):
        entry = claimed[matrix.path]
        ir.add(f"site:{matrix.path}", SiteNode(matrix.path, matrix.kind, matrix.layer, order, matrix.d_in,
                                               matrix.d_out, entry.value.C, matrix.reads, entry.pattern.span,
                                               entry.key_spans.get("C")), "target")
    return ir


def _no_match(entry: Entry, shape: TargetShape) -> Diagnostic:
    paths = [m.path for m in shape.matrices]
    close = difflib.get_close_matches(entry.pattern.text, paths, n=1, cutoff=0.5)
    help_ = [f"did you mean `{close[0]}`?"] if close else []
    examples = ", ".join(f"`{p}`" for p in _examples(paths))
    if any(segment.indices for segment in entry.pattern.segments) and shape.n_layers > 1:
        help_.insert(0, f"this target has {shape.n_layers} layers, numbered 0..{shape.n_layers - 1}")
    help_.append(f"sites of this {shape.family} target look like {examples}")
    return Diagnostic("PD0303", f"site pattern `{entry.pattern.text}` matches no matrix of the target",
                      entry.pattern.span, "matches nothing", help=tuple(help_))


def _indices_beyond(entry: Entry, paths: set[str]) -> Diagnostic | None:
    """`layers[2..5]` on a 4-layer model matches layers 2 and 3; the 4 and 5 it also names
    do not exist. Matching what exists and dropping the rest would decompose fewer sites
    than the spec says."""
    for segment in entry.pattern.segments:
        if not segment.indices or not isinstance(segment.part, str):
            continue
        have = {int(parts[i + 1]) for parts in (p.split(".") for p in paths)
                for i in range(len(parts) - 1) if parts[i] == segment.part and parts[i + 1].isdigit()}
        named = {i for r in segment.indices for i in range(r.first, r.last + 1)}
        missing = sorted(named - have)
        if have and missing:
            return Diagnostic("PD0328", f"site pattern `{entry.pattern.text}` names {segment.part} "
                              f"{_ranges(missing)}, which the target does not have", segment.span,
                              "beyond the target", help=(f"this target's {segment.part} are numbered "
                                                         f"{min(have)}..{max(have)}",))
    return None


def _ranges(indices: list[int]) -> str:
    return ", ".join(str(i) for i in indices[:6]) + (", ..." if len(indices) > 6 else "")


def _examples(paths: list[str]) -> list[str]:
    """A few distinct kinds of path, for orientation."""
    seen: dict[str, str] = {}
    for path in paths:
        seen.setdefault(path.rsplit(".", 1)[-1], path)
    return list(seen.values())[:4]
