"""Which part of the spec a compiled buffer belongs to, and the spec line that asked for it.

Arguments are named by their pytree path (`state.opt_ci[1][0].mu[...]`, `params['embed']`,
`batch`); everything else by the `named_scope` it was traced under (`pdc.inspect.hlo`).
Collectives are their own group: the shard rules put them there, not a loss term.
"""

from __future__ import annotations

import os
import re
from typing import Callable

from pdc.inspect import hlo
from pdc.inspect.peak import Owner
from pdc.ir.graph import IR
from pdc.ir.nodes import SiteNode, TermNode
from pdc.syntax.span import Span

# state field → (group, words for people, the spec block whose line it is: path of child names)
_STATE = {
    "components": ("components", "components V/U (trained)", ("decompose",)),
    "opt_components": ("optimizer.components", "components' optimizer state", ("optimize", "components")),
    "ci": ("ci.params", "CI network parameters (trained)", ("ci",)),
    "ci_buffers": ("ci.params", "CI network parameters (trained)", ("ci",)),
    "opt_ci": ("optimizer.ci", "CI network's optimizer state", ("optimize", "ci")),
    "adversaries": ("loss.persistent_pgd.sources", "persistent adversary sources and moments",
                    ("loss", "persistent_pgd")),
    "since_fired": ("state.counters", "step counter and alive tracker", ("train",)),
    "step": ("state.counters", "step counter and alive tracker", ("train",)),
}
_STATE_FIELD = re.compile(r"^state\.(\w+)")


class SpecLines:
    """`file:line` of spec blocks and sites, as people read them."""

    def __init__(self, ir: IR) -> None:
        self.ir = ir
        self.site_spans = {}
        for _, site in ir.nodes(SiteNode):
            self.site_spans.setdefault(site.kind, site.span)

    @staticmethod
    def text(span: Span | None) -> str:
        if span is None:
            return "-"
        path = span.file
        try:
            relative = os.path.relpath(path)
            path = relative if not relative.startswith("..") else path
        except ValueError:
            pass
        return f"{path}:{span.line}"

    def block(self, path: tuple[str, ...]) -> str:
        """The line of the deepest block of `path` the spec has (a default block: the spec's)."""
        node = self.ir.spec.root
        for name in path:
            child = node.child(name)
            if child is None:
                break
            node = child
        return self.text(node.header or node.span)

    def site(self, kind: str) -> str:
        return self.text(self.site_spans.get(kind)) if kind in self.site_spans else self.block(("decompose",))

    def spec(self) -> str:
        return self.text(self.ir.spec.root.header or self.ir.spec.root.span)


def owner_function(ir: IR) -> Callable[[hlo.Instruction | None], Owner]:
    """The owner of a buffer from its defining instruction (None: not in the module text)."""
    lines = SpecLines(ir)
    cache: dict[tuple[str, str], Owner] = {}

    def owner(instruction: hlo.Instruction | None) -> Owner:
        if instruction is None:
            return _unscoped(lines)
        key = (instruction.opcode, instruction.op_name)
        if key not in cache:
            cache[key] = _owner(instruction, lines)
        return cache[key]

    return owner


def _owner(instruction: hlo.Instruction, lines: SpecLines) -> Owner:
    name = instruction.op_name
    if m := _STATE_FIELD.match(name):
        group, what, block = _STATE.get(m.group(1), ("state", "train state", ("train",)))
        return Owner(group, what, lines.block(block))
    if name.startswith("params"):
        return Owner("target", "frozen target weights", lines.block(("target",)))
    if name == "batch":
        return Owner("batch", "the token batch", lines.block(("data",)))
    if instruction.opcode.removesuffix("-start").removesuffix("-done") in hlo.COLLECTIVES:
        return Owner("collectives", "collective buffers (from the shard rules)", lines.block(("shard",)))
    scope = instruction.scope.split("/")[0]
    if scope == "clean":
        return Owner("clean", "clean forward of the target", lines.block(("target",)))
    if scope == "ci":
        return Owner("ci", "CI network activations", lines.block(("ci",)))
    if scope.startswith("loss."):
        parts = scope.split(".")
        named = ".".join(parts[1:3])  # a named instance's scope: `loss.stochastic_recon.subset`
        term = named if len(parts) > 2 and named in {t.name for _, t in lines.ir.nodes(TermNode)} else parts[1]
        return Owner(f"loss.{term}", f"loss term `{term}` (forward, backward)", lines.block(("loss", term)))
    if scope.startswith("optimize."):
        group = scope.split(".")[1]
        return Owner(f"optimize.{group}", f"optimizer update of `{group}`", lines.block(("optimize", group)))
    if scope.startswith("decompose."):
        kind = scope.split(".")[1]
        return Owner(f"decompose.{kind}", f"site `{kind}` outside a loss term", lines.site(kind))
    return _unscoped(lines)


def _unscoped(lines: SpecLines) -> Owner:
    """Buffers with no pdc scope: loop-carried values, buffers XLA made itself, step glue."""
    return Owner("step", "no source scope: loop carries, XLA-made buffers, step bookkeeping", lines.spec())


__all__ = ["SpecLines", "owner_function"]
