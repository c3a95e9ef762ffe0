"""Target family `gpt2` — GPT-2 as HF `GPT2LMHeadModel` stores it: its keys, its shape (from an
HF `config.json` or from dimensions written in the spec), the checkpoint's tensor-name table
and the checks `pdc check` runs on it (safetensors headers only). JAX-free: the model, its
loader and writer are `model.py` (the family's `FamilyRuntime`), imported only when a run
needs them.

Site naming. HF GPT-2 fuses the attention's input projections into one `Conv1D`,
`h.{i}.attn.c_attn` ([n_embd, 3·n_embd], columns q | k | v). pdc decomposes each column
block as its own site, `h.{i}.attn.c_attn.q`, `.k`, `.v` (the torch library decomposes the
fused matrix whole as `transformer.h.{i}.attn.c_attn`; its GPT2Simple model names the
unfused ones `h.{i}.attn.{q,k,v}_proj`). The other sites are the checkpoint's modules:
`h.{i}.attn.c_proj`, `h.{i}.mlp.c_fc`, `h.{i}.mlp.c_proj`, the torch library's addresses
without HF's `transformer.` prefix. Every bias stays frozen: a decomposed site computes
`x @ (V·mask·U) + b`.

Kinds (the per-layer roles sites stack by) are dotless, since they name tensors
(`components.<kind>.V`): c_attn_q, c_attn_k, c_attn_v, attn_c_proj, c_fc, mlp_c_proj.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

from pdc.inputs.checkpoint import Checkpoint, WeightProblem, WeightsError, inspect_layout
from pdc.registry.pretrain import LM
from pdc.registry.types import Dtype, FilePath, Keys, key
from pdc.targets._hf import UNRUNNABLE, ConfigFile, config_file, positive_number, read_config, resolve_dims
from pdc.targets.base import FrozenTensor, Matrix, TargetConfigError, TargetFamily, TargetShape

NAME = "gpt2"


class Gpt2Keys(Keys):
    """GPT-2 (HF `GPT2LMHeadModel`): learned position embeddings, LayerNorm with bias, fused
    `c_attn` (decomposed as its q/k/v column blocks `h.{i}.attn.c_attn.{q,k,v}`), tanh-GELU MLP
    `h.{i}.mlp.{c_fc, c_proj}`, tied head; every bias stays frozen. Dimensions and forward
    settings come from the checkpoint's `config.json` (`config`, or the one in the `weights`
    directory) or are written inline, under config.json's names. A key written here (or set by
    `--set`) wins over config.json's value; a dimension that contradicts it is an error
    (PD0330)."""

    config: Optional[FilePath] = key(None, doc="HF-format config.json; default: `config.json` in the `weights` "
                                               "directory, if there; or give the dimensions below")
    weights: Optional[FilePath] = key(None, doc="safetensors file or directory (as `save_pretrained` writes it, "
                                                "`transformer.h.0...`, or as the hub's `gpt2` stores it, `h.0...`)")
    dtype: Dtype = key("bf16", doc="dtype the frozen weights are held in (weights stored wider are rounded: "
                                   "PD0407 warns when this is left at its default)")
    vocab: Optional[int] = key(None, doc="vocabulary size (vocab_size)", ge=1)
    n_embd: Optional[int] = key(None, doc="residual width", ge=1)
    n_layer: Optional[int] = key(None, doc="number of transformer blocks", ge=1)
    n_head: Optional[int] = key(None, doc="attention heads (n_embd / n_head per head)", ge=1)
    n_inner: Optional[int] = key(None, doc="MLP width; default: config.json's, else 4 × n_embd", ge=1)
    n_positions: Optional[int] = key(None, doc="rows of the learned position table: the longest sequence", ge=1)
    layer_norm_epsilon: float = key(1e-5, doc="LayerNorm epsilon; default: config.json's, else this", gt=0.0)
    activation_function: Literal["gelu_new", "gelu_pytorch_tanh", "gelu"] = key(
        "gelu_new", doc="MLP non-linearity: tanh-GELU (`gelu_new`, `gelu_pytorch_tanh`) or exact `gelu`; "
                        "default: config.json's, else this")


KINDS = ("c_attn_q", "c_attn_k", "c_attn_v", "attn_c_proj", "c_fc", "mlp_c_proj")  # computation order
ATTN_PARTS = ("c_attn_q", "c_attn_k", "c_attn_v")  # column blocks 0, 1, 2 of the fused c_attn
ACTIVATIONS = {"gelu_new": True, "gelu_pytorch_tanh": True, "gelu": False}  # name → tanh approximation
# spec key → HF config.json field
HF_FIELDS = {"vocab": "vocab_size", "n_embd": "n_embd", "n_layer": "n_layer", "n_head": "n_head",
             "n_inner": "n_inner", "n_positions": "n_positions"}
_REQUIRED = ("vocab", "n_embd", "n_layer", "n_head", "n_positions")
# config.json flags that change GPT-2's forward away from what pdc runs: (field, value pdc runs)
_FIXED = (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False), ("add_cross_attention", False),
          ("tie_word_embeddings", True))


@dataclass(frozen=True)
class Gpt2Dims:
    vocab: int
    hidden: int  # n_embd
    intermediate: int  # n_inner
    layers: int  # n_layer
    heads: int  # n_head
    positions: int  # n_positions
    origin: dict[str, str]  # dim → "n_embd in config.json" / "`n_embd` in the spec"

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


def _check_architecture(config: Mapping[str, Any], shown: str) -> None:
    """What pdc's GPT-2 cannot run is an error naming the field, never ignored."""
    for field, runs in _FIXED:
        if field in config and config[field] is not None and bool(config[field]) != runs:
            raise TargetConfigError(f"`{field}` is {json.dumps(config[field])} in `{shown}`; pdc's GPT-2 runs "
                                    f"{json.dumps(runs)}", "config", code=UNRUNNABLE)
    act = config.get("activation_function", "gelu_new")
    if act not in ACTIVATIONS:
        raise TargetConfigError(f"`activation_function` in `{shown}` is {json.dumps(act)}; a gpt2 target runs "
                                + ", ".join(f"`{a}`" for a in ACTIVATIONS), "config", code=UNRUNNABLE)
    positive_number(config.get("layer_norm_epsilon", 1e-5), "layer_norm_epsilon", shown)


