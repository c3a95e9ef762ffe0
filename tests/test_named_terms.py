"""Named instances of a loss term (issue 32): `stochastic_recon all { ... }` and
`stochastic_recon subset { ... }` in one spec, each with its own weight, random stream, log
keys (`loss/stochastic_recon.subset`), hash and diagnostics; the unnamed form reads as it
always did (the shipped specs' hashes are pinned in tests/test_family.py and the golden
`--print-ir` files)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from conftest import REPO, spec_text

from pdc.passes import run_passes
from pdc.syntax.load import check_text

UNNAMED = "stochastic_recon { weight = 1.0 }"
NAMED = ("stochastic_recon all { weight = 0.25 }\n"
         "    stochastic_recon subset { weight = 0.5 routing = uniform_k_subset }")


def _toy(loss_text: str) -> str:
    text = spec_text("tms_5-2")
    assert UNNAMED in text
    return text.replace(UNNAMED, loss_text)


def _checked(text: str):  # type: ignore[no-untyped-def]
    result = check_text(text, str(REPO / "specs" / "tms_5-2.pd"))
    return result, (run_passes(result.spec) if result.ok and result.spec is not None else None)


def _codes(text: str) -> list[str]:
    result, ir = _checked(text)
    return [d.code for d in result.diagnostics] + ([d.code for d in ir.diagnostics] if ir is not None else [])


def test_two_named_instances_check_as_two_terms() -> None:
    from pdc.ir.nodes import TermNode

    result, ir = _checked(_toy(NAMED))
    assert result.ok and ir is not None and not ir.failed, [d.summary for d in result.diagnostics]
    terms = {t.name: t for _, t in ir.nodes(TermNode)}
    assert [n for n in terms if n.startswith("stochastic_recon.")] == ["stochastic_recon.all", "stochastic_recon.subset"]
    assert "stochastic_recon" not in terms
    assert terms["stochastic_recon.all"].term == terms["stochastic_recon.subset"].term == "stochastic_recon"
    assert (terms["stochastic_recon.all"].weight, terms["stochastic_recon.subset"].weight) == (0.25, 0.5)
    assert dict(terms["stochastic_recon.subset"].options)["routing"] == "uniform_k_subset"
    assert dict(terms["stochastic_recon.all"].options)["routing"] == "all"
    assert terms["stochastic_recon.all"].divergence == "mse"


def test_each_instance_feeds_the_hash_and_spec_order_does_not() -> None:
    _, ir = _checked(_toy(NAMED))
    _, swapped = _checked(_toy("\n    ".join(reversed(NAMED.split("\n    ")))))
    _, reweighted = _checked(_toy(NAMED.replace("weight = 0.25", "weight = 0.3")))
    _, renamed = _checked(_toy(NAMED.replace("subset {", "subset_k {")))
    _, unnamed = _checked(_toy(UNNAMED))
    assert ir is not None and swapped is not None and reweighted is not None and renamed is not None
    assert unnamed is not None
    h = ir.facts["decomposition_hash"]
    assert swapped.facts["decomposition_hash"] == h
    assert len({h, reweighted.facts["decomposition_hash"], renamed.facts["decomposition_hash"],
                unnamed.facts["decomposition_hash"]}) == 4


def test_a_term_twice_without_names_and_a_name_twice_are_reported() -> None:
    twice = _toy(f"{UNNAMED}\n    stochastic_recon {{ weight = 2.0 }}")
    result, _ = _checked(twice)
    [diagnostic] = [d for d in result.diagnostics if d.code == "PD0203"]
    assert "`stochastic_recon` is defined twice" in diagnostic.summary
    assert any("stochastic_recon subset" in h for h in diagnostic.help)
    same_name = _toy("stochastic_recon a { weight = 1.0 }\n    stochastic_recon a { weight = 2.0 }")
    result, _ = _checked(same_name)
    assert [d.summary for d in result.diagnostics if d.code == "PD0203"] == [
        "`stochastic_recon a` is defined twice in `loss`"]
    assert _codes(_toy(f"{UNNAMED}\n    stochastic_recon b {{ weight = 2.0 }}")) == []  # unnamed + named: two terms


def test_terms_that_exist_once_take_no_name() -> None:
    """Importance and faithfulness terms are one each by definition, a stateful term keeps
    its sources in the train state under its name: none of them takes a label."""
    text = _toy(UNNAMED).replace("importance_minimality {", "importance_minimality main {")
    assert "PD0212" in _codes(text)
    assert "PD0212" in _codes(_toy(f"{UNNAMED}\n    faithfulness main {{ weight = 1.0 }}"))
    assert "PD0212" in _codes(_toy(f"{UNNAMED}\n    persistent_pgd main {{ weight = 1.0 }}"))


def test_instance_streams_are_fixed_and_distinct() -> None:
    import jax
    import numpy as np

    from pdc.decomp import losses
    from pdc.lower.terms import TermContext, instance_number

    assert instance_number("subset") == instance_number("subset") != instance_number("all")
    step_key = jax.random.PRNGKey(7)

    class _Ctx:  # TermContext.key reads only step_key
        pass

    ctx = _Ctx()
    ctx.step_key = step_key  # type: ignore[attr-defined]
    key = TermContext.key
    unnamed = key(ctx, "stochastic_recon")  # type: ignore[arg-type]
    assert np.array_equal(unnamed, losses.term_key(step_key, "stochastic_recon"))  # as before names existed
    keys = [np.asarray(key(ctx, n)) for n in ("stochastic_recon", "stochastic_recon.all", "stochastic_recon.subset")]  # type: ignore[arg-type]
    assert len({k.tobytes() for k in keys}) == 3
    assert np.array_equal(keys[2], jax.random.fold_in(unnamed, instance_number("subset")))


def test_a_spec_with_two_named_instances_trains_and_logs_both(tmp_path: Path) -> None:
    """The acceptance run: the key-use probes' tiny random Llama, 3 steps, both instances
    logged each step under their own keys (unweighted and weighted)."""
    import numpy as np

    import pdc
    from test_key_use import CHUNKWISE, LM, LM_DATA, SITES, _lm_weights

    tokens = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.int32)
    np.save(tmp_path / "tokens.npy", tokens)
    weights, _ = _lm_weights("llama", tmp_path)
    text = (LM.replace("FAMILY", "llama").replace("SITES", SITES["llama"]).replace("TIED", "false")
            .replace("DATA", LM_DATA).replace("EVAL_TOKENS", str(tmp_path / "tokens.npy"))
            .replace("TOKENS", str(tmp_path / "tokens.npy")).replace("TARGET_SOURCE", f'weights = "{weights}"')
            .replace("CI", CHUNKWISE))
    text = text.replace("loss { stochastic_recon { weight = 1.0 }",
                        "loss { stochastic_recon all { weight = 1.0 } "
                        "stochastic_recon subset { weight = 0.5 routing = uniform_k_subset }")
    text = text.replace("train { steps = 4 seed = 0 }", "train { steps = 3 seed = 0 }\n  log { every = 1 tensorboard = false }")
    text = text.replace("  eval { metrics = [ci_l0, ce_kl] }\n", "")
    spec = tmp_path / "named.pd"
    spec.write_text(text)
    pdc.train(spec, tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    for row in rows:
        a, b = row["loss/stochastic_recon.all"], row["loss/stochastic_recon.subset"]
        assert math.isfinite(a) and math.isfinite(b) and a > 0 and b > 0 and a != b
        assert row["weighted/stochastic_recon.all"] == np.float32(1.0 * a)
        assert row["weighted/stochastic_recon.subset"] == np.float32(0.5 * b)
        assert "loss/stochastic_recon" not in row


def test_overrides_and_imports_address_each_instance(tmp_path: Path) -> None:
    """`--set loss.stochastic_recon.subset.weight=…` sets the named instance (the unnamed
    block keeps `loss.stochastic_recon.weight`); an importer's named instance adds to the
    imported ones, and one of the same name merges into it."""
    from pdc.syntax.load import check_file

    text = _toy(f"{UNNAMED}\n    stochastic_recon subset {{ weight = 0.5 routing = uniform_k_subset }}")
    result = check_text(text, str(REPO / "specs" / "tms_5-2.pd"),
                        overrides=["loss.stochastic_recon.subset.weight=0.7", "loss.stochastic_recon.weight=3"])
    assert result.spec is not None, [d.summary for d in result.diagnostics]
    loss = result.spec.block("loss")
    assert {k: v.get("weight") for k, v in loss.children.items() if k.startswith("stochastic_recon")} == {
        "stochastic_recon": 3.0, "stochastic_recon.subset": 0.7, "stochastic_recon_layerwise": 1.0}

    (tmp_path / "pdc.toml").write_text("")  # the project root
    (tmp_path / "base.pd").write_text(_toy(NAMED).replace("../targets/", f"{REPO}/targets/"))
    child = tmp_path / "child.pd"
    child.write_text('import "base.pd"\n\nspec tms_5_2 {\n  loss {\n    stochastic_recon subset { weight = 0.75 }\n'
                     "    stochastic_recon third { weight = 0.125 }\n  }\n}\n")
    result = check_file(child)
    assert result.spec is not None, [d.summary for d in result.diagnostics]
    loss = result.spec.block("loss")
    got = {k: (v.get("weight"), v.get("routing")) for k, v in loss.children.items() if k.startswith("stochastic_recon.")}
    assert got == {"stochastic_recon.all": (0.25, "all"), "stochastic_recon.subset": (0.75, "uniform_k_subset"),
                   "stochastic_recon.third": (0.125, "all")}
