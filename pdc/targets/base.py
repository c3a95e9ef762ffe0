"""What the compiler knows about a target before any weight is read: its module tree,
every decomposable matrix with (d_in, d_out), the activation each one reads, and its
frozen parameter tensors. Shapes come from configuration only.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from pdc.registry.schema import BlockSchema, Layout
from pdc.registry.types import Keys


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


# ---- the family interface ------------------------------------------------------------------------


@dataclass(frozen=True)
class FamilyRuntime:
    """The JAX half of a target family, imported only when a run lowers, loads or pretrains
    (`TargetFamily.runtime` names it), so `pdc check` never imports JAX. Annotated `Any`
    where the type is a JAX one (`pdc.models.base.Target`, a params pytree): this module is
    JAX-free.

    build(shape, sites, decomposed, compute_dtype, options) → Target
        the JAX model (pdc/models/base.py's `Target`) of `shape` with `decomposed` (kind →
        layers, canonical order) decomposed; it pops the `options` it takes (the shape's
        `forward` settings and the lowering's, e.g. `remat`) — what is left is an error.
    load(target, path, dtype) → params
        the frozen weights as host (NumPy) arrays, `dtype` None meaning as stored; every
        failure a one-line `WeightsError`.
    save(target, params, path)           optional: write pretrained params where `load` reads them
    recipe(target, init, pretrain, data) optional: the toy pretraining recipe
        `(loss, fixed, trainable, assemble)` (pdc/run/pretrain.py); None and a `logits` output:
        the shared next-token recipe on the local corpus.
    sanity(target, params) → dict         optional: facts about pretrained weights for pretrain.json
    """

    build: Callable[..., Any]
    load: Callable[..., Any]
    save: Callable[..., None] | None = None
    recipe: Callable[..., Any] | None = None
    sanity: Callable[..., dict[str, Any]] | None = None


@dataclass(frozen=True)
class TargetFamily:
    """One target family, everything pdc knows about it in one place (docs/api.md, "Extending
    pdc"). In-tree families are the packages of `pdc.targets` that define `FAMILY`; out-of-tree
    ones come from the `pdc.targets` entry point group. Deleting a family's package removes
    `target <name>` from the language, its docs and every dispatch: nothing else names it.

    The module defining `FAMILY` is imported by `pdc check`, so it is JAX-free: the keys model,
    the shape and the checks of the checkpoint's layout live there; the JAX model, loader and
    pretraining recipe live in the module `runtime` names (`"pkg.module:ATTR"`, a
    `FamilyRuntime`), the figures in the one `figures` names, both imported when used.

    name        the label of `target <name> { ... }`
    keys        its block's keys model; its docstring is the block's doc in the language reference
    shape       (keys, spec_dir, written) → TargetShape: the module tree, every decomposable
                matrix, the frozen tensors and forward settings, from the keys (and any
                config.json) only, never from weights. `written`: key → where the spec (or
                `--set`) wrote it, for "where did this setting come from". Raise
                `TargetConfigError` for a target that cannot be resolved.
    order       its fixed place in the registry and the docs (in-tree: distinct)
    pretrain    the keys of its optional `pretrain { ... }` child block, with that block's doc
    runtime     "module:ATTR" of its `FamilyRuntime`
    inspect     (weights path, shape) → [WeightProblem]: the PD04xx checks of a weights file
                against the shape, reading headers only (default: that the file opens)
    figures     "module:function" drawing its figures from a checkpoint: (run, ci, out) →
                [Path], `ci` the one-hot probe's CI per site (pdc/plot/probe.py); "" — the
                family's runs get the log curves only, and `pdc plot` loads no checkpoint
    traits      what eval metrics may ask of the family beyond its output (`EvalMetric.needs`),
                e.g. "feature_sites": every site reads or writes the features (TMS)
    """

    name: str
    keys: type[Keys]
    shape: Callable[[Any, Path, Mapping[str, str]], TargetShape]
    order: int
    runtime: str
    pretrain: tuple[type[Keys], str] | None = None
    inspect: Callable[[Path, TargetShape], list[Any]] | None = None
    figures: str = ""
    traits: frozenset[str] = frozenset()

    def schema(self) -> BlockSchema:
        """The `target <name>` variant of the registry's `target` block."""
        children = () if self.pretrain is None else (
            BlockSchema("pretrain", self.pretrain[1], keys=self.pretrain[0], layout=Layout.EXPANDED),)
        return BlockSchema(self.name, self.keys.__doc__ or "", keys=self.keys, children=children,
                           layout=Layout.EXPANDED)

    def jax(self) -> FamilyRuntime:
        """Its JAX half (imports JAX)."""
        runtime = resolve(self.runtime)
        if not isinstance(runtime, FamilyRuntime):
            raise TypeError(f"`{self.runtime}` of target family `{self.name}` is not a FamilyRuntime")
        return runtime


def resolve(reference: str) -> Any:
    """The object a "package.module:attr" reference names, importing its module."""
    module, _, attr = reference.partition(":")
    return getattr(importlib.import_module(module), attr)
