"""No silent knobs, proven by use: for every key of the spec language, a probe changes it in a
small spec and shows that something a user sees changes — the lowered program, the plan, the
diagnostics, the loaded weights or tokens, the pretrained target, the dry-run, or a short
run's outputs. A key whose change shows nowhere is read by nothing. The registry's key set
and the probe table must be equal: a new key without a probe fails `test_every_key_has_a_probe`.

Observers (what a probe compares, base spec against changed spec):
    ir        the IR's derived nodes (target, sites, ties, tensors, CI chunks, resolved
              shardings) — not the nodes that copy keys (options, terms, rules, budget) nor hashes
    check     the diagnostics of `pdc check` (a key that only bounds others: max_positions)
    step      the lowered train step and faithfulness warmup (StableHLO text)
    eval      the lowered eval batch function (StableHLO text)
    init      the initial train state (values the network keeps as buffers, such as RoPE tables)
    run       a 2-step run's records: metrics.jsonl, eval.jsonl, checkpoint steps, TensorBoard files
              (without the records' wall-clock stamps)
    wandb     the wandb run a 2-step run writes offline (project, entity, name, group, tags; skipped
              without the wandb extra)
    weights   the frozen target as training loads it (values and dtype)
    tokens    the first training and eval batches
    pretrain  the weights `pretrain` writes (a few steps, in a private cache)
    dryrun    the dry-run's budget limit and verdict
    single    the key admits one value only: there is nothing to change (checked here)
    observation_only  a key declared not to change the weights: a 2-step run's weights are
              bit-identical with it changed

The probes take minutes (each lowers or runs a tiny program): they are `slow`; the check that
every key has a probe runs in the default suite.
"""

from __future__ import annotations

import hashlib
import json
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from conftest import REPO

TMS_WEIGHTS = REPO / "targets" / "tms_5-2_pentagon.safetensors"
RESID_WEIGHTS = REPO / "targets" / "resid_mlp1.safetensors"

TOY = """spec probe_toy {
  target tms { features = 5 hidden = 2 hidden_layers = 0 tied = true weights = "WEIGHTS" }
  data sparse_features { probability = 0.05 batch = 32 values = [0.0, 1.0] distribution = at_least_zero_active }
  decompose {
    linear1 { C = 8 }
    linear2 { C = 8 tied_to = linear1 }
  }
  ci mlp { hidden = [16] leak = 0.01 }
  loss {
    faithfulness { weight = 1.0 form = absolute }
    stochastic_recon { weight = 1.0 routing = all sampling = continuous samples = 1 }
    stochastic_recon_layerwise { weight = 1.0 sampling = continuous samples = 1 }
    ci_masked_recon { weight = 1.0 routing = all }
    ci_masked_recon_layerwise { weight = 1.0 }
    unmasked_recon { weight = 1.0 }
    pgd_recon { weight = 1.0 init = random step_size = 0.1 steps = 1 scope = c routing = all }
    pgd_recon_layerwise { weight = 1.0 init = random step_size = 0.1 steps = 1 scope = c }
    persistent_pgd {
      weight = 1.0
      scope = c
      lr = 0.01
      warmup_ascents = 1
      step = adam
      beta1 = 0.9
      beta2 = 0.999
      eps = 1e-8
      start_frac = 0.0
      source_dtype = f32
      routing = all
    }
    IMPORTANCE
  }
  optimize {
    components { clip = 1.0 adamw { lr = cosine(1e-3, final = 0.1) betas = [0.9, 0.999] eps = 1e-8 weight_decay = 0.0 } }
    ci { clip = 1.0 adamw { lr = 1e-3 betas = [0.9, 0.999] eps = 1e-8 weight_decay = 0.0 } }
    faithfulness_warmup { steps = 2 lr = 1e-2 weight_decay = 0.1 }
  }
  train { steps = 20 seed = 0 }
  mesh { dp = 1 }
  shard {
    batch = [dp]
    ** = replicated
  }
  remat { recon_forwards = off ci = off }
  precision { params = f32 compute = f32 }
  budget { device = cpu device_memory = 2 GiB headroom = 0.1 allow_xla_remat = false }
  checkpoint { every = 1 keep = 3 }
  log { every = 1 tensorboard = false }
  eval {
    every = 1
    metrics = [ci_l0, mmcs, ml2r, identity_ci_error, pgd_recon]
    batches = 1
    alive_threshold = 0.1
    alive_window = 64
    rounding_threshold = 0.0
    pgd_steps = 2
    pgd_step_size = 0.1
    identity_tol = 0.1
    ci_pattern { linear1 = identity linear2 = identity }
  }
}
"""
IMPORTANCE_MINIMALITY = "importance_minimality { weight = 1e-3 p = 1.0 eps = 1e-12 frequency { weight = 1e-2 reference_tokens = auto } }"
SMOOTH_L0 = "smooth_l0 { weight = 1e-3 gamma = 1.0 normalize_at_one = false frequency { weight = 1e-2 reference_tokens = auto } }"

