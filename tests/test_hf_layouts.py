"""HF config.json in both transformers layouts: the ≥ 5 one (`rope_parameters` holding
`rope_theta` and the scaling) and the older one (top-level `rope_theta` + `rope_scaling`)
give pdc the same model — parameters and logits identical — from a checked-in config pair
(the same tiny Llama written by each version) and generated weights. Settings pdc cannot run
are diagnostics of `pdc check` at the spec's `config` line, never a silently different model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from pdc.models import build_target, load_params
from pdc.targets.llama.hf import hf_options, save_hf
from pdc.targets.llama.model import RopeScaling, inv_freq
from pdc.passes import run_passes
from pdc.targets.llama import LlamaKeys
from pdc.syntax.load import check_text
from pdc.targets import llama as llama_shape

from conftest import REPO

LAYOUTS = REPO / "tests" / "data" / "hf_layouts"
PATHS = ["layers.1.mlp.down_proj", "layers.2.self_attn.q_proj"]


def model_dir(tmp_path: Path, layout: str) -> Path:
    directory = tmp_path / layout
    directory.mkdir()
    shutil.copy(LAYOUTS / layout / "config.json", directory / "config.json")
    return directory


def build(directory: Path, **override):
    config = json.loads((directory / "config.json").read_text())
    shape = llama_shape.shape(LlamaKeys(config="config.json"), directory, "llama")
    return build_target(shape, PATHS, **(hf_options(config) | override))


def test_both_transformers_layouts_give_identical_parameters_and_logits(tmp_path: Path) -> None:
    tokens = jax.numpy.asarray(np.random.default_rng(0).integers(0, 48, (2, 12)), jax.numpy.int32)
    models, loaded, logits = {}, {}, {}
    for layout in ("transformers4", "transformers5"):
        directory = model_dir(tmp_path, layout)
        models[layout] = model = build(directory)
        save_hf(jax.device_get(model.init_params(jax.random.PRNGKey(3))), directory)
        loaded[layout] = load_params(model, directory)
        logits[layout] = np.asarray(model.clean(loaded[layout], tokens).output)
    old, new = models["transformers4"].config, models["transformers5"].config
    assert new == old and new.rope_theta == 10_000.0
    assert new.rope_scaling == RopeScaling(8.0, 1.0, 4.0, 16) and new.rms_norm_eps == 1e-6
    for a, b in zip(jax.tree.leaves(loaded["transformers4"]), jax.tree.leaves(loaded["transformers5"])):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert np.array_equal(logits["transformers4"], logits["transformers5"])
    # what reading only the old keys did to a ≥ 5 file: θ = 500000, no scaling — another model
    default = build(tmp_path / "transformers5", rope_theta=500_000.0, rope_scaling=None)
    assert not np.allclose(np.asarray(default.clean(loaded["transformers5"], tokens).output), logits["transformers5"],
                           rtol=1e-3)


SPEC = """spec hf {
  target llama {
    config = "config.json"
    weights = "."
  }
  data tokens { path = "tokens.npy" seq_len = 8 batch = 2 }
  decompose { layers[1].mlp.down_proj { C = 4 } }
  ci global_transformer { d_model = 16 blocks = 1 heads = 2 mlp = 32 }
  loss {
    faithfulness { weight = 1.0 }
    stochastic_recon { weight = 1.0 }
    importance_minimality { weight = 1e-4 p = 1.0 }
  }
  optimize { components { adamw { lr = 1e-3 } } ci { adamw { lr = 1e-3 } } }
  train { steps = 10 }
}
"""


def diagnostics_of(tmp_path: Path, config: dict) -> list[tuple[str, str, int]]:
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = check_text(SPEC, str(tmp_path / "hf.pd"))
    assert result.ok and result.spec is not None, [d.summary for d in result.diagnostics]
    return [(d.code, d.summary, d.span.line) for d in run_passes(result.spec).diagnostics]


def v5() -> dict:
    return json.loads((LAYOUTS / "transformers5" / "config.json").read_text())


@pytest.mark.parametrize("change,words", [
    (lambda c: c["rope_parameters"].update(rope_type="yarn"), "RoPE type `yarn`"),
    (lambda c: c["rope_parameters"].update(rope_type="dynamic"), "RoPE type `dynamic`"),
    (lambda c: c["rope_parameters"].pop("low_freq_factor"), "have no `low_freq_factor`"),
    (lambda c: c["rope_parameters"].update(rope_theta="big"), "`rope_theta`"),
    (lambda c: c.update(rope_parameters={"full_attention": {"rope_type": "default"}}), "per-layer-type RoPE"),
    (lambda c: c.update(hidden_act="gelu"), "`hidden_act`"),
    (lambda c: c.update(attention_bias=True), "`attention_bias` is true"),
    (lambda c: c.update(mlp_bias=True), "`mlp_bias` is true"),
    (lambda c: c.update(vocab_size=True), "`vocab_size`"),
], ids=["yarn", "dynamic", "llama3-missing-key", "theta-string", "per-layer-rope", "gelu", "attention-bias",
        "mlp-bias", "bool-vocab"])
def test_settings_pdc_cannot_run_are_diagnostics_at_the_config_line(tmp_path: Path, change, words: str) -> None:
    config = v5()
    change(config)
    found = diagnostics_of(tmp_path, config)
    code = "PD0301" if words == "`vocab_size`" else "PD0406"  # a dimension vs a model pdc cannot run
    assert [(c, line) for c, _, line in found] == [(code, 3)], found
    assert words in found[0][1]


def test_linear_rope_scaling_divides_every_frequency(tmp_path: Path) -> None:
    config = v5()
    config["rope_parameters"] = {"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0}
    assert diagnostics_of(tmp_path, config) == []
    options = hf_options(config)
    assert options["rope_scaling"] == RopeScaling(4.0, kind="linear")
    base = build(tmp_path, rope_scaling=None)
    scaled = build(tmp_path)
    np.testing.assert_allclose(inv_freq(scaled.config), inv_freq(base.config) / 4.0)


# ---- one truth: a value written in the spec (or by --set) wins over config.json ---------------

ONE_TRUTH = SPEC.replace('    config = "config.json"\n    weights = "."\n', '    weights = "m"\n    dtype = f32\n')
TOKENS = np.random.default_rng(1).integers(0, 48, (2, 8))


def checkpoint_dir(tmp_path: Path, **config_changes) -> Path:
    """A tiny random Llama in the transformers ≥ 5 layout (`rope_parameters`), RoPE base 500000
    and plain RoPE, under tmp_path/m with its config.json beside the weights (no `config` key)."""
    directory = tmp_path / "m"
    directory.mkdir(exist_ok=True)
    config = v5()
    config["rope_parameters"] = {"rope_type": "default", "rope_theta": 500_000.0}
    config.update(config_changes)
    (directory / "config.json").write_text(json.dumps(config))
    shape = llama_shape.shape(LlamaKeys(config="config.json"), directory, "llama")
    model = build_target(shape, PATHS)
    save_hf(jax.device_get(model.init_params(jax.random.PRNGKey(5))), directory)
    return directory


def run_spec(tmp_path: Path, text: str = ONE_TRUTH, overrides: tuple[str, ...] = ()):
    """The IR of `text` (with `--set` overrides) and the logits of the model its lowering
    builds, on the checkpoint in tmp_path/m."""
    from pdc import api
    from pdc.lower.program import lower_program

    spec = tmp_path / "hf.pd"
    spec.write_text(text)
    result = api.check(spec, overrides)
    assert result.ok and result.ir is not None, [d.summary for d in result.diagnostics]
    target = lower_program(result.ir).target
    params = load_params(target, tmp_path / "m")
    return result.ir, target, np.asarray(target.clean(params, jax.numpy.asarray(TOKENS, jax.numpy.int32)).output)


def setting(ir, name: str) -> tuple:
    return ir.facts["target"].settings[name]


def test_config_json_is_found_beside_the_weights(tmp_path: Path) -> None:
    checkpoint_dir(tmp_path)
    ir, target, _ = run_spec(tmp_path)
    assert ir.facts["target"].config == "m/config.json (found beside `weights`)"
    assert target.config.rope_theta == 500_000.0 and target.config.rms_norm_eps == 1e-6
    assert setting(ir, "rope_theta") == (500_000.0, "m/config.json `rope_parameters.rope_theta`")
    assert setting(ir, "hidden") == (32, "m/config.json `hidden_size`")


@pytest.mark.parametrize("name,value", [("rope_theta", 10_000.0), ("rms_norm_eps", 0.5)])
def test_a_forward_setting_written_or_set_wins_over_config_json(tmp_path: Path, name: str, value: float) -> None:
    """Written in the spec or given by `--set`: the built model runs it (the logits change),
    the IR's options carry it, and the plan names where it came from."""
    checkpoint_dir(tmp_path)
    _, _, base = run_spec(tmp_path)
    written = ONE_TRUTH.replace("    dtype = f32\n", f"    dtype = f32\n    {name} = {value}\n")
    for ir, target, logits, source in (
            (*run_spec(tmp_path, written), "hf.pd:5"),
            (*run_spec(tmp_path, overrides=(f"target.{name}={value}",)), "--set 1")):
        assert getattr(target.config, name) == value
        assert not np.allclose(logits, base, atol=1e-4)
        assert setting(ir, name)[0] == value and setting(ir, name)[1].endswith(source)
        assert getattr(ir.options("target"), name) == value
        assert (name, value) in dict(ir.payload("target").forward).items()


