"""Writes the checkpoints of the PD040x golden cases (run from the repository root after a
change to the tiny model below; the cases' spec.pd files are hand-written):

    .venv/bin/python tests/golden/make_weight_cases.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

HERE = Path(__file__).resolve().parent
# vocab 16, hidden 8, intermediate 16, 1 layer, 2 heads of 4, 1 kv head: (out, in) on disk
SHAPES = {"model.embed_tokens.weight": (16, 8), "model.norm.weight": (8,), "lm_head.weight": (16, 8),
          "model.layers.0.input_layernorm.weight": (8,), "model.layers.0.post_attention_layernorm.weight": (8,),
          "model.layers.0.self_attn.q_proj.weight": (8, 8), "model.layers.0.self_attn.k_proj.weight": (4, 8),
          "model.layers.0.self_attn.v_proj.weight": (4, 8), "model.layers.0.self_attn.o_proj.weight": (8, 8),
          "model.layers.0.mlp.gate_proj.weight": (16, 8), "model.layers.0.mlp.up_proj.weight": (16, 8),
          "model.layers.0.mlp.down_proj.weight": (8, 16)}


def tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {name: rng.normal(size=shape).astype(np.float32) for name, shape in SHAPES.items()}


def main() -> None:
    good = tensors()
    cases = {
        "pd0402_missing_tensor": {k: v for k, v in good.items() if k != "model.layers.0.mlp.up_proj.weight"},
        "pd0403_transposed_tensor": good | {"model.layers.0.mlp.down_proj.weight": good[
            "model.layers.0.mlp.down_proj.weight"].T.copy()},
        "pd0404_integer_tensor": good | {"model.norm.weight": np.ones(8, np.int32)},
        "pd0405_unexpected_bias": good | {"model.layers.0.self_attn.q_proj.bias": np.zeros(8, np.float32)},
    }
    for case, content in cases.items():
        save_file(content, str(HERE / case / "model.safetensors"), metadata={"format": "pt"})


if __name__ == "__main__":
    main()