TMS_PRETRAIN = """spec probe_tms_pretrain {
  target tms {
    features = 5
    hidden = 2
    hidden_layers = 1
    tied = true
    pretrain { steps = 2 batch = 8 lr = 5e-3 weight_decay = 0.01 seed = 0 feature_probability = 0.1 init_bias_to_zero = false }
  }
  data sparse_features { probability = 0.05 batch = 32 }
  decompose { linear1 { C = 8 } }
  ci mlp { hidden = [16] }
  loss { stochastic_recon { weight = 1.0 } importance_minimality { weight = 1e-3 } }
  optimize { components { adamw { lr = 1e-3 } } ci { adamw { lr = 1e-3 } } }
  train { steps = 4 }
}
"""

RESID = """spec probe_resid {
  target resid_mlp {
    features = 100
    d_embed = 1000
    d_mlp = 50
    layers = 1
    bias = false
    activation = relu
    embedding = random
    WEIGHTS_OR_PRETRAIN
  }
  data sparse_features { probability = 0.01 batch = 8 }
  decompose { layers.0.mlp_in { C = 8 } }
  ci mlp { hidden = [16] }
  loss { stochastic_recon { weight = 1.0 } importance_minimality { weight = 1e-3 } }
  optimize { components { adamw { lr = 1e-3 } } ci { adamw { lr = 1e-3 } } }
  train { steps = 4 }
}
"""
RESID_PRETRAIN = ("pretrain { steps = 2 batch = 8 lr = 5e-3 weight_decay = 0.01 seed = 0 feature_probability = 0.1 "
                  "init_bias_to_zero = false }")

LM_TARGET = """  target FAMILY {
    TARGET_SOURCE
    dtype = f32
    vocab = 256
    hidden = 16
    intermediate = 32
    layers = 2
    heads = 2
    kv_heads = 1
    head_dim = 8
    rope_theta = 10000.0
    rms_norm_eps = 1e-5
    tied_embeddings = TIED
    max_positions = 16
  }"""  # the Llama-style families' block (GPT2 swaps it for its own)
LM = """spec probe_lm {
""" + LM_TARGET + """
  DATA
  decompose { SITES { C = 8 } }
  CI
  loss { stochastic_recon { weight = 1.0 } importance_minimality { weight = 1e-3 } }
  optimize { components { adamw { lr = 1e-3 } } ci { adamw { lr = 1e-3 } } }
  train { steps = 4 seed = 0 }
  remat { recon_forwards = off ci = off divergence_chunk = 8 }
  eval { metrics = [ci_l0, ce_kl] }
}
"""
GPT2_DIMS = ("vocab", "n_embd", "n_layer", "n_head", "n_positions", "layer_norm_epsilon", "activation_function")
GPT2 = LM.replace(LM_TARGET, """  target gpt2 {
    TARGET_SOURCE
    dtype = f32
    vocab = 256
    n_embd = 16
    n_layer = 2
    n_head = 2
    n_positions = 16
    layer_norm_epsilon = 1e-5
    activation_function = gelu_new
  }""").replace("SITES", "h[0..1].mlp.{c_fc, c_proj}")
LM_DATA = 'data tokens { path = "TOKENS" seq_len = 16 batch = 4 format = npy eval_path = "EVAL_TOKENS" }'
LM_CORPUS = "data corpus { corpus = python_stdlib seq_len = 16 batch = 4 }"
LM_PRETRAIN = ("pretrain { corpus = python_stdlib tokenizer = bytes steps = 2 batch = 2 seq_len = 8 lr = 3e-3 "
               "weight_decay = 0.0 seed = 0 }")
CHUNKWISE = ("ci chunkwise_transformer { blocks_per_chunk = 1 d_model = 16 blocks = 1 heads = 2 mlp = 32 "
             "rope_base = 10000.0 input = site_inputs leak = 0.01 }")
GLOBAL = ("ci global_transformer { d_model = 16 blocks = 1 heads = 2 mlp = 32 rope_base = 10000.0 input = site_inputs "
          "leak = 0.01 }")
SITES = {"llama": "layers[0..1].mlp.{gate_proj, up_proj, down_proj}", "simple_mlp": "h[0..1].mlp.{c_fc, down_proj}"}


@dataclass(frozen=True)
class Probe:
    base: str
    change: str | tuple[str, str]  # a `--set` override, or (old, new) text of the base spec
    observer: str