def test_tying_written_in_the_spec_wins(tmp_path: Path) -> None:
    """config.json says untied; `tied_embeddings = true` builds a tied head (the checkpoint's
    lm_head is then not read) whose logits are the embedding's."""
    checkpoint_dir(tmp_path)
    ir, target, logits = run_spec(tmp_path, overrides=("target.tied_embeddings=true",))
    assert target.config.tied and setting(ir, "tied_embeddings") == (True, "--set 1")
    assert "target.lm_head" not in {t.path for t in ir.facts["target"].tensors}
    _, untied, untied_logits = run_spec(tmp_path)
    assert not untied.config.tied and not np.allclose(logits, untied_logits, atol=1e-4)


def test_a_dimension_agreeing_with_config_json_is_accepted_and_a_contradiction_is_pd0330(tmp_path: Path) -> None:
    checkpoint_dir(tmp_path)
    ir, _, _ = run_spec(tmp_path, overrides=("target.hidden=32",))
    assert setting(ir, "hidden") == (32, "--set 1")
    from pdc import api

    (tmp_path / "hf.pd").write_text(ONE_TRUTH)
    result = api.check(tmp_path / "hf.pd", ("target.hidden=16",))
    assert [(d.code, d.span.file) for d in result.diagnostics] == [("PD0330", "<--set 1>")]
    assert "`hidden = 16` contradicts `hidden_size = 32` in `m/config.json`" in result.diagnostics[0].summary


