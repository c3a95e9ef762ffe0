"""The Llama-style families' weights in the Hugging Face safetensors layout: reading
(`load_llama`), writing (`save_hf`, `hf_config`) and the forward options of a config.json.

Matrices are stored torch-style `(out, in)` and transposed here to `(in, out)`, then stacked
over layers (the layout the layer scan consumes); the names are `layout.py`'s.

Every failure is a `WeightsError` with a one-line message naming the file and tensor. The
reader lives in `pdc.inputs.checkpoint`, the name table in `layout.py` (no JAX: `pdc check` uses them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from safetensors.numpy import save_file

from pdc.inputs.checkpoint import INDEX, SINGLE, Checkpoint
from pdc.targets.llama import NAME, forward_options
from pdc.targets.llama.layout import hf_entries, tolerated
from pdc.targets.llama.model import LlamaConfig, RopeScaling, param_shapes


def load_llama(path: str | Path, cfg: LlamaConfig, dtype: Any = None) -> dict[str, Any]:
    """HF safetensors → the stacked params pytree (NumPy arrays, in `dtype` if given,
    else as stored)."""
    checkpoint = Checkpoint.open(path)
    shapes = param_shapes(cfg)
    entries = hf_entries(cfg.kinds, cfg.layers, cfg.simple_mlp, cfg.tied)
    parts: dict[tuple[str, ...], list[np.ndarray]] = {}
    for entry in entries:
        shape = _lookup(shapes, entry.path)[1:] if entry.layer is not None else _lookup(shapes, entry.path)
        stored = checkpoint.get(entry.hf, tuple(reversed(shape)) if entry.transpose else shape)
        value = stored.T if entry.transpose else stored
        parts.setdefault(entry.path, []).append(value if dtype is None else value.astype(np.dtype(dtype)))
    if cfg.tied and checkpoint.has("lm_head.weight"):
        checkpoint.get("lm_head.weight", (cfg.vocab, cfg.hidden))  # a tied head must still fit
    checkpoint.check_unexpected({e.hf for e in entries}, tolerated(cfg.tied))
    params: dict[str, Any] = {}
    for path_, values in parts.items():
        layered = path_[0] in ("layers", "norms")
        _assign(params, path_, np.stack(values) if layered else np.ascontiguousarray(values[0]))
    return params


def _lookup(tree: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def _assign(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def hf_options(config: Mapping[str, Any], family: str = NAME) -> dict[str, Any]:
    """The forward's options found in an HF config.json, in the pre-5 or the ≥ 5 transformers
    layout (`rope_parameters`): RoPE base, RMSNorm epsilon and RoPE scaling (only the keys
    present), for `build_target(**options)`. Raises `TargetConfigError` on what pdc cannot run."""
    options = forward_options(config, "config.json", family)
    scaling = options.pop("rope_scaling")
    if scaling is not None:
        options["rope_scaling"] = RopeScaling.from_hf(scaling)
    return options


def hf_config(cfg: LlamaConfig) -> dict[str, Any]:
    """An HF-style config.json for `cfg` (what `save_hf` writes next to the weights)."""
    config: dict[str, Any] = {
        "architectures": ["LlamaSimpleMLP" if cfg.simple_mlp else "LlamaForCausalLM"],
        "model_type": "llama_simple_mlp" if cfg.simple_mlp else "llama",
        "vocab_size": cfg.vocab, "hidden_size": cfg.hidden, "intermediate_size": cfg.intermediate,
        "num_hidden_layers": cfg.layers, "num_attention_heads": cfg.heads, "num_key_value_heads": cfg.kv_heads,
        "head_dim": cfg.head_dim, "rope_theta": cfg.rope_theta, "rms_norm_eps": cfg.rms_norm_eps,
        "tie_word_embeddings": cfg.tied, "hidden_act": "gelu_pytorch_tanh" if cfg.simple_mlp else "silu",
    }
    s = cfg.rope_scaling
    if s is not None and s.kind == "linear":
        config["rope_scaling"] = {"rope_type": "linear", "factor": s.factor}
    elif s is not None:
        config["rope_scaling"] = {"rope_type": "llama3", "factor": s.factor, "low_freq_factor": s.low_freq_factor,
                                  "high_freq_factor": s.high_freq_factor,
                                  "original_max_position_embeddings": s.original_max_positions}
    return config


# ---- writing ----------------------------------------------------------------------------------

def save_hf(params: Mapping[str, Any], directory: str | Path, shards: int = 1,
            config: Mapping[str, Any] | None = None) -> list[Path]:
    """Write LM params in HF layout: `model.safetensors` (shards = 1) or `shards` files
    `model-0000k-of-0000N.safetensors` plus the index; `config.json` too when given.
    The family (SimpleMLP or Llama) and tying are read off the params tree."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = hf_tensors(params)
    if not 1 <= shards <= len(tensors):
        raise ValueError(f"shards must be between 1 and {len(tensors)}, found {shards}")
    if config is not None:
        (directory / "config.json").write_text(json.dumps(dict(config), indent=2) + "\n")
    if shards == 1:
        save_file(tensors, str(directory / SINGLE), metadata={"format": "pt"})
        return [directory / SINGLE]
    written, weight_map = [], {}
    for k, group in enumerate(_split(list(tensors), tensors, shards)):
        name = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        save_file({n: tensors[n] for n in group}, str(directory / name), metadata={"format": "pt"})
        weight_map |= {n: name for n in group}
        written.append(directory / name)
    total = sum(t.nbytes for t in tensors.values())
    (directory / INDEX).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map},
                                              indent=2) + "\n")
    return written


def hf_tensors(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The params tree as HF-named, `(out, in)`-layout NumPy arrays."""
    kinds = tuple(params["layers"])
    n_layers = next(iter(params["layers"].values())).shape[0]
    out = {}
    for entry in hf_entries(kinds, n_layers, "c_fc" in kinds, "lm_head" not in params):
        value = np.asarray(_lookup(params, entry.path))
        value = value[entry.layer] if entry.layer is not None else value
        out[entry.hf] = np.ascontiguousarray(value.T if entry.transpose else value)
    return out


def _split(names: list[str], tensors: Mapping[str, np.ndarray], shards: int) -> list[list[str]]:
    """Contiguous groups of about equal bytes (HF keeps tensor order); equal counts where
    a byte split would leave a shard empty (one tensor outweighing the rest)."""
    sizes = np.array([tensors[n].nbytes for n in names], dtype=np.float64)
    before = np.concatenate([[0.0], np.cumsum(sizes)[:-1]])
    index = np.minimum((before * shards / max(sizes.sum(), 1.0)).astype(int), shards - 1)
    groups = [[n for n, k in zip(names, index) if k == j] for j in range(shards)]
    return groups if all(groups) else _even_split(names, shards)


def _even_split(names: list[str], shards: int) -> list[list[str]]:
    bounds = np.linspace(0, len(names), shards + 1).astype(int)
    return [names[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
