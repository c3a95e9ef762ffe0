"""Target family `llama` — Llama-style LMs (RMSNorm, RoPE, GQA, SwiGLU): its keys and its shape,
from an HF `config.json` or from dimensions written in the spec (SPD_ALGORITHM.md §8.3); its
JAX half is `model.py` (the transformer), `hf.py` (its HF safetensors layout) and
`runtime.py` (its `FamilyRuntime`). Another Llama-style family reuses all of it as a
`Variant` (pdc/targets/simple_mlp)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from pdc.registry.pretrain import LM
from pdc.registry.types import Dtype, FilePath, Keys, key
from pdc.inputs.checkpoint import WeightProblem
from pdc.targets.llama.layout import inspect_lm
from pdc.targets._hf import UNRUNNABLE, ConfigFile, config_file, positive_number, read_config, resolve_dims, short
from pdc.targets.base import FrozenTensor, Matrix, TargetConfigError, TargetFamily, TargetShape

NAME = "llama"

# spec key → HF config.json field
_HF_FIELDS = {
    "vocab": "vocab_size", "hidden": "hidden_size", "intermediate": "intermediate_size",
    "layers": "num_hidden_layers", "heads": "num_attention_heads", "kv_heads": "num_key_value_heads",
    "head_dim": "head_dim",
}
_REQUIRED = ("vocab", "hidden", "intermediate", "layers", "heads")
# RoPE scaling types pdc runs, with the keys each needs; transformers ≥ 5 writes them inside
# `rope_parameters` (with `rope_theta`), older files as top-level `rope_theta` + `rope_scaling`.
ROPE_TYPES = {"default": (), "linear": ("factor",),
              "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")}


@dataclass(frozen=True)
class Variant:
    """What tells Llama-style families apart: the MLP (SwiGLU `gate/up/down_proj` under
    `layers.{i}`, or `c_fc → GELU(tanh) → down_proj` under GPT-2's `h.{i}`) and the
    `hidden_act` values its config.json may name."""

    family: str
    simple_mlp: bool
    activations: tuple[str, ...]


# family → its variant; a Llama-style family package adds its own when imported
VARIANTS: dict[str, Variant] = {NAME: Variant(NAME, False, ("silu",))}


class LlamaKeys(Keys):
    """Llama-family LM (RMSNorm, RoPE, GQA, SwiGLU). Dimensions and forward settings come
    from an HF `config.json` (`config`, or the one in the `weights` directory) or are written
    inline for small models. A key written here (or set by `--set`) wins over config.json's
    value; a dimension that contradicts config.json is an error (PD0330). `pdc check --plan`
    lists every setting with where it came from."""

    config: Optional[FilePath] = key(None, doc="HF-format config.json; default: `config.json` in the `weights` "
                                               "directory, if there; or give the dimensions below")
    weights: Optional[FilePath] = key(None, doc="safetensors file or directory of shards with an index")
    dtype: Dtype = key("bf16", doc="dtype the frozen weights are held in (weights stored wider are rounded: "
                                   "PD0407 warns when this is left at its default)")
    vocab: Optional[int] = key(None, doc="vocabulary size", ge=1)
    hidden: Optional[int] = key(None, doc="residual width (hidden_size)", ge=1)
    intermediate: Optional[int] = key(None, doc="MLP width (intermediate_size)", ge=1)
    layers: Optional[int] = key(None, doc="number of transformer blocks", ge=1)
    heads: Optional[int] = key(None, doc="attention heads", ge=1)
    kv_heads: Optional[int] = key(None, doc="key/value heads (GQA); default: heads", ge=1)
    head_dim: Optional[int] = key(None, doc="per-head width; default: hidden / heads", ge=1)
    rope_theta: float = key(500_000.0, doc="RoPE base; default: config.json's, else this", gt=0.0)
    rms_norm_eps: float = key(1e-5, doc="RMSNorm epsilon; default: config.json's, else this", gt=0.0)
    tied_embeddings: bool = key(False, doc="lm_head shares the embedding matrix; default: config.json's "
                                           "`tie_word_embeddings`, else this")
    max_positions: int = key(8192, doc="longest sequence the RoPE tables cover", ge=1)


@dataclass(frozen=True)
class LlamaDims:
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool
    origin: dict[str, str]  # dim → "hidden_size in config.json" / "`hidden` in the spec"


def dims(keys: LlamaKeys, spec_dir: Path, written: Mapping[str, str] | None = None,
         config: ConfigFile | None = None) -> LlamaDims:
    """Resolve the model's dimensions: the config.json's, or the inline keys; a dimension
    written in the spec beside a config.json must agree with it (PD0330 at the key) — pdc
    cannot run a model whose shapes contradict its checkpoint's description."""
    written = written or {}
    if config is None:
        config = config_file(keys, spec_dir)
    raw = read_config(config.path, config.shown) if config is not None else {}
    values, origin = resolve_dims(keys, config, raw, _HF_FIELDS, _REQUIRED)
    tied = keys.tied_embeddings
    if config is not None and "tied_embeddings" not in written:
        tied = bool(raw.get("tie_word_embeddings", False))
    return _complete(values, origin, tied)


def forward_options(config: Mapping[str, Any], shown: str, family: str) -> dict[str, Any]:
    """The forward's settings in an HF config.json, in either transformers layout, checked:
    `rope_theta` and `rms_norm_eps` (when present) and `rope_scaling` (None, or a dict with
    `rope_type` linear | llama3 and its keys as numbers). What pdc cannot run — another
    activation, biases, a RoPE type it does not implement — is an error, never ignored."""
    rope = config.get("rope_parameters")
    if rope is not None and not (isinstance(rope, dict) and "rope_type" in rope):
        raise TargetConfigError(f"`rope_parameters` in `{shown}` is not one RoPE setting with a `rope_type` "
                                f"(found {short(rope)}); per-layer-type RoPE is not supported", "config",
                                code=UNRUNNABLE)
    theta = rope.get("rope_theta") if rope is not None and "rope_theta" in rope else config.get("rope_theta")
    options: dict[str, Any] = {"rope_scaling": _rope_scaling(rope if rope is not None else config.get("rope_scaling"),
                                                             shown)}
    for name, value in (("rope_theta", theta), ("rms_norm_eps", config.get("rms_norm_eps"))):
        if value is not None:
            options[name] = positive_number(value, name, shown)
    _check_architecture(config, shown, family)
    return options


def _rope_scaling(source: Any, shown: str) -> dict[str, Any] | None:
    if source is None:
        return None
    if not isinstance(source, dict):
        raise TargetConfigError(f"`rope_scaling` in `{shown}` is not an object (found {short(source)})", "config",
                                code=UNRUNNABLE)
    kind = source.get("rope_type", source.get("type", "default"))
    if not isinstance(kind, str) or kind not in ROPE_TYPES:
        shown_kind = f"`{kind}`" if isinstance(kind, str) else short(kind)
        raise TargetConfigError(f"RoPE type {shown_kind} in `{shown}` is not supported: pdc runs "
                                + ", ".join(f"`{k}`" for k in ROPE_TYPES), "config",
                                "decompose a checkpoint with default, linear or llama3 RoPE", UNRUNNABLE)
    if kind == "default":
        return None
    missing = [k for k in ROPE_TYPES[kind] if k not in source]
    if missing:
        raise TargetConfigError(f"the {kind} RoPE settings in `{shown}` have no `{missing[0]}`", "config",
                                code=UNRUNNABLE)
    return {"rope_type": kind, **{k: positive_number(source[k], k, shown) for k in ROPE_TYPES[kind]}}


def _check_architecture(config: Mapping[str, Any], shown: str, family: str) -> None:
    activations = VARIANTS[family].activations
    act = config.get("hidden_act", activations[0])
    if act not in activations:
        raise TargetConfigError(f"`hidden_act` in `{shown}` is `{act}`; a {family} target runs "
                                + " or ".join(f"`{a}`" for a in activations), "config", code=UNRUNNABLE)
    for bias in ("attention_bias", "mlp_bias"):
        if config.get(bias):
            raise TargetConfigError(f"`{bias}` is true in `{shown}`: pdc's {family} target has no bias terms",
                                    "config", code=UNRUNNABLE)


def _complete(values: dict[str, int], origin: dict[str, str], tied: bool) -> LlamaDims:
    heads = values["heads"]
    kv = values.get("kv_heads", heads)
    origin.setdefault("kv_heads", origin["heads"])
    if "head_dim" not in values:
        if values["hidden"] % heads:
            raise TargetConfigError(f"hidden size {values['hidden']} is not divisible by {heads} heads; "
                                    "give `head_dim`", "heads")
        origin["head_dim"] = f"{origin['hidden']} / heads"
    head_dim = values.get("head_dim", values["hidden"] // heads)
    if heads % kv:
        raise TargetConfigError(f"{heads} attention heads are not a multiple of {kv} key/value heads", "kv_heads")
    return LlamaDims(values["vocab"], values["hidden"], values["intermediate"], values["layers"], heads, kv,
                     head_dim, tied, origin)


def _layer_matrices(d: LlamaDims, i: int, simple_mlp: bool) -> list[Matrix]:
    o = d.origin
    q_out, kv_out = d.heads * d.head_dim, d.kv_heads * d.head_dim
    block, attn = ("h", "attn") if simple_mlp else ("layers", "self_attn")
    prefix = f"{block}.{i}"
    norm1 = "post-RMSNorm-1 residual"
    out = [
        Matrix(f"{prefix}.{attn}.q_proj", "q_proj", i, d.hidden, q_out, norm1, o["hidden"], f"heads × head_dim"),
        Matrix(f"{prefix}.{attn}.k_proj", "k_proj", i, d.hidden, kv_out, norm1, o["hidden"], "kv_heads × head_dim"),
        Matrix(f"{prefix}.{attn}.v_proj", "v_proj", i, d.hidden, kv_out, norm1, o["hidden"], "kv_heads × head_dim"),
        Matrix(f"{prefix}.{attn}.o_proj", "o_proj", i, q_out, d.hidden, "concatenated head outputs",
               "heads × head_dim", o["hidden"]),
    ]
    norm2 = "post-RMSNorm-2 residual"
    if simple_mlp:
        out += [Matrix(f"{prefix}.mlp.c_fc", "c_fc", i, d.hidden, d.intermediate, norm2, o["hidden"], o["intermediate"]),
                Matrix(f"{prefix}.mlp.down_proj", "down_proj", i, d.intermediate, d.hidden, "gelu_tanh(c_fc out)",
                       o["intermediate"], o["hidden"])]
    else:
        out += [Matrix(f"{prefix}.mlp.gate_proj", "gate_proj", i, d.hidden, d.intermediate, norm2, o["hidden"],
                       o["intermediate"]),
                Matrix(f"{prefix}.mlp.up_proj", "up_proj", i, d.hidden, d.intermediate, norm2, o["hidden"],
                       o["intermediate"]),
                Matrix(f"{prefix}.mlp.down_proj", "down_proj", i, d.intermediate, d.hidden, "silu(gate) ⊙ up",
                       o["intermediate"], o["hidden"])]
    return out


def _tensors(d: LlamaDims, kinds: list[Matrix]) -> list[FrozenTensor]:
    o = d.origin
    tensors = [FrozenTensor("target.embed", (d.vocab, d.hidden), (o["vocab"], o["hidden"]))]
    tensors += [FrozenTensor(f"target.layers.{m.kind}", (d.layers, m.d_in, m.d_out), (o["layers"], m.d_in_from,
                                                                                       m.d_out_from)) for m in kinds]
    tensors += [FrozenTensor(f"target.norms.{n}", (d.layers, d.hidden), (o["layers"], o["hidden"]))
                for n in ("attn", "mlp")]
    tensors.append(FrozenTensor("target.final_norm", (d.hidden,), (o["hidden"],)))
    if not d.tied:
        tensors.append(FrozenTensor("target.lm_head", (d.hidden, d.vocab), (o["hidden"], o["vocab"])))
    return tensors


def shape(keys: LlamaKeys, spec_dir: Path, family: str = NAME, written: Mapping[str, str] | None = None) -> TargetShape:
    """The target's shape and forward settings. One truth per setting: a key written in the
    spec (or by `--set`; `written` maps it to where) wins over config.json, which wins over
    the registry's family default; each setting keeps where it came from (`settings`)."""
    written = written or {}
    config = config_file(keys, spec_dir)
    d = dims(keys, spec_dir, written, config)
    forward: dict[str, Any] = {"rope_theta": keys.rope_theta, "rms_norm_eps": keys.rms_norm_eps, "rope_scaling": None}
    sources = {"rope_theta": "default", "rms_norm_eps": "default", "rope_scaling": "default (plain RoPE)"}
    raw: Mapping[str, Any] = {}
    if config is not None:
        raw = read_config(config.path, config.shown)
        forward.update(forward_options(raw, config.shown, family))
        sources.update(_config_sources(raw, config.shown))
    for name in ("rope_theta", "rms_norm_eps"):
        if name in written:
            forward[name], sources[name] = float(getattr(keys, name)), written[name]
    simple = VARIANTS[family].simple_mlp
    matrices = [m for i in range(d.layers) for m in _layer_matrices(d, i, simple)]
    facts = {"vocab": d.vocab, "hidden": d.hidden, "intermediate": d.intermediate, "layers": d.layers,
             "heads": d.heads, "kv_heads": d.kv_heads, "head_dim": d.head_dim}
    settings = {k: (v, _dim_source(k, written, config, raw)) for k, v in facts.items()}
    settings["tied_embeddings"] = (d.tied, _tied_source(written, config, raw))
    settings |= {k: (forward[k], sources[k]) for k in ("rope_theta", "rms_norm_eps", "rope_scaling")}
    found = f"{config.shown} ({config.found})" if config is not None else ""
    return TargetShape(family, tuple(matrices), tuple(_tensors(d, _layer_matrices(d, 0, simple))), d.layers, True,
                       "logits", facts, dict(d.origin), forward, settings, found)


def _config_sources(config: Mapping[str, Any], shown: str) -> dict[str, str]:
    """Where in config.json each forward setting it gives was read (either layout)."""
    rope = config.get("rope_parameters")
    out = {}
    if isinstance(rope, dict) and "rope_theta" in rope:
        out["rope_theta"] = f"{shown} `rope_parameters.rope_theta`"
    elif "rope_theta" in config:
        out["rope_theta"] = f"{shown} `rope_theta`"
    if "rms_norm_eps" in config:
        out["rms_norm_eps"] = f"{shown} `rms_norm_eps`"
    if isinstance(rope, dict):
        out["rope_scaling"] = f"{shown} `rope_parameters`"
    elif config.get("rope_scaling") is not None:
        out["rope_scaling"] = f"{shown} `rope_scaling`"
    return out


def _dim_source(key: str, written: Mapping[str, str], config: ConfigFile | None, raw: Mapping[str, Any]) -> str:
    if key in written:
        return written[key]
    if config is not None and raw.get(_HF_FIELDS[key]) is not None:
        return f"{config.shown} `{_HF_FIELDS[key]}`"
    return "derived (= heads)" if key == "kv_heads" else "derived (hidden / heads)"


def _tied_source(written: Mapping[str, str], config: ConfigFile | None, raw: Mapping[str, Any]) -> str:
    if "tied_embeddings" in written:
        return written["tied_embeddings"]
    if config is not None:
        return (f"{config.shown} `tie_word_embeddings`" if "tie_word_embeddings" in raw
                else f"default (no `tie_word_embeddings` in {config.shown})")
    return "default"


def inspect(path: Path, shape: TargetShape) -> list[WeightProblem]:
    """PD04xx: an HF checkpoint's headers against the shapes the target resolved to."""
    shapes = {t.path.removeprefix("target."): t.shape for t in shape.tensors}
    return inspect_lm(path, shapes, VARIANTS[shape.family].simple_mlp)


def family_of(name: str, keys: type[LlamaKeys], order: int) -> TargetFamily:
    """A Llama-style family: this file's shape, checks and JAX half, under `name`."""
    return TargetFamily(name, keys, lambda k, spec_dir, written: shape(k, spec_dir, name, written), order=order,
                        runtime=f"{__name__}.runtime:RUNTIME", pretrain=LM, inspect=inspect)


FAMILY = family_of(NAME, LlamaKeys, order=3)