def dims(keys: Gpt2Keys, config: ConfigFile | None, raw: Mapping[str, Any]) -> Gpt2Dims:
    """The dimensions: config.json's, or the inline keys; one written beside a config.json
    must agree with it (PD0330 at the key)."""
    values, origin = resolve_dims(keys, config, raw, HF_FIELDS, _REQUIRED)
    if "n_inner" not in values:
        values["n_inner"], origin["n_inner"] = 4 * values["n_embd"], f"4 × {origin['n_embd']}"
    if values["n_embd"] % values["n_head"]:
        raise TargetConfigError(f"n_embd {values['n_embd']} is not divisible by {values['n_head']} heads",
                                "n_head" if config is None else "config")
    return Gpt2Dims(values["vocab"], values["n_embd"], values["n_inner"], values["n_layer"], values["n_head"],
                    values["n_positions"], origin)


def _layer_matrices(d: Gpt2Dims, i: int) -> list[Matrix]:
    o, e, m = d.origin, d.hidden, d.intermediate
    p, ln1, ln2 = f"h.{i}", "post-ln_1 residual", "post-ln_2 residual"
    parts = [Matrix(f"{p}.attn.c_attn.{kind[-1]}", kind, i, e, e, ln1, o["n_embd"],
                    f"{o['n_embd']} ({'qkv'.index(kind[-1])}th column block of c_attn)") for kind in ATTN_PARTS]
    return parts + [
        Matrix(f"{p}.attn.c_proj", "attn_c_proj", i, e, e, "concatenated head outputs", o["n_embd"], o["n_embd"]),
        Matrix(f"{p}.mlp.c_fc", "c_fc", i, e, m, ln2, o["n_embd"], o["n_inner"]),
        Matrix(f"{p}.mlp.c_proj", "mlp_c_proj", i, m, e, "gelu(c_fc out)", o["n_inner"], o["n_embd"]),
    ]