def _toy_probes() -> dict[str, Probe]:
    p: dict[str, Probe] = {}

    def add(key: str, change: str | tuple[str, str], observer: str, base: str = "toy") -> None:
        p[key] = Probe(base, change, observer)

    add("target:tms.features", ("features = 5 hidden = 2 hidden_layers = 0", "features = 6 hidden = 2 hidden_layers = 0"), "ir")
    add("target:tms.hidden", ("features = 5 hidden = 2 hidden_layers = 0", "features = 5 hidden = 3 hidden_layers = 0"), "ir")
    add("target:tms.hidden_layers", ("hidden_layers = 0", "hidden_layers = 1"), "ir")
    add("target:tms.tied", "target.tied=false", "pretrain", "tms_pretrain")  # init and what pretraining fits
    add("target:tms.weights", "target.weights=\"OTHER_TMS_WEIGHTS\"", "weights")
    for key, change in {"steps": "3", "batch": "4", "lr": "1e-2", "weight_decay": "0.1", "seed": "1",
                        "feature_probability": "0.2", "init_bias_to_zero": "true"}.items():
        add(f"target:tms.pretrain.{key}", f"target.pretrain.{key}={change}", "pretrain", "tms_pretrain")
    add("data:sparse_features.probability", "data.probability=0.1", "step")
    add("data:sparse_features.batch", "data.batch=16", "ir")
    add("data:sparse_features.values", "data.values=[0.5, 1.0]", "step")
    add("data:sparse_features.distribution", "data.distribution=exactly_one_active", "step")
    add("decompose.<entry>.C", ("C = 8 }\n    linear2 { C = 8", "C = 9 }\n    linear2 { C = 9"), "ir")
    add("decompose.<entry>.tied_to", ("linear2 { C = 8 tied_to = linear1 }", "linear2 { C = 8 }"), "ir")
    for variant, default in (("mlp", "[16]"), ("vector_mlp", "[8]"), ("shared_mlp", "[16]"), ("global_mlp", "[256]")):
        base = "toy" if variant == "mlp" else f"toy_{variant}"
        add(f"ci:{variant}.hidden", "ci.hidden=[12]", "ir", base)
        add(f"ci:{variant}.leak", "ci.leak=0.05", "step", base)
    terms = {
        "faithfulness": {"weight": "2.0", "form": "relative"},
        "stochastic_recon": {"weight": "2.0", "routing": "uniform_k_subset", "sampling": "binomial", "samples": "2",
                             "sites_per_chunk": "1"},
        "stochastic_recon_layerwise": {"weight": "2.0", "sampling": "binomial", "samples": "2"},
        "ci_masked_recon": {"weight": "2.0", "routing": "uniform_k_subset"},
        "ci_masked_recon_layerwise": {"weight": "2.0"},
        "unmasked_recon": {"weight": "2.0"},
        "pgd_recon": {"weight": "2.0", "init": "ones", "step_size": "0.2", "steps": "2", "scope": "bc",
                      "routing": "uniform_k_subset"},
        "pgd_recon_layerwise": {"weight": "2.0", "init": "ones", "step_size": "0.2", "steps": "2", "scope": "bc"},
        "persistent_pgd": {"weight": "2.0", "scope": "bc", "lr": "0.02", "warmup_ascents": "2", "step": "sign",
                           "beta1": "0.5", "beta2": "0.99", "eps": "1e-6", "start_frac": "0.5", "source_dtype": "bf16",
                           "routing": "uniform_k_subset"},
        "importance_minimality": {"weight": "2e-3", "p": "linear(2.0, 0.5)", "eps": "1e-6",
                                  "frequency.weight": "2e-2", "frequency.reference_tokens": "100"},
    }
    for term, keys in terms.items():
        for key, value in keys.items():
            add(f"loss.{term}.{key}", f"loss.{term}.{key}={value}", "step")
    for key, value in {"weight": "2e-3", "gamma": "linear(1.0, 0.5)", "normalize_at_one": "true",
                       "frequency.weight": "2e-2", "frequency.reference_tokens": "100"}.items():
        add(f"loss.smooth_l0.{key}", f"loss.smooth_l0.{key}={value}", "step", "toy_l0")
    for group in ("components", "ci"):
        add(f"optimize.{group}.clip", f"optimize.{group}.clip=0.5", "step")
        for key, value in {"lr": "linear(1e-3, 1e-4)", "betas": "[0.8, 0.99]", "eps": "1e-6",
                           "weight_decay": "0.1"}.items():
            add(f"optimize.{group}.adamw.{key}", f"optimize.{group}.adamw.{key}={value}", "step")
    for key, value in {"steps": "3", "lr": "2e-2", "weight_decay": "0.2"}.items():
        add(f"optimize.faithfulness_warmup.{key}", f"optimize.faithfulness_warmup.{key}={value}", "step")
    add("train.steps", "train.steps=30", "step")
    add("train.seed", "train.seed=1", "step")
    add("mesh.<axes>", "mesh.dp=2", "ir")
    add("shard.<rules>", ("batch = [dp]", "batch = replicated"), "ir")
    add("remat.recon_forwards", "remat.recon_forwards=whole", "step")
    add("remat.ci", "remat.ci=on", "step")
    add("precision.params", "precision.params=bf16", "step")
    add("precision.compute", "precision.compute=bf16", "step")
    add("budget.device", "budget.device=h100_sxm", "dryrun")
    add("budget.device_memory", "budget.device_memory=1MiB", "dryrun")
    add("budget.headroom", "budget.headroom=0.5", "dryrun")
    add("budget.allow_xla_remat", "budget.allow_xla_remat=true", "observation_only")
    add("checkpoint.every", "checkpoint.every=2", "run")
    add("checkpoint.keep", "checkpoint.keep=1", "run")
    add("log.every", "log.every=2", "run")
    add("log.tensorboard", "log.tensorboard=true", "run")
    for key, value in {"project": '"pdc-probe-2"', "entity": '"someone"', "name": '"named"', "group": '"grouped"',
                       "tags": '["x"]', "mode": "disabled"}.items():
        add(f"log.wandb.{key}", f"log.wandb.{key}={value}", "wandb", "toy_wandb")
    for key, value in {"every": "2", "metrics": "[ci_l0]", "batches": "2", "alive_threshold": "0.5",
                       "alive_window": "32", "identity_tol": "0.5"}.items():
        add(f"eval.{key}", f"eval.{key}={value}", "run")
    add("eval.pgd_steps", "eval.pgd_steps=3", "eval")
    add("eval.pgd_step_size", "eval.pgd_step_size=0.3", "eval")
    add("eval.rounding_threshold", "eval.rounding_threshold=0.5", "eval", "lm_llama")
    add("eval.ci_pattern.<patterns>", ("linear2 = identity }", "linear2 = dense(1) }"), "run")
    return p


