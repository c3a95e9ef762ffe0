"""Site-pattern structure and matching."""

from __future__ import annotations

import pytest

from pdc.syntax.ast import Alt, IndexRange
from pdc.syntax.patterns import matches, parse_pattern
from pdc.syntax.span import Span

SPAN = Span("p.pd", 1, 1, 1, 80)


def pattern(text: str):
    diagnostics: list = []
    result = parse_pattern(text, SPAN, diagnostics)
    assert not diagnostics, diagnostics
    return result


def test_structure() -> None:
    p = pattern("layers[18..23, 30].self_attn.{q, k}_proj")
    assert p.segments[0].part == "layers"
    assert p.segments[0].indices == (IndexRange(18, 23), IndexRange(30, 30))
    assert p.segments[2].part == Alt(("q", "k"), "_proj")
    assert p.text == "layers[18..23, 30].self_attn.{q, k}_proj"


@pytest.mark.parametrize("text,path,expected", [
    ("layers[18..23].mlp.*", "layers.20.mlp.up_proj", True),
    ("layers[18..23].mlp.*", "layers.24.mlp.up_proj", False),
    ("layers.*.mlp.{gate_proj, up_proj}", "layers.3.mlp.down_proj", False),
    ("components.*.{q,k,v}_proj.U", "components.layers.0.self_attn.q_proj.U", False),
    ("components.**.{q,k,v}_proj.U", "components.layers.0.self_attn.q_proj.U", True),
    ("ci.**", "ci", False),
    ("ci.**", "ci.blocks.0.q", True),
    ("hidden_layers.0", "hidden_layers.0", True),
])
def test_matching(text: str, path: str, expected: bool) -> None:
    assert matches(pattern(text), path) is expected


def test_errors_point_inside_the_pattern() -> None:
    diagnostics: list = []
    parse_pattern("layers[5..2].mlp.{a,,b}", SPAN, diagnostics)
    assert [(d.code, d.span.col) for d in diagnostics] == [("PD0105", 7), ("PD0105", 18)]
