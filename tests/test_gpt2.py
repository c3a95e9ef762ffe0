"""The GPT-2 target (HF `GPT2LMHeadModel`): its forward equals transformers' logits on a
checkpoint transformers wrote (tests/data/gpt2, made by its make.py) and a plain NumPy forward
on checkpoints written here in the same layout, both as `save_pretrained` names them
(`transformer.h.0…`) and as the hub `gpt2` files do (`h.0…`, with causal-mask buffers and a
tied head); the masked forward with exact factors equals the clean one; `pdc check` reports a
broken checkpoint or config.json with the PD04xx codes of every LM; `specs/gpt2_mlp.pd` trains."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from pdc.cli import main
from pdc.decomp.components import Factors, SiteMask
from pdc.models import WeightsError, build_target, load_params
from pdc.models.base import Residual
from pdc.targets.gpt2.model import Gpt2Config, hf_config, load_gpt2, save_gpt2
from pdc.targets.gpt2 import Gpt2Keys
from pdc.targets import target_shape

from conftest import REPO

DATA = REPO / "tests" / "data" / "gpt2"
CONFIG = {"vocab_size": 37, "n_embd": 12, "n_layer": 3, "n_head": 3, "n_inner": 20, "n_positions": 10,
          "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new", "model_type": "gpt2",
          "tie_word_embeddings": True}


# ---- a NumPy GPT-2 (float64), from the HF tensors as stored -------------------------------------

def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def _gelu(x: np.ndarray, tanh: bool) -> np.ndarray:
    if tanh:
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    from math import erf
    return 0.5 * x * (1 + np.vectorize(erf)(x / np.sqrt(2)))


def numpy_gpt2(tensors: dict[str, np.ndarray], config: dict, tokens: np.ndarray) -> np.ndarray:
    """Logits [B, T, vocab] of `GPT2LMHeadModel` from its HF tensors (any prefix)."""
    t = {k.removeprefix("transformer."): v.astype(np.float64) for k, v in tensors.items()}
    E, H, eps = config["n_embd"], config["n_head"], config["layer_norm_epsilon"]
    B, T = tokens.shape
    D = E // H
    x = t["wte.weight"][tokens] + t["wpe.weight"][np.arange(T)]
    causal = np.tril(np.ones((T, T), bool))
    for i in range(config["n_layer"]):
        p = f"h.{i}."
        h = _layer_norm(x, t[p + "ln_1.weight"], t[p + "ln_1.bias"], eps)
        qkv = h @ t[p + "attn.c_attn.weight"] + t[p + "attn.c_attn.bias"]
        q, k, v = (a.reshape(B, T, H, D).transpose(0, 2, 1, 3) for a in np.split(qkv, 3, axis=-1))
        scores = np.where(causal, q @ k.transpose(0, 1, 3, 2) / np.sqrt(D), -np.inf)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        a = (probs @ v).transpose(0, 2, 1, 3).reshape(B, T, E)
        x = x + a @ t[p + "attn.c_proj.weight"] + t[p + "attn.c_proj.bias"]
        h = _layer_norm(x, t[p + "ln_2.weight"], t[p + "ln_2.bias"], eps)
        m = _gelu(h @ t[p + "mlp.c_fc.weight"] + t[p + "mlp.c_fc.bias"], config["activation_function"] != "gelu")
        x = x + m @ t[p + "mlp.c_proj.weight"] + t[p + "mlp.c_proj.bias"]
    x = _layer_norm(x, t["ln_f.weight"], t["ln_f.bias"], eps)
    return x @ t["wte.weight"].T


def random_checkpoint(config: dict, seed: int = 0, prefix: str = "transformer.") -> dict[str, np.ndarray]:
    """HF `GPT2LMHeadModel` tensors in transformers' layout (Conv1D weights `[in, out]`, fused
    c_attn `[n_embd, 3·n_embd]`), every parameter random (gains about 1)."""
    rng = np.random.default_rng(seed)
    E, M = config["n_embd"], config["n_inner"]
    shapes = {"wte.weight": (config["vocab_size"], E), "wpe.weight": (config["n_positions"], E)}
    for i in range(config["n_layer"]):
        p = f"h.{i}."
        shapes |= {p + "ln_1.weight": (E,), p + "ln_1.bias": (E,), p + "attn.c_attn.weight": (E, 3 * E),
                   p + "attn.c_attn.bias": (3 * E,), p + "attn.c_proj.weight": (E, E), p + "attn.c_proj.bias": (E,),
                   p + "ln_2.weight": (E,), p + "ln_2.bias": (E,), p + "mlp.c_fc.weight": (E, M),
                   p + "mlp.c_fc.bias": (M,), p + "mlp.c_proj.weight": (M, E), p + "mlp.c_proj.bias": (E,)}
    shapes |= {"ln_f.weight": (E,), "ln_f.bias": (E,)}
    out = {}
    for name, shape in shapes.items():
        gain = 1.0 if ".ln_" in f".{name}" and name.endswith("weight") else 0.0
        out[prefix + name] = (rng.normal(size=shape) * 0.3 + gain).astype(np.float32)
    return out


def write_checkpoint(directory: Path, tensors: dict[str, np.ndarray], config: dict = CONFIG) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    return directory


def target_of(weights: Path, sites: list[str], **keys: object):
    shape = target_shape("gpt2", Gpt2Keys(weights=str(weights), dtype="f32", **keys), Path("."), {})
    return build_target(shape, sites)


def _relative_error(found: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(found, np.float64) - expected)) / np.max(np.abs(expected)))


# ---- parity -------------------------------------------------------------------------------------

def test_the_numpy_forward_equals_transformers_logits() -> None:
    """The reference the generated checkpoints are checked against is itself transformers'."""
    ref = load_file(str(DATA / "logits.safetensors"))
    config = json.loads((DATA / "hf" / "config.json").read_text())
    logits = numpy_gpt2(load_file(str(DATA / "hf" / "model.safetensors")), config, ref["tokens"])
    assert _relative_error(logits, ref["logits"].astype(np.float64)) < 1e-5