def _resid_probes() -> dict[str, Probe]:
    p = {f"target:resid_mlp.{k}": Probe("resid", (f"{k} = {a}", f"{k} = {b}"), "ir") for k, a, b in (
        ("features", "100", "101"), ("d_embed", "1000", "999"), ("d_mlp", "50", "51"), ("layers", "1", "2"),
        ("bias", "false", "true"))}
    p["target:resid_mlp.activation"] = Probe("resid", "target.activation=gelu", "step")
    p["target:resid_mlp.embedding"] = Probe("resid_square_pretrain", "target.embedding=identity", "pretrain")
    p["target:resid_mlp.weights"] = Probe("resid", "target.weights=\"OTHER_RESID_WEIGHTS\"", "weights")
    for key, value in {"steps": "3", "batch": "4", "lr": "1e-2", "weight_decay": "0.1", "seed": "1",
                       "feature_probability": "0.2", "init_bias_to_zero": "true"}.items():
        p[f"target:resid_mlp.pretrain.{key}"] = Probe("resid_pretrain", f"target.pretrain.{key}={value}", "pretrain")
    return p


def _lm_probes(family: str) -> dict[str, Probe]:
    base = f"lm_{family}"
    p: dict[str, Probe] = {}
    tied = "true" if family == "simple_mlp" else "false"
    # A dimension that contradicts the checkpoint's config.json is PD0330, so the dimensions are
    # probed on the spec that pretrains its target (no checkpoint to contradict).
    for key, old, new in (("vocab", "256", "255"), ("hidden", "16", "24"), ("intermediate", "32", "40"),
                          ("layers", "2", "3"), ("kv_heads", "1", "2"), ("head_dim", "8", "4")):
        p[f"target:{family}.{key}"] = Probe(f"{base}_pretrain", (f"{key} = {old}", f"{key} = {new}"), "ir")
    p[f"target:{family}.tied_embeddings"] = Probe(
        base, (f"tied_embeddings = {tied}", f"tied_embeddings = {'false' if tied == 'true' else 'true'}"), "ir")
    p[f"target:{family}.heads"] = Probe(f"{base}_pretrain", "target.heads=4", "ir")
    p[f"target:{family}.rope_theta"] = Probe(base, "target.rope_theta=500.0", "step")
    p[f"target:{family}.rms_norm_eps"] = Probe(base, "target.rms_norm_eps=1e-3", "step")
    p[f"target:{family}.max_positions"] = Probe(base, "target.max_positions=8", "check")
    p[f"target:{family}.dtype"] = Probe(base, "target.dtype=bf16", "weights")
    p[f"target:{family}.weights"] = Probe(base, f'target.weights="OTHER_{family.upper()}_WEIGHTS"', "weights")
    p[f"target:{family}.config"] = Probe(f"{base}_config", f'target.config="OTHER_{family.upper()}_CONFIG"', "step")
    for key in ("corpus", "tokenizer"):
        p[f"target:{family}.pretrain.{key}"] = Probe(f"{base}_pretrain", "", "single")
    for key, value in {"steps": "3", "batch": "3", "seq_len": "9", "lr": "1e-2", "weight_decay": "0.1",
                       "seed": "1"}.items():
        p[f"target:{family}.pretrain.{key}"] = Probe(f"{base}_pretrain", f"target.pretrain.{key}={value}", "pretrain")
    return p


def _lm_only_probes() -> dict[str, Probe]:
    p = {
        "data:tokens.path": Probe("lm_llama", 'data.path="OTHER_TOKENS"', "tokens"),
        "data:tokens.eval_path": Probe("lm_llama", 'data.eval_path="OTHER_TOKENS"', "tokens"),
        "data:tokens.format": Probe("lm_llama", "data.format=uint16", "tokens"),
        "data:tokens.seq_len": Probe("lm_llama", "data.seq_len=8", "ir"),
        "data:tokens.batch": Probe("lm_llama", "data.batch=8", "ir"),
        "data:corpus.corpus": Probe("lm_llama_corpus", "", "single"),
        "data:corpus.seq_len": Probe("lm_llama_corpus", "data.seq_len=8", "ir"),
        "data:corpus.batch": Probe("lm_llama_corpus", "data.batch=8", "ir"),
        "remat.divergence_chunk": Probe("lm_llama", "remat.divergence_chunk=4", "step"),
    }
    for variant, base in (("chunkwise_transformer", "lm_llama"), ("global_transformer", "lm_llama_global")):
        for key, value, observer in (("d_model", "24", "ir"), ("blocks", "2", "ir"), ("heads", "4", "step"),
                                     ("mlp", "24", "ir"), ("rope_base", "100.0", "init"),
                                     ("input", "first_block_resid", "step"), ("leak", "0.05", "step")):
            p[f"ci:{variant}.{key}"] = Probe(base, f"ci.{key}={value}", observer)
    p["ci:chunkwise_transformer.blocks_per_chunk"] = Probe("lm_llama", "ci.blocks_per_chunk=2", "ir")
    return p


