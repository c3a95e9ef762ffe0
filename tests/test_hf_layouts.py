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

from pdc.models import build_target, hf_options, load_params, save_hf
from pdc.models.llama import RopeScaling, inv_freq
from pdc.passes import run_passes
from pdc.registry.target import LlamaKeys
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