def test_the_forward_equals_transformers_logits_on_a_checkpoint_transformers_wrote() -> None:
    ref = load_file(str(DATA / "logits.safetensors"))
    target = target_of(DATA / "hf", ["h.1.mlp.c_fc"])
    params = load_params(target, DATA / "hf")
    logits = jax.jit(target.clean)(params, jnp.asarray(ref["tokens"], jnp.int32)).output
    assert logits.shape == ref["logits"].shape
    assert _relative_error(np.asarray(logits), ref["logits"].astype(np.float64)) < 1e-5


@pytest.mark.parametrize("layout", ["save_pretrained", "hub"])
@pytest.mark.parametrize("activation", ["gelu_new", "gelu"])
def test_the_forward_equals_a_numpy_gpt2_in_both_hf_layouts(layout: str, activation: str, tmp_path: Path) -> None:
    config = CONFIG | {"activation_function": activation}
    prefix = "transformer." if layout == "save_pretrained" else ""
    tensors = random_checkpoint(config, seed=1, prefix=prefix)
    if layout == "hub":  # the hub `gpt2` files keep the causal-mask buffers and the tied head
        tensors |= {f"h.{i}.attn.bias": np.tril(np.ones((1, 1, 10, 10), np.float32)) for i in range(3)}
        tensors["lm_head.weight"] = tensors["wte.weight"].copy()
    write_checkpoint(tmp_path, tensors, config)
    target = target_of(tmp_path, ["h.0.attn.c_attn.k", "h.2.mlp.c_proj"])
    tokens = np.random.default_rng(2).integers(0, 37, (2, 10))
    logits = target.clean(load_params(target, tmp_path), jnp.asarray(tokens, jnp.int32)).output
    assert _relative_error(np.asarray(logits), numpy_gpt2(tensors, config, tokens)) < 1e-5