def test_check_plan_and_print_ir_show_the_rope_base_that_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's acceptance: `--set target.rope_theta=10000` on a ≥ 5-layout checkpoint."""
    from pdc.cli import main

    checkpoint_dir(tmp_path)
    spec = tmp_path / "hf.pd"
    spec.write_text(ONE_TRUTH)
    assert main(["check", "--plan", str(spec), "--set", "target.rope_theta=10000"]) == 0
    plan = capsys.readouterr().out
    assert "config.json: m/config.json (found beside `weights`)" in plan
    row = next(line.split() for line in plan.splitlines() if line.strip().startswith("rope_theta"))
    assert row == ["rope_theta", "10000", "--set", "1"]
    assert main(["check", "--print-ir", str(spec), "--set", "target.rope_theta=10000"]) == 0
    ir_text = capsys.readouterr().out
    assert "('rope_theta', 10000)" in ir_text and "rope_theta=10000," in ir_text
    assert "500000" not in ir_text


def test_the_weights_dtype_is_said_out_loud(tmp_path: Path) -> None:
    """An f32 checkpoint under the bf16 default: PD0407 warns (naming the key), the plan and
    run.json say stored f32 / run bf16; writing the dtype (here by `--set`) silences it."""
    from pdc import api
    from pdc.ir.plan import plan_data
    from pdc.run.rundir import RunDir, write_record

    checkpoint_dir(tmp_path)
    spec = tmp_path / "hf.pd"
    spec.write_text(ONE_TRUTH.replace("    dtype = f32\n", ""))
    result = api.check(spec, inputs=True)
    warnings = [d for d in result.diagnostics if d.code == "PD0407"]
    assert len(warnings) == 1 and warnings[0].severity.value == "warning"
    assert "`dtype = f32`" in warnings[0].help[0] and "stored as f32" in warnings[0].summary
    assert result.ir is not None
    assert plan_data(result.ir)["target"]["dtype"] == {"stored": "f32", "run": "bf16", "run_from": "default"}
    write_record(RunDir(tmp_path / "run"), result.ir, str(spec))
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["target_dtype"] == {"stored": "f32", "run": "bf16", "run_from": "default"}
    assert record["target_settings"]["rope_theta"] == {"value": 500_000.0,
                                                       "source": "m/config.json `rope_parameters.rope_theta`"}
    chosen = api.check(spec, ("target.dtype=f32",), inputs=True)
    assert "PD0407" not in {d.code for d in chosen.diagnostics} and chosen.ir is not None
    assert plan_data(chosen.ir)["target"]["dtype"] == {"stored": "f32", "run": "f32", "run_from": "--set 1"}


def test_a_found_config_json_pdc_cannot_run_is_reported_at_the_weights_line(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps(v5() | {"hidden_act": "gelu"}))
    result = check_text(ONE_TRUTH, str(tmp_path / "hf.pd"))
    assert result.ok and result.spec is not None
    found = [(d.code, d.span.line) for d in run_passes(result.spec).diagnostics]
    assert found == [("PD0406", 3)]  # `weights = "m"`: where the config.json was found