def param_shapes(vocab: int, hidden: int, intermediate: int, layers: int, positions: int) -> dict[str, tuple[int, ...]]:
    """The params pytree by dotted path (what the loader, `init_params` and the IR's frozen
    tensors share): matrices right-multiplying `[L, d_in, d_out]`, layers stacked."""
    n, e, m = layers, hidden, intermediate
    io = {"c_attn_q": (e, e), "c_attn_k": (e, e), "c_attn_v": (e, e), "attn_c_proj": (e, e), "c_fc": (e, m),
          "mlp_c_proj": (m, e)}
    shapes: dict[str, tuple[int, ...]] = {"wte": (vocab, e), "wpe": (positions, e)}
    for kind in KINDS:
        shapes[f"layers.{kind}"] = (n, *io[kind])
        shapes[f"biases.{kind}"] = (n, io[kind][1])
    for norm in ("ln_1", "ln_2"):
        shapes |= {f"norms.{norm}.weight": (n, e), f"norms.{norm}.bias": (n, e)}
    return shapes | {"ln_f.weight": (e,), "ln_f.bias": (e,)}


def _tensors(d: Gpt2Dims) -> list[FrozenTensor]:
    o = d.origin
    names = {d.vocab: o["vocab"], d.hidden: o["n_embd"], d.intermediate: o["n_inner"], d.positions: o["n_positions"]}
    out = []
    for path, shape in param_shapes(d.vocab, d.hidden, d.intermediate, d.layers, d.positions).items():
        stacked = path.split(".")[0] in ("layers", "biases", "norms")
        dims_from = ((o["n_layer"],) if stacked else ()) + tuple(names.get(s, str(s)) for s in shape[stacked:])
        out.append(FrozenTensor(f"target.{path}", shape, dims_from))
    return out


def shape(keys: Gpt2Keys, spec_dir: Path, written: Mapping[str, str] | None = None) -> TargetShape:
    """The target's shape and forward settings (LayerNorm epsilon, activation): a key written
    in the spec (or by `--set`) wins over config.json, which wins over the registry default;
    each setting keeps where it came from (`settings`, for `check --plan`)."""
    written = written or {}
    config = config_file(keys, spec_dir)
    raw: Mapping[str, Any] = read_config(config.path, config.shown) if config is not None else {}
    if config is not None:
        _check_architecture(raw, config.shown)
    d = dims(keys, config, raw)
    forward: dict[str, Any] = {}
    settings: dict[str, tuple[Any, str]] = {}
    for name in ("layer_norm_epsilon", "activation_function"):
        if name in written:
            value, source = getattr(keys, name), written[name]
        elif name in raw:
            value, source = raw[name], f"{config.shown} `{name}`"  # type: ignore[union-attr]
        else:
            value, source = getattr(keys, name), "default"
        forward[name] = float(value) if name == "layer_norm_epsilon" else value
        settings[name] = (forward[name], source)
    facts = {"vocab": d.vocab, "hidden": d.hidden, "intermediate": d.intermediate, "layers": d.layers,
             "heads": d.heads, "kv_heads": d.heads, "head_dim": d.head_dim, "positions": d.positions}
    key_of = {"vocab": "vocab", "hidden": "n_embd", "intermediate": "n_inner", "layers": "n_layer",
              "heads": "n_head", "kv_heads": "n_head", "positions": "n_positions"}
    dims_from = {fact: d.origin[key] for fact, key in key_of.items()}
    dims_from["head_dim"] = f"{d.origin['n_embd']} / n_head"
    settings = {key: (getattr(d, fact), written.get(key, d.origin[key]))
                for fact, key in key_of.items() if fact != "kv_heads"} | settings
    matrices = [m for i in range(d.layers) for m in _layer_matrices(d, i)]
    found = f"{config.shown} ({config.found})" if config is not None else ""
    return TargetShape(NAME, tuple(matrices), tuple(_tensors(d)), d.layers, True, "logits", facts, dims_from,
                       forward, settings, found)


