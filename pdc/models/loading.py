"""Reading target weights from safetensors, shared by the families: `Checkpoint` (the
reader, pdc.inputs.checkpoint) and torch `nn.Linear` matrices in right-multiplication layout.
A family's own layout lives with it (the Llama-style HF layout: pdc/targets/llama/hf.py).

Every failure is a `WeightsError` with a one-line message naming the file and tensor. The
reader lives in `pdc.inputs.checkpoint` (no JAX: `pdc check` uses it).
"""

from __future__ import annotations

import numpy as np

from pdc.inputs.checkpoint import Checkpoint, WeightsError


def read_torch_linear(checkpoint: Checkpoint, name: str, d_in: int, d_out: int) -> np.ndarray:
    """A torch `nn.Linear` weight `(out, in)` as a right-multiplication matrix `(in, out)`."""
    return np.ascontiguousarray(checkpoint.get(name, (d_out, d_in)).T)


__all__ = ["Checkpoint", "WeightsError", "read_torch_linear"]