def _gpt2_probes() -> dict[str, Probe]:
    """GPT-2's keys: dimensions on the spec that pretrains (no config.json to contradict),
    forward settings on the checkpoint spec, `config` on the spec that names one."""
    p: dict[str, Probe] = {}
    for key, old, new in (("vocab", "256", "255"), ("n_embd", "16", "24"), ("n_layer", "2", "3"),
                          ("n_positions", "16", "24")):
        p[f"target:gpt2.{key}"] = Probe("gpt2_pretrain", (f"{key} = {old}", f"{key} = {new}"), "ir")
    p["target:gpt2.n_head"] = Probe("gpt2_pretrain", "target.n_head=4", "ir")
    p["target:gpt2.n_inner"] = Probe("gpt2_pretrain", "target.n_inner=24", "ir")
    p["target:gpt2.layer_norm_epsilon"] = Probe("gpt2", "target.layer_norm_epsilon=1e-3", "step")
    p["target:gpt2.activation_function"] = Probe("gpt2", "target.activation_function=gelu", "step")
    p["target:gpt2.dtype"] = Probe("gpt2", "target.dtype=bf16", "weights")
    p["target:gpt2.weights"] = Probe("gpt2", 'target.weights="OTHER_GPT2_WEIGHTS"', "weights")
    p["target:gpt2.config"] = Probe("gpt2_config", 'target.config="OTHER_GPT2_CONFIG"', "step")
    for key in ("corpus", "tokenizer"):
        p[f"target:gpt2.pretrain.{key}"] = Probe("gpt2_pretrain", "", "single")
    for key, value in {"steps": "3", "batch": "3", "seq_len": "9", "lr": "1e-2", "weight_decay": "0.1",
                       "seed": "1"}.items():
        p[f"target:gpt2.pretrain.{key}"] = Probe("gpt2_pretrain", f"target.pretrain.{key}={value}", "pretrain")
    return p


PROBES: dict[str, Probe] = {**_toy_probes(), **_resid_probes(), **_lm_probes("llama"), **_lm_probes("simple_mlp"),
                            **_gpt2_probes(), **_lm_only_probes()}


# ---- the registry's keys --------------------------------------------------------------------


def registry_keys() -> set[str]:
    """Every key of the language: `block.key`, `block:variant.key`, `<entry>` keys of site
    entries and `<kind>` for blocks of user-named entries (mesh axes, shard rules, patterns)."""
    from pdc.registry import SPEC

    keys = set()
    for path, schema in SPEC.walk():
        prefix = ".".join(path[1:])
        keys |= {f"{prefix}.{k}" for k in schema.key_names() if k != "fn"}
        if schema.entry_keys is not None:
            keys |= {f"{prefix}.<entry>.{k}" for k in schema.entry_keys.model_fields}
        if schema.entries is not None and schema.entry_keys is None:
            keys.add(f"{prefix}.<{schema.entries.value}>")
    return keys


def test_every_key_has_a_probe() -> None:
    keys = registry_keys()
    assert sorted(keys - set(PROBES)) == [], "keys without a probe (add one to PROBES)"
    assert sorted(set(PROBES) - keys) == [], "probes of keys the registry does not have"


