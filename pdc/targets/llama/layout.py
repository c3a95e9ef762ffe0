"""The HF safetensors layout of the Llama-style families (JAX-free: `pdc check` reads it):
every tensor's name, where it lives in the params tree, whether it is stored transposed,
and the PD04xx checks of a checkpoint against it. Used by the loader and writer (`hf.py`).

Llama names (HF `LlamaForCausalLM`):
    model.embed_tokens.weight, model.layers.{i}.self_attn.{q,k,v,o}_proj.weight,
    model.layers.{i}.mlp.{gate,up,down}_proj.weight, model.layers.{i}.input_layernorm.weight,
    model.layers.{i}.post_attention_layernorm.weight, model.norm.weight, lm_head.weight (untied)
LlamaSimpleMLP names (the torch `LlamaSimpleMLP` state dict, GPT-2 style):
    wte.weight, h.{i}.attn.{q,k,v,o}_proj.weight, h.{i}.mlp.{c_fc,down_proj}.weight,
    h.{i}.rms_1.weight, h.{i}.rms_2.weight, ln_f.weight, lm_head.weight (optional: tied to wte)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from pdc.inputs.checkpoint import WeightProblem, inspect_layout


@dataclass(frozen=True)
class Entry:
    """One HF tensor: where it lives in the params tree and whether it is transposed."""

    hf: str
    path: tuple[str, ...]  # e.g. ("layers", "q_proj")
    layer: int | None
    transpose: bool


def _layer_names(simple_mlp: bool) -> dict[str, str]:
    if simple_mlp:
        return {"q_proj": "h.{i}.attn.q_proj.weight", "k_proj": "h.{i}.attn.k_proj.weight",
                "v_proj": "h.{i}.attn.v_proj.weight", "o_proj": "h.{i}.attn.o_proj.weight",
                "c_fc": "h.{i}.mlp.c_fc.weight", "down_proj": "h.{i}.mlp.down_proj.weight",
                "attn": "h.{i}.rms_1.weight", "mlp": "h.{i}.rms_2.weight"}
    names = {k: f"model.layers.{{i}}.self_attn.{k}.weight" for k in ("q_proj", "k_proj", "v_proj", "o_proj")}
    names |= {k: f"model.layers.{{i}}.mlp.{k}.weight" for k in ("gate_proj", "up_proj", "down_proj")}
    return names | {"attn": "model.layers.{i}.input_layernorm.weight",
                    "mlp": "model.layers.{i}.post_attention_layernorm.weight"}


def hf_entries(kinds: tuple[str, ...], n_layers: int, simple_mlp: bool, tied: bool) -> list[Entry]:
    """Every HF tensor of the model, in a stable order (embedding, layers, final norm, head)."""
    names = _layer_names(simple_mlp)
    top = ("wte.weight", "ln_f.weight") if simple_mlp else ("model.embed_tokens.weight", "model.norm.weight")
    entries = [Entry(top[0], ("embed",), None, False)]
    for i in range(n_layers):
        entries += [Entry(names[k].format(i=i), ("layers", k), i, True) for k in kinds]
        entries += [Entry(names[n].format(i=i), ("norms", n), i, False) for n in ("attn", "mlp")]
    entries.append(Entry(top[1], ("final_norm",), None, False))
    if not tied:
        entries.append(Entry("lm_head.weight", ("lm_head",), None, True))
    return entries


def tolerated(tied: bool) -> Callable[[str], bool]:
    """Tensors that may be present without being used: the RoPE buffer some exports keep,
    and a tied model's `lm_head.weight` (torch state dicts list a tied weight twice)."""
    return lambda name: name.endswith("rotary_emb.inv_freq") or (tied and name == "lm_head.weight")



def hf_expected(shapes: Mapping[str, tuple[int, ...]], simple_mlp: bool) -> dict[str, tuple[int, ...]]:
    """Every HF tensor name of a checkpoint with the shape it must have on disk, from the
    params' shapes by dotted path (`embed`, `layers.q_proj` [L, d_in, d_out], `norms.attn`,
    `final_norm`, `lm_head` when untied)."""
    kinds = tuple(k.split(".", 1)[1] for k in shapes if k.startswith("layers."))
    n_layers = shapes[f"layers.{kinds[0]}"][0]
    out = {}
    for entry in hf_entries(kinds, n_layers, simple_mlp, "lm_head" not in shapes):
        shape = tuple(shapes[".".join(entry.path)])
        shape = shape[1:] if entry.layer is not None else shape
        out[entry.hf] = tuple(reversed(shape)) if entry.transpose else shape
    return out


def inspect_lm(path: str | Path, shapes: Mapping[str, tuple[int, ...]], simple_mlp: bool) -> list[WeightProblem]:
    """What is wrong with the LM checkpoint at `path` for params of `shapes` (`hf_expected`), from
    the headers only; a tied model may still carry its head, which must then fit."""
    tied, (vocab, hidden) = "lm_head" not in shapes, shapes["embed"]
    optional = {"lm_head.weight": (vocab, hidden)} if tied else {}
    return inspect_layout(path, hf_expected(shapes, simple_mlp), tolerated(False), optional)