def test_saving_and_loading_round_trips_and_fuses_c_attn_again(tmp_path: Path) -> None:
    tensors = random_checkpoint(CONFIG, seed=3)
    write_checkpoint(tmp_path / "a", tensors)
    cfg = Gpt2Config(37, 12, 20, 3, 3, 10)
    params = load_gpt2(tmp_path / "a", cfg)
    np.testing.assert_array_equal(params["layers"]["c_attn_k"][1], tensors["transformer.h.1.attn.c_attn.weight"][:, 12:24])
    np.testing.assert_array_equal(params["biases"]["c_attn_v"][2], tensors["transformer.h.2.attn.c_attn.bias"][24:])
    save_gpt2(params, tmp_path / "b", hf_config(cfg), prefix="")
    again = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert set(again) == {k.removeprefix("transformer.") for k in tensors}
    for name, value in tensors.items():
        np.testing.assert_array_equal(again[name.removeprefix("transformer.")], value)


# ---- the masked forward -------------------------------------------------------------------------

def _exact(target, params) -> tuple[dict[str, Factors], dict[str, SiteMask]]:
    """V = W, U = I (C = d_out): V U = W exactly; masks all ones."""
    weights = target.weights(params)
    components, masks = {}, {}
    for kind, W in weights.items():
        L, _, d_out = W.shape
        components[kind] = Factors(W, jnp.broadcast_to(jnp.eye(d_out), (L, d_out, d_out)))
        masks[kind] = SiteMask(jnp.ones((L, 2, 10, d_out)))
    return components, masks