# ---- the checkpoint ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One HF tensor (without the `transformer.` prefix): the params path it fills, its layer,
    and for c_attn the column blocks it splits into (q, k, v)."""

    hf: str
    path: str  # params path, e.g. "layers.c_fc"; for the fused c_attn "layers.c_attn" (split)
    layer: int | None


def hf_entries(n_layers: int) -> list[Entry]:
    """Every tensor of a `GPT2LMHeadModel` checkpoint, in HF's order (tied head omitted)."""
    out = [Entry("wte.weight", "wte", None), Entry("wpe.weight", "wpe", None)]
    for i in range(n_layers):
        p = f"h.{i}"
        out += [Entry(f"{p}.ln_1.weight", "norms.ln_1.weight", i), Entry(f"{p}.ln_1.bias", "norms.ln_1.bias", i),
                Entry(f"{p}.attn.c_attn.weight", "layers.c_attn", i), Entry(f"{p}.attn.c_attn.bias", "biases.c_attn", i),
                Entry(f"{p}.attn.c_proj.weight", "layers.attn_c_proj", i),
                Entry(f"{p}.attn.c_proj.bias", "biases.attn_c_proj", i),
                Entry(f"{p}.ln_2.weight", "norms.ln_2.weight", i), Entry(f"{p}.ln_2.bias", "norms.ln_2.bias", i),
                Entry(f"{p}.mlp.c_fc.weight", "layers.c_fc", i), Entry(f"{p}.mlp.c_fc.bias", "biases.c_fc", i),
                Entry(f"{p}.mlp.c_proj.weight", "layers.mlp_c_proj", i),
                Entry(f"{p}.mlp.c_proj.bias", "biases.mlp_c_proj", i)]
    return out + [Entry("ln_f.weight", "ln_f.weight", None), Entry("ln_f.bias", "ln_f.bias", None)]


def stored_shape(entry: Entry, shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, ...]:
    """The shape an entry has on disk: Conv1D weights are stored `[in, out]` as pdc holds
    them, so only the fused c_attn differs (q | k | v side by side)."""
    if entry.path in ("layers.c_attn", "biases.c_attn"):
        part = shapes[entry.path.replace("c_attn", "c_attn_q")][1:]
        return part[:-1] + (3 * part[-1],)
    shape = shapes[entry.path]
    return shape[1:] if entry.layer is not None else shape


def prefix_of(checkpoint: Checkpoint) -> str:
    """`transformer.` for a `save_pretrained` checkpoint, "" for the hub `gpt2` files."""
    prefixed = sum(name.startswith("transformer.") for name in checkpoint.files)
    return "transformer." if prefixed * 2 > len(checkpoint.files) or checkpoint.has("transformer.wte.weight") else ""


def tolerated(prefix: str) -> Any:
    """Tensors present without being used: the tied `lm_head.weight` (a torch state dict lists
    a tied weight twice) and the causal-mask buffers old exports keep (`h.{i}.attn.bias`,
    `h.{i}.attn.masked_bias`), which are not weights."""
    def check(name: str) -> bool:
        rest = name.removeprefix(prefix)
        return name == "lm_head.weight" or (rest.startswith("h.") and rest.endswith((".attn.bias", ".attn.masked_bias")))
    return check


def hf_expected(shapes: Mapping[str, tuple[int, ...]], prefix: str) -> dict[str, tuple[int, ...]]:
    n_layers = shapes["layers.c_fc"][0]
    return {prefix + e.hf: stored_shape(e, shapes) for e in hf_entries(n_layers)}


_CONV1D_HELP = ("GPT-2's Conv1D weights are stored (in, out), c_attn as (n_embd, 3·n_embd); check the config's "
                "dimensions")


def inspect_checkpoint(path: str | Path, shape: TargetShape) -> list[WeightProblem]:
    """What is wrong with the GPT-2 checkpoint at `path` for `shape`, from the safetensors
    headers only: the PD04xx problems `pdc check` reports for every family's checkpoint
    (`inspect_layout`), against the layout its names say it has (with or without the
    `transformer.` prefix)."""
    shapes = {t.path.removeprefix("target."): t.shape for t in shape.tensors}
    try:
        prefix = prefix_of(Checkpoint.open(path))
    except WeightsError:
        prefix = "transformer."  # it does not open: inspect_layout says why (PD0401)
    problems = inspect_layout(path, hf_expected(shapes, prefix), tolerated(prefix),
                              optional={"lm_head.weight": shapes["wte"]})
    return [replace(p, help=_CONV1D_HELP) if p.code == "PD0403" else p for p in problems]

FAMILY = TargetFamily(NAME, Gpt2Keys, shape, order=5, runtime=f"{__name__}.model:RUNTIME", pretrain=LM,
                      inspect=inspect_checkpoint)

__all__ = ["FAMILY", "Gpt2Keys", "shape"]
