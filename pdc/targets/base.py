"""What the compiler knows about a target before any weight is read: its module tree,
every decomposable matrix with (d_in, d_out), the activation each one reads, and its
frozen parameter tensors. Shapes come from configuration only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Matrix:
    """One decomposable weight matrix, in the right-multiplication convention y = x @ W."""

    path: str  # module path, e.g. "layers.18.mlp.gate_proj"
    kind: str  # the per-layer role, e.g. "gate_proj"; sites of one kind stack along layers
    layer: int | None  # transformer/MLP block index, None for single-layer toys
    d_in: int
    d_out: int
    reads: str  # the activation entering the site, e.g. "post-RMSNorm-2 residual"
    d_in_from: str  # where d_in comes from, for messages ("hidden_size in config.json")
    d_out_from: str

    @property
    def writes_features(self) -> bool:
        """True when the site's output axis is the toy's features and its input is not (TMS
        `linear2`): per-feature metrics (MMCS, ML2R) then read W's columns, not its rows."""
        return self.d_out_from == "features" and self.d_in_from != "features"


@dataclass(frozen=True)
class FrozenTensor:
    """A frozen parameter of the target as stored for the scan (layers stacked)."""

    path: str  # "target.layers.q_proj"
    shape: tuple[int, ...]
    dims_from: tuple[str, ...]  # per dimension: where its size comes from


@dataclass(frozen=True)
class TargetShape:
    family: str
    matrices: tuple[Matrix, ...]  # canonical site order (RNG- and concatenation-load-bearing)
    tensors: tuple[FrozenTensor, ...]
    n_layers: int  # blocks of the target (1 for TMS)
    has_positions: bool  # LMs: leading dims (B, T); toys: (B,)
    output: str  # "logits" (KL recon) or "features" (MSE recon)
    dims: dict[str, int] = field(default_factory=dict)  # family facts for later passes: heads, vocab, ...
    dims_from: dict[str, str] = field(default_factory=dict)
    # the family's forward settings, resolved once where the target is read (the spec's keys, or
    # the HF config.json's RoPE and norm settings): what `build_target` takes besides the shape
    forward: dict[str, Any] = field(default_factory=dict)
    # LMs: each setting pdc resolved (dimensions, tying, RoPE, norm) → (value, where it came from:
    # a spec line, `--set N`, a config.json key, or a default), for `check --plan`
    settings: dict[str, tuple[Any, str]] = field(default_factory=dict)
    config: str = ""  # the config.json read and how it was found; "" when none

    def matrix(self, path: str) -> Matrix | None:
        return next((m for m in self.matrices if m.path == path), None)


class TargetConfigError(Exception):
    """Raised by a family's shape builder; the pass turns it into a diagnostic `code` at
    `key` (PD0301: the target cannot be resolved; PD0406: its config.json describes a model
    pdc cannot run — an input-file problem, like the weights')."""

    def __init__(self, message: str, key: str = "", help_: str = "", code: str = "PD0301") -> None:
        super().__init__(message)
        self.key = key
        self.help = help_
        self.code = code
