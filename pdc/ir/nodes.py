"""Typed, frozen payloads of IR nodes (DESIGN.md §5). One dataclass per node kind;
the graph's edges are data dependencies between them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pdc.syntax.span import Span


@dataclass(frozen=True)
class TargetNode:
    family: str
    n_layers: int
    has_positions: bool
    output: str  # "logits" → KL recon, "features" → MSE recon
    dims: tuple[tuple[str, int], ...]
    forward: tuple[tuple[str, Any], ...] = ()  # LMs: RoPE base, norm epsilon, scaling, tying — what runs


@dataclass(frozen=True)
class SiteNode:
    path: str
    kind: str
    layer: int | None
    order: int  # canonical site order
    d_in: int
    d_out: int
    C: int
    reads: str
    span: Span = field(compare=False)  # the decompose entry that claimed it
    c_span: Span | None = field(default=None, compare=False)  # where its C is set


@dataclass(frozen=True)
class TieNode:
    """`site` shares the components of `source`, transposed; ties are made between the
    stacks (`kind`s) the two sites live in."""

    site: str
    kind: str
    source: str
    source_kind: str


@dataclass(frozen=True)
class TensorNode:
    """A sharded array of the train state or of the step's inputs."""

    path: str  # "components.gate_proj.V", "ci.blocks.q", "target.embed", "batch"
    group: str  # "target" | "components" | "ci" | "sources" | "batch"
    shape: tuple[int, ...]
    dtype: str
    role: str  # how presets shard it: "column", "row", "vector", "stack", "batch", ...
    dims_from: tuple[str, ...]  # per dimension, where its size came from (for messages)
    trainable: bool  # has optimizer moments
    moments: int = 0  # optimizer/adversary state arrays of the same shape (Adam: 2)
    stack_dims: int = 0  # leading axes that stack layers / chunks / blocks for a scan
    dim_spans: tuple[Span | None, ...] = field(default=(), compare=False)  # spec places that set a dim


@dataclass(frozen=True)
class CiChunkNode:
    index: int
    sites: tuple[str, ...]
    input_width: int
    c_total: int


@dataclass(frozen=True)
class OptionsNode:
    """One validated block's typed keys, as the lowering and the run read them (`train`,
    `data`, `eval`, `log`, `checkpoint`, `remat`, `precision`, `ci`, `target`,
    `target.pretrain`, `optimize.faithfulness_warmup`, `eval.ci_pattern`). A block the spec
    leaves out carries the registry's defaults (`written=False`), so no reader writes a
    default twice."""

    block: str
    label: str | None
    keys: Any  # the registry's `Keys` model of the block (None: a block of entries only)
    entries: tuple[tuple[str, Any], ...] = ()  # resolved entries, e.g. site path → expected CI pattern
    base: str = field(default="", compare=False)  # directory its relative paths resolve against
    written: bool = field(default=True, compare=False)  # False: the spec has no such block
    span: Span | None = field(default=None, compare=False)  # the block's header, for diagnostics

    def path(self, key: str) -> str | None:
        """The file a path-valued key names, resolved against the spec's directory."""
        value = getattr(self.keys, key)
        return None if value is None else str(Path(self.base) / value)


@dataclass(frozen=True)
class TermNode:
    name: str  # the instance: its registry name, or `name.label` for a named one (`stochastic_recon.subset`)
    weight: float
    divergence: str  # "kl" | "mse" | "" (not a recon term)
    options: tuple[tuple[str, Any], ...]
    span: Span = field(compare=False)
    keys: Any = field(default=None, compare=False)  # the term's typed `Keys` (what `options` prints)
    frequency: Any = field(default=None, compare=False)  # the `frequency` sub-block's keys, if any
    kind: str = field(default="", compare=False)  # the registry name (`stochastic_recon`); "" reads as `name`

    @property
    def term(self) -> str:
        """The registry name of the term this node is an instance of."""
        return self.kind or self.name


@dataclass(frozen=True)
class ScheduleNode:
    owner: str  # "optimize.components.lr", "loss.importance_minimality.p"
    fn: str
    start: float
    end: float
    warmup_steps: int
    start_step: int
    end_step: int


@dataclass(frozen=True)
class OptGroupNode:
    name: str  # "components" | "ci"
    clip: float | None
    betas: tuple[float, float]
    eps: float
    weight_decay: float
    lr: Any = field(default=None, compare=False)  # the typed `Schedule` (printed as its ScheduleNode)


@dataclass(frozen=True)
class MeshNode:
    axes: tuple[tuple[str, int], ...]

    @property
    def devices(self) -> int:
        size = 1
        for _, n in self.axes:
            size *= n
        return size

    def size(self, axis: str) -> int:
        return dict(self.axes)[axis]


@dataclass(frozen=True)
class ShardRuleNode:
    index: int
    pattern: str
    spec: tuple[tuple[str, ...], ...] | str  # per-dim axes, or a preset name
    span: Span = field(compare=False)


@dataclass(frozen=True)
class ShardingNode:
    """The resolved sharding of one tensor (edge: rule → sharding ← tensor)."""

    tensor: str
    rule: int  # index of the rule that matched; -1 = the default
    dims: tuple[tuple[str, ...], ...]  # per tensor dim, its mesh axes
    per_device_shape: tuple[int, ...]


@dataclass(frozen=True)
class BudgetNode:
    device: str | None
    device_memory: int | None
    headroom: float
    allow_xla_remat: bool = False  # a step that fits only after XLA:GPU's own remat counts as fitting

    def limit(self, device: str | None = None) -> int | None:
        """The bytes a step may use per device on `device` (default: the budget's own):
        its memory less the headroom. Another GPU than the spec's brings its own memory."""
        from pdc import devices

        other_gpu = device != self.device and devices.is_gpu(device)
        memory = devices.memory_of(device) if other_gpu else self.device_memory
        return None if memory is None else int(memory * (1.0 - self.headroom))


PAYLOADS = (TargetNode, SiteNode, TieNode, TensorNode, CiChunkNode, OptionsNode, TermNode, ScheduleNode, OptGroupNode, MeshNode,
            ShardRuleNode, ShardingNode, BudgetNode)