def test_the_masked_forward_with_exact_factors_equals_the_clean_one(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, random_checkpoint(CONFIG, seed=4))
    sites = [f"h.{i}.{s}" for i in (1, 2) for s in ("attn.c_attn.q", "attn.c_attn.k", "attn.c_attn.v",
                                                      "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]
    target = target_of(tmp_path, sites)
    params = load_params(target, tmp_path)
    tokens = jnp.asarray(np.random.default_rng(5).integers(0, 37, (2, 10)), jnp.int32)
    clean = jax.jit(target.clean)(params, tokens)
    assert isinstance(clean.start, Residual)  # layer 0 holds no site: masked forwards start at layer 1
    assert clean.site_inputs["c_fc"].shape == (2, 2, 10, 12) and clean.block_inputs.shape == (3, 2, 10, 12)
    components, masks = _exact(target, params)
    forward = jax.jit(target.forward)
    for start in (tokens, clean.start):
        masked = forward(params, start, components, masks)
        np.testing.assert_allclose(np.asarray(masked), np.asarray(clean.output), rtol=1e-5, atol=1e-5)
    ablated = {k: SiteMask(jnp.zeros_like(m.mask)) for k, m in masks.items()}
    assert not np.allclose(np.asarray(forward(params, tokens, components, ablated)), np.asarray(clean.output))


# ---- pdc check: the checkpoint and config.json ----------------------------------------------------

SPEC = """spec gpt2_check {
  target gpt2 { weights = "ckpt" dtype = f32 }
  data corpus { corpus = python_stdlib seq_len = 8 batch = 2 }
  decompose { h[0..2].mlp.{c_fc, c_proj} { C = 4 } }
  ci mlp { hidden = [8] }
  loss { stochastic_recon { weight = 1.0 } importance_minimality { weight = 1e-3 } }
  optimize { components { adamw { lr = 1e-3 } } ci { adamw { lr = 1e-3 } } }
  train { steps = 2 seed = 0 }
}
"""


def _check(tmp_path: Path, tensors: dict[str, np.ndarray], capsys: pytest.CaptureFixture[str],
           config: dict = CONFIG, spec: str = SPEC) -> tuple[int, str]:
    write_checkpoint(tmp_path / "ckpt", tensors, config)
    (tmp_path / "spec.pd").write_text(spec)
    code = main(["check", str(tmp_path / "spec.pd")])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("prefix", ["transformer.", ""])
def test_check_opens_a_sound_checkpoint_in_either_layout(prefix: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _check(tmp_path, random_checkpoint(CONFIG, prefix=prefix), capsys)
    assert code == 0 and "error" not in err, err


def _broken(case: str) -> dict[str, np.ndarray]:
    t = random_checkpoint(CONFIG)
    if case == "missing":
        del t["transformer.h.1.mlp.c_fc.bias"]
    elif case == "transposed":
        t["transformer.h.2.mlp.c_fc.weight"] = np.ascontiguousarray(t["transformer.h.2.mlp.c_fc.weight"].T)
    elif case == "integer":
        t["transformer.wpe.weight"] = t["transformer.wpe.weight"].astype(np.int32)
    elif case == "unexpected":
        t["transformer.h.0.mlp.gate.weight"] = np.zeros((12, 20), np.float32)
    elif case == "untied_head":  # a head of another shape is not GPT-2's tied one
        t["lm_head.weight"] = np.zeros((12, 37), np.float32)
    return t


@pytest.mark.parametrize("case,code,shown", [
    ("missing", "PD0402", "missing tensor `transformer.h.1.mlp.c_fc.bias`"),
    ("transposed", "PD0403", "has shape (20, 12) (transposed), expected (12, 20)"),
    ("integer", "PD0404", "holds I32 values"),
    ("unexpected", "PD0405", "unexpected tensor `transformer.h.0.mlp.gate.weight`"),
    ("untied_head", "PD0403", "tensor `lm_head.weight`"),
])
def test_check_reports_a_broken_checkpoint_with_the_lm_codes(case: str, code: str, shown: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    status, err = _check(tmp_path, _broken(case), capsys)
    assert status == 1 and f"error[{code}]" in err and shown in err, err
    assert "Traceback" not in err
    if code == "PD0403":  # GPT-2's own fix: Conv1D stores (in, out), unlike nn.Linear
        assert "Conv1D weights are stored (in, out)" in err, err
    target = target_of(tmp_path / "ckpt", ["h.0.mlp.c_fc"])
    with pytest.raises(WeightsError):  # the loader refuses what check reports
        load_params(target, tmp_path / "ckpt")


def test_check_reports_a_file_that_is_not_safetensors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_checkpoint(tmp_path / "ckpt", random_checkpoint(CONFIG))
    (tmp_path / "ckpt" / "model.safetensors").write_bytes(b"not a safetensors file")
    (tmp_path / "spec.pd").write_text(SPEC)
    assert main(["check", str(tmp_path / "spec.pd")]) == 1
    err = capsys.readouterr().err
    assert "error[PD0401]" in err and "model.safetensors" in err and "Traceback" not in err


@pytest.mark.parametrize("change,code,shown", [
    ({"activation_function": "relu"}, "PD0406", "`activation_function` in"),
    ({"scale_attn_by_inverse_layer_idx": True}, "PD0406", "`scale_attn_by_inverse_layer_idx` is true"),
    ({"tie_word_embeddings": False}, "PD0406", "`tie_word_embeddings` is false"),
    ({"n_head": 5}, "PD0301", "not divisible by 5 heads"),
])
def test_a_config_json_pdc_cannot_run_is_a_coded_error(change: dict, code: str, shown: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    status, err = _check(tmp_path, random_checkpoint(CONFIG), capsys, CONFIG | change)
    assert status != 0 and f"error[{code}]" in err and shown in err, err


def test_a_dimension_written_against_config_json_and_too_long_sequences_are_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, err = _check(tmp_path, random_checkpoint(CONFIG), capsys,
                         spec=SPEC.replace('dtype = f32 }', 'dtype = f32 n_embd = 16 }'))
    assert status != 0 and "error[PD0330]" in err and "`n_embd = 16` contradicts `n_embd = 12`" in err, err
    status, err = _check(tmp_path, random_checkpoint(CONFIG), capsys, spec=SPEC.replace("seq_len = 8", "seq_len = 11"))
    assert status != 0 and "error[PD0315]" in err and "10 positions" in err, err


def test_config_json_settings_run_and_a_written_key_wins(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, random_checkpoint(CONFIG), CONFIG | {"layer_norm_epsilon": 1e-3})
    found = target_shape("gpt2", Gpt2Keys(weights=str(tmp_path)), Path("."), {})
    assert found.forward["layer_norm_epsilon"] == 1e-3 and found.dims["intermediate"] == 20
    written = target_shape("gpt2", Gpt2Keys(weights=str(tmp_path), layer_norm_epsilon=1e-6), Path("."),
                           {"layer_norm_epsilon": "spec.pd:3"})
    assert written.forward["layer_norm_epsilon"] == 1e-6
    assert written.settings["layer_norm_epsilon"] == (1e-6, "spec.pd:3")
    assert [m.path for m in written.matrices[:6]] == ["h.0.attn.c_attn.q", "h.0.attn.c_attn.k", "h.0.attn.c_attn.v",
                                                     "h.0.attn.c_proj", "h.0.mlp.c_fc", "h.0.mlp.c_proj"]


# ---- the shipped example ------------------------------------------------------------------------

SMALL_RUN = ["data.seq_len=16", "data.batch=2", "train.steps=3", "optimize.faithfulness_warmup.steps=1",
             "eval.every=3", "eval.batches=1", "log.every=1"]


def _train(spec: Path, out: Path, sets: list[str]) -> int:
    args = ["train", str(spec), "--out", str(out)]
    for s in sets:
        args += ["--set", s]
    return main(args)


def test_the_gpt2_mlp_example_trains_a_few_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped example as written, its target's weights given (a checkpoint of its
    dimensions written here) instead of pretrained: 3 steps and an eval."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    config = {**CONFIG, "vocab_size": 256, "n_embd": 64, "n_layer": 2, "n_head": 4, "n_inner": None,
              "n_positions": 128}
    tensors = random_checkpoint(config | {"n_inner": 256}, seed=6)
    write_checkpoint(tmp_path / "weights", tensors, config)
    assert _train(REPO / "specs" / "gpt2_mlp.pd", tmp_path / "run",
                  [f'target.weights="{tmp_path / "weights"}"', *SMALL_RUN]) == 0, capsys.readouterr().err
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records and all(np.isfinite(v) for r in records for k, v in r.items() if k.startswith("loss"))
    evals = [json.loads(line) for line in (tmp_path / "run" / "eval.jsonl").read_text().splitlines()]
    assert evals, "the eval at step 3 wrote nothing"
    assert not (tmp_path / "cache" / "pdc" / "targets").exists() or \
        not list((tmp_path / "cache" / "pdc" / "targets").glob("gpt2-*"))  # nothing was pretrained


@pytest.mark.slow  # a pretraining compile on top of the run's: ~1 min on a quiet 2-core CPU
def test_the_gpt2_mlp_example_pretrains_its_target_and_trains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    sets = ["target.pretrain.steps=2", "target.pretrain.batch=2", "target.pretrain.seq_len=16", *SMALL_RUN]
    assert _train(REPO / "specs" / "gpt2_mlp.pd", tmp_path / "run", sets) == 0, capsys.readouterr().err
    weights = next((tmp_path / "cache" / "pdc" / "targets").glob("gpt2-*"))
    assert (weights / "model.safetensors").is_file() and json.loads((weights / "config.json").read_text())["n_embd"] == 64
    assert (tmp_path / "run" / "metrics.jsonl").is_file()