# ---- base specs and their files ---------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The base specs (by name) and the other files the probes point at (by placeholder)."""
    tmp = tmp_path_factory.mktemp("key_use")
    out: dict[str, Path] = {}
    out["OTHER_TMS_WEIGHTS"] = _scaled_copy(TMS_WEIGHTS, tmp / "tms_other.safetensors")
    out["OTHER_RESID_WEIGHTS"] = _scaled_copy(RESID_WEIGHTS, tmp / "resid_other.safetensors")
    tokens = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.int32)
    np.save(tmp / "tokens.npy", tokens)
    np.save(tmp / "eval_tokens.npy", tokens[::-1].copy())
    np.save(tmp / "other_tokens.npy", (tokens + 1) % 256)
    out["OTHER_TOKENS"] = tmp / "other_tokens.npy"
    toy = TOY.replace("WEIGHTS", str(TMS_WEIGHTS))
    specs = {"toy": toy.replace("IMPORTANCE", IMPORTANCE_MINIMALITY), "toy_l0": toy.replace("IMPORTANCE", SMOOTH_L0),
             "tms_pretrain": TMS_PRETRAIN,
             "resid": RESID.replace("WEIGHTS_OR_PRETRAIN", f'weights = "{RESID_WEIGHTS}"'),
             "resid_pretrain": RESID.replace("WEIGHTS_OR_PRETRAIN", RESID_PRETRAIN).replace("bias = false", "bias = true")}
    specs["toy_wandb"] = specs["toy"].replace(
        "log { every = 1 tensorboard = false }",
        'log { every = 1 tensorboard = false wandb { project = "pdc-probe" mode = offline } }')
    specs["resid_square_pretrain"] = specs["resid_pretrain"].replace("d_embed = 1000", "d_embed = 100")
    for variant in ("vector_mlp", "shared_mlp", "global_mlp"):
        specs[f"toy_{variant}"] = specs["toy"].replace("ci mlp {", f"ci {variant} {{")
    for family in ("llama", "simple_mlp"):
        weights, other = _lm_weights(family, tmp)
        out[f"OTHER_{family.upper()}_WEIGHTS"] = other
        out[f"OTHER_{family.upper()}_CONFIG"] = other / "config.json"
        lm = (LM.replace("FAMILY", family).replace("SITES", SITES[family]).replace("TIED", "true" if family == "simple_mlp" else "false")
              .replace("DATA", LM_DATA).replace("EVAL_TOKENS", str(tmp / "eval_tokens.npy")).replace("TOKENS", str(tmp / "tokens.npy")))
        specs[f"lm_{family}"] = lm.replace("TARGET_SOURCE", f'weights = "{weights}"').replace("CI", CHUNKWISE)
        specs[f"lm_{family}_pretrain"] = lm.replace("TARGET_SOURCE", LM_PRETRAIN).replace("CI", CHUNKWISE)
        config_only = _without_dims(lm.replace("TARGET_SOURCE", f'config = "{weights / "config.json"}" weights = "{weights}"'))
        specs[f"lm_{family}_config"] = config_only.replace("CI", CHUNKWISE)
    weights, other = _gpt2_weights(tmp)
    out["OTHER_GPT2_WEIGHTS"], out["OTHER_GPT2_CONFIG"] = other, other / "config.json"
    gpt2 = (GPT2.replace("DATA", LM_DATA).replace("EVAL_TOKENS", str(tmp / "eval_tokens.npy"))
            .replace("TOKENS", str(tmp / "tokens.npy")).replace("CI", CHUNKWISE))
    specs["gpt2"] = gpt2.replace("TARGET_SOURCE", f'weights = "{weights}"')
    specs["gpt2_pretrain"] = gpt2.replace("TARGET_SOURCE", LM_PRETRAIN)
    specs["gpt2_config"] = "\n".join(
        line for line in gpt2.replace("TARGET_SOURCE", f'config = "{weights / "config.json"}" weights = "{weights}"')
        .splitlines() if line.strip().split(" = ")[0] not in GPT2_DIMS) + "\n"
    specs["lm_llama_global"] = specs["lm_llama"].replace(CHUNKWISE, GLOBAL)
    specs["lm_llama_corpus"] = specs["lm_llama"].replace(_data_line(specs["lm_llama"]), LM_CORPUS)
    for name, text in specs.items():
        (tmp / f"{name}.pd").write_text(text)
        out[name] = tmp / f"{name}.pd"
    return out


def _gpt2_weights(tmp: Path) -> tuple[Path, Path]:
    """Random HF GPT-2 checkpoints of the probe spec's dimensions; the second with other values
    and another LayerNorm epsilon in its config.json."""
    import jax

    from pdc.models import build_target
    from pdc.targets.gpt2.model import hf_config, save_gpt2
    from pdc.targets.gpt2 import Gpt2Keys
    from pdc.targets import gpt2

    keys = Gpt2Keys(vocab=256, n_embd=16, n_layer=2, n_head=2, n_positions=16)
    target = build_target(gpt2.shape(keys, Path(".")), [])
    paths = []
    for seed, eps in ((0, 1e-5), (1, 1e-3)):
        config = hf_config(target.config) | {"layer_norm_epsilon": eps}
        save_gpt2(jax.device_get(target.init_params(jax.random.PRNGKey(seed))), tmp / f"gpt2_{seed}", config)
        paths.append(tmp / f"gpt2_{seed}")
    return paths[0], paths[1]


def _data_line(spec: str) -> str:
    return next(line.strip() for line in spec.splitlines() if line.strip().startswith("data tokens"))


def _without_dims(spec: str) -> str:
    """An LM spec whose dimensions and forward settings come from its config.json only."""
    keep = []
    for line in spec.splitlines():
        key = line.strip().split(" = ")[0]
        if key in ("vocab", "hidden", "intermediate", "layers", "heads", "kv_heads", "head_dim", "rope_theta",
                   "rms_norm_eps", "tied_embeddings", "max_positions"):
            continue
        keep.append(line)
    return "\n".join(keep) + "\n"


def _scaled_copy(source: Path, dest: Path) -> Path:
    from safetensors.numpy import load_file, save_file

    save_file({k: v * 2 for k, v in load_file(source).items()}, dest)
    return dest


def _lm_weights(family: str, tmp: Path) -> tuple[Path, Path]:
    """Random HF-format weights and config of the probe LM; a second set with another
    RoPE base and other values."""
    import jax

    from pdc.models import build_target
    from pdc.targets.llama.hf import hf_config, save_hf
    from pdc.targets.llama import LlamaKeys
    from pdc.targets.simple_mlp import SimpleMlpKeys
    from pdc.targets import llama as llama_shape

    dims = dict(vocab=256, hidden=16, intermediate=32, layers=2, heads=2, kv_heads=1, head_dim=8,
                tied_embeddings=family == "simple_mlp", rope_theta=10000.0, rms_norm_eps=1e-5)
    model = (SimpleMlpKeys if family == "simple_mlp" else LlamaKeys)(**dims)
    shape = llama_shape.shape(model, Path("."), family)
    target = build_target(shape, [])
    paths = []
    for seed, theta in ((0, 10000.0), (1, 500.0)):
        directory = tmp / f"{family}_{seed}"
        config = hf_config(target.config)
        config["rope_theta"] = theta
        save_hf(jax.device_get(target.init_params(jax.random.PRNGKey(seed))), directory, config=config)
        paths.append(directory)
    return paths[0], paths[1]


