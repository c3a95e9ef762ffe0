"""The formatter's canonical layout, pinned on small inputs (exact text)."""

from __future__ import annotations

import pytest

from pdc.syntax.format import format_spec
from pdc.syntax.parse import parse_text


def fmt(text: str) -> str:
    source, diagnostics = parse_text(text, "t.pd")
    assert source is not None and not diagnostics
    return format_spec(source)


def test_keys_sorted_into_registry_order_and_short_blocks_compact() -> None:
    text = "spec s {\ntrain {seed=1 steps=10k}\ntarget tms {hidden=2 features=5}\n}\n"
    assert fmt(text) == "spec s {\n  target tms {\n    features = 5\n    hidden = 2\n  }\n  train { steps = 10k seed = 1 }\n}\n"


def test_comments_move_with_their_items() -> None:
    text = "spec s {\n  # about train\n  train { steps = 1 }  # trailing\n  # about target\n  target tms {\n    hidden = 2  # h\n  }\n  # end\n}\n"
    assert fmt(text) == (
        "spec s {\n  # about target\n  target tms {\n    hidden = 2  # h\n  }\n"
        "  # about train\n  train { steps = 1 }  # trailing\n  # end\n}\n"
    )


def test_entries_keep_their_order_and_shard_rules_align() -> None:
    text = "spec s {\n shard {\n  z.* = [dp]\n  components.*.V = [dp, tp]\n\n  batch = [dp]\n }\n}\n"
    assert fmt(text) == "spec s {\n  shard {\n    z.*            = [dp]\n    components.*.V = [dp, tp]\n\n    batch = [dp]\n  }\n}\n"


def test_values_are_canonical() -> None:
    text = 'spec s { x { a = 80GiB b = 1024B c = [ 1,2 , ] d = f( 1 ,k=2 ) e = "q\\"" } layers[1..3].{a,b}_c { C = 1 } }\n'
    assert fmt(text) == (
        'spec s {\n  x {\n    a = 80 GiB\n    b = 1024B\n    c = [1, 2]\n    d = f(1, k = 2)\n    e = "q\\""\n  }\n'
        "  layers[1..3].{a, b}_c { C = 1 }\n}\n"
    )


def test_long_or_commented_blocks_expand() -> None:
    long = "spec s { eval { every = 1000 metrics = [ci_l0, ce_kl, pgd_recon, mmcs, ml2r, identity_ci_error, activation_density] } }\n"
    assert fmt(long).splitlines()[1] == "  eval {"
    commented = "spec s { train { steps = 1 # c\n } }\n"
    assert fmt(commented) == "spec s {\n  train {\n    steps = 1  # c\n  }\n}\n"


def test_blank_lines_are_kept_but_collapsed() -> None:
    text = "spec s {\n  train { steps = 1 }\n\n\n\n  log { every = 5 }\n}\n"
    assert fmt(text) == "spec s {\n  train { steps = 1 }\n\n  log { every = 5 }\n}\n"


@pytest.mark.parametrize("text", ["", "# only a comment\n", "spec s {}\n"])
def test_degenerate_files(text: str) -> None:
    assert fmt(fmt(text)) == fmt(text)
