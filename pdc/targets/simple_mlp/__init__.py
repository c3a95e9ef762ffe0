"""Target family `simple_mlp` — LlamaSimpleMLP, the torch library's GPT-2-module-tree Llama:
rotary GQA attention and a `c_fc → GELU(tanh) → down_proj` MLP under `h.{i}`. A Llama-style
family: its keys extend `llama`'s and it runs `llama`'s shape, checks and JAX half as a
`Variant` (so it needs pdc/targets/llama)."""

from __future__ import annotations

from pdc.registry.types import key
from pdc.targets.llama import VARIANTS, LlamaKeys, Variant, family_of

NAME = "simple_mlp"
VARIANTS[NAME] = Variant(NAME, True, ("gelu_pytorch_tanh", "gelu_new"))


class SimpleMlpKeys(LlamaKeys):
    """LlamaSimpleMLP (GPT-2 module tree `h.{i}`): rotary GQA attention and a
    `c_fc → GELU(tanh) → down_proj` MLP, tied embeddings."""

    rope_theta: float = key(10_000.0, doc="RoPE base", gt=0.0)
    rms_norm_eps: float = key(1e-6, doc="RMSNorm epsilon", gt=0.0)
    tied_embeddings: bool = key(True, doc="lm_head shares the embedding matrix")


FAMILY = family_of(NAME, SimpleMlpKeys, order=4)

__all__ = ["FAMILY", "SimpleMlpKeys"]