# ---- observers --------------------------------------------------------------------------------


def _checked(path: Path, overrides: tuple[str, ...]) -> Any:
    from pdc.passes import check

    result = check(path, overrides)
    assert result.ok, [f"{d.code} {d.summary}" for d in result.diagnostics]
    return result.ir


def _ir(path: Path, overrides: tuple[str, ...], tmp: Path) -> str:
    from pdc.ir.printer import print_ir

    derived = ("target", "mesh", "site:", "tie:", "tensor:", "ci:", "sharding:")
    lines, keep = [], False
    for line in print_ir(_checked(path, overrides)).splitlines()[1:]:
        if not line.startswith("    "):
            keep = line.startswith(derived)
        if keep:
            lines.append(line)
    return "\n".join(lines)


def _check(path: Path, overrides: tuple[str, ...], tmp: Path) -> str:
    from pdc.passes import check

    return "\n".join(f"{d.code} {d.summary}" for d in check(path, overrides).diagnostics)


def _step(path: Path, overrides: tuple[str, ...], tmp: Path) -> str:
    import jax

    from pdc.inspect.dryrun import abstract_step
    from pdc.lower.program import lower_program
    from pdc.lower.sharding import make_mesh
    from pdc.lower.step import make_faithfulness_warmup

    program = lower_program(_checked(path, overrides))
    mesh = make_mesh(program.ir)
    step, args = abstract_step(program, mesh)
    warmup = jax.jit(make_faithfulness_warmup(program)).lower(args[0].components, args[1]).as_text()
    return step.lower(*args).as_text() + warmup


def _eval(path: Path, overrides: tuple[str, ...], tmp: Path) -> str:
    import jax

    from pdc.lower.eval_options import eval_options
    from pdc.lower.inputs import step_inputs
    from pdc.lower.program import lower_program
    from pdc.lower.sharding import make_mesh
    from pdc.run.evaluate import make_eval_batch

    program = lower_program(_checked(path, overrides))
    inputs = step_inputs(program, make_mesh(program.ir))
    fn = jax.jit(make_eval_batch(program, eval_options(program.ir)))
    return fn.lower(inputs.state, inputs.params, inputs.batch, jax.random.PRNGKey(0)).as_text()


def _init(path: Path, overrides: tuple[str, ...], tmp: Path) -> str:
    import jax

    from pdc.lower.program import lower_program
    from pdc.lower.state import init_state

    state = jax.jit(lambda: init_state(lower_program(_checked(path, overrides))))()
    return _digest({"/".join(map(str, k)): v for k, v in jax.tree_util.tree_flatten_with_path(state)[0]})


def _run_dir(path: Path, overrides: tuple[str, ...], tmp: Path) -> Path:
    import pdc

    out = tmp / hashlib.sha256(repr((str(path), overrides)).encode()).hexdigest()[:12]
    if not out.exists():
        pdc.train(path, out, overrides=(*overrides, "train.steps=2"))
    return out


def _run(path: Path, overrides: tuple[str, ...], tmp: Path) -> str:
    out = _run_dir(path, overrides, tmp)
    records = [_unstamped(out / name) for name in ("metrics.jsonl", "eval.jsonl")]
    checkpoints = sorted(p.name for p in (out / "ckpts").iterdir())
    return json.dumps([records, checkpoints, (out / "tb").exists() and any((out / "tb").iterdir())])


def _unstamped(path: Path) -> list[dict[str, Any]]:
    """A JSONL log's records without their wall-clock stamps (`time`, `elapsed_s`), which
    differ between any two runs."""
    if not path.exists():
        return []
    return [{k: v for k, v in json.loads(line).items() if k not in ("time", "elapsed_s")}
            for line in path.read_text().splitlines()]


def _wandb(path: Path, overrides: tuple[str, ...], tmp: Path) -> str:
    """The wandb run a 2-step run wrote offline (RUN/wandb/): its project, entity, name, group
    and tags; "no wandb run" when none was written (`mode = disabled`)."""
    pytest.importorskip("wandb", reason="the wandb extra is not installed")
    from test_wandb import wandb_records

    files = list((_run_dir(path, overrides, tmp) / "wandb").glob("offline-run-*/run-*.wandb"))
    if not files:
        return "no wandb run"
    run = next(r.run for r in wandb_records(files[0]) if r.WhichOneof("record_type") == "run")
    return json.dumps([run.project, run.entity, run.display_name, run.run_group, list(run.tags)])


def _final_weights(path: Path, overrides: tuple[str, ...], tmp: Path) -> str:
    import pdc

    run = pdc.load_run(_run_dir(path, overrides, tmp))
    return _digest({f"{site}.{name}": value for site in run.sites
                    for name, value in zip("VU", run.components(site))})


def _trainer(path: Path, overrides: tuple[str, ...], tmp: Path) -> Any:
    """The trainer of the spec (never started): what loads the weights and opens the tokens."""
    from pdc.lower.program import lower_program
    from pdc.lower.sharding import make_mesh
    from pdc.run.rundir import RunDir
    from pdc.run.train import Trainer

    ir = _checked(path, overrides)
    return Trainer(ir, RunDir(tmp / "unused"), lower_program(ir), make_mesh(ir))


def _weights(path: Path, overrides: tuple[str, ...], tmp: Path) -> str:
    import jax

    params = _trainer(path, overrides, tmp).params()
    return _digest({"/".join(map(str, k)): v for k, v in jax.tree_util.tree_flatten_with_path(params)[0]})


def _tokens(path: Path, overrides: tuple[str, ...], tmp: Path) -> str:
    from pdc.run.evaluate import eval_rows

    trainer = _trainer(path, overrides, tmp)
    program, rows = trainer.program, trainer.tokens()
    assert rows is not None
    held_out, seed = eval_rows(program, rows)
    assert held_out is not None
    return _digest({"train": rows.batch(program.seed, 0, 4), "eval": held_out.batch(seed, 0, 4)})


def _pretrain(path: Path, overrides: tuple[str, ...], tmp: Path) -> str:
    from pdc.run.pretrain import pretrained

    ir = _checked(path, overrides)
    cache = tmp / "cache" / hashlib.sha256(repr((str(path), overrides)).encode()).hexdigest()[:12]
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(cache)
    try:
        weights = pretrained(ir, force=True)
    finally:
        if saved is None:
            del os.environ["XDG_CACHE_HOME"]
        else:
            os.environ["XDG_CACHE_HOME"] = saved
    files = sorted(weights.glob("*.safetensors")) if weights.is_dir() else [weights]
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()


def _dryrun(path: Path, overrides: tuple[str, ...], tmp: Path) -> str:
    import pdc

    report = pdc.dry_run(path, overrides=overrides)
    return json.dumps([report.budget, report.verdict, report.device])


def _digest(arrays: dict[str, Any]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        value = np.asarray(arrays[name])
        h.update(f"{name}:{value.dtype}:{value.shape}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()


OBSERVERS: dict[str, Callable[[Path, tuple[str, ...], Path], str]] = {
    "ir": _ir, "check": _check, "step": _step, "eval": _eval, "init": _init, "run": _run, "weights": _weights, "tokens": _tokens,
    "pretrain": _pretrain, "dryrun": _dryrun, "wandb": _wandb,
}


# ---- the probes -------------------------------------------------------------------------------


_cache: dict[tuple[str, str, tuple[str, ...]], str] = {}


def _observe(observer: Callable[[Path, tuple[str, ...], Path], str], path: Path, overrides: tuple[str, ...],
             tmp: Path) -> str:
    key = (observer.__name__, str(path), overrides)
    if key not in _cache:
        _cache[key] = observer(path, overrides, tmp)
    return _cache[key]


def _resolved(change: str, files: dict[str, Path]) -> str:
    for name, path in files.items():
        change = change.replace(name, str(path)) if name.isupper() else change
    return change


@pytest.mark.slow  # ~5 min: every probe lowers, loads or runs a tiny program; CI runs it in its slow step
@pytest.mark.parametrize("key", sorted(PROBES))
def test_changing_the_key_changes_what_users_see(key: str, files: dict[str, Path],
                                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    probe = PROBES[key]
    base = files[probe.base]
    tmp = tmp_path_factory.getbasetemp() / "key_use_runs"
    tmp.mkdir(exist_ok=True)
    if probe.observer == "single":
        _assert_single_valued(key)
        return
    if isinstance(probe.change, tuple):
        old, new = probe.change
        text = base.read_text()
        assert text.count(old) == 1, f"probe of {key}: `{old}` is not once in {base.name}"
        changed_path = base.with_name(f"{base.stem}__{key.replace(':', '_').replace('<', '').replace('>', '')}.pd")
        changed_path.write_text(text.replace(old, _resolved(new, files)))
        changed, overrides = changed_path, ()
    else:
        changed, overrides = base, (_resolved(probe.change, files),)
    if probe.observer == "observation_only":
        assert _observe(_final_weights, base, (), tmp) == _observe(_final_weights, changed, overrides, tmp), \
            f"{key} is declared observation-only, yet the trained weights changed"
        return
    observer = OBSERVERS[probe.observer]
    before, after = _observe(observer, base, (), tmp), _observe(observer, changed, overrides, tmp)
    assert before != after, f"changing {key} ({probe.change}) changed nothing the `{probe.observer}` observer sees"


def _assert_single_valued(key: str) -> None:
    from pdc.registry import SPEC

    block, _, name = key.rpartition(".")
    schema = next(s for path, s in SPEC.walk() if ".".join(path[1:]) == block)
    annotation = schema.keys.model_fields[name].annotation  # type: ignore[union-attr]
    assert typing.get_origin(annotation) is typing.Literal and len(typing.get_args(annotation)) == 1, \
        f"{key} admits more than one value: give it a real probe"
