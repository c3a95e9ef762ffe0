"""Observation blocks: `budget`, `checkpoint`, `log`, `eval`. They never change the
trained weights, and they feed neither determinism hash."""

from __future__ import annotations

from typing import Literal, Optional

from pdc import devices
from pdc.metrics import METRICS
from pdc.registry.schema import BlockSchema, Entries
from pdc.registry.types import Bytes, Fraction, Keys, Steps, key

Device = Literal[devices.names()]  # type: ignore[valid-type]  # cpu and every vendored GPU model
Metric = Literal[tuple(METRICS)]  # type: ignore[valid-type]  # each a file in pdc/metrics/ (or a plugin)


class BudgetKeys(Keys):
    """The memory the dry-run checks the compiled step against."""

    device: Optional[Device] = key(None, doc="device model the run targets (its memory is the default)")
    device_memory: Optional[Bytes] = key(None, doc="memory per device, e.g. `80 GiB`", gt=0)
    headroom: Fraction = key(0.1, doc="share of device memory kept free", ge=0.0, lt=1.0)
    allow_xla_remat: bool = key(False, doc="count a step that fits only after XLA:GPU rematerialised it on its own "
                                           "(more recompute than the spec asked for) as fitting")


class CheckpointKeys(Keys):
    """Orbax checkpoints (also written on SIGTERM/SIGINT)."""

    every: Steps = key(1000, doc="steps between checkpoints", ge=1)
    keep: int = key(3, doc="checkpoints kept", ge=1)


class LogKeys(Keys):
    """Metrics to `metrics.jsonl` and TensorBoard (and Weights & Biases with a `wandb` block)."""

    every: Steps = key(100, doc="steps between metric records", ge=1)
    tensorboard: bool = key(True, doc="also write TensorBoard event files")


class WandbKeys(Keys):
    """Mirror every metrics and eval record to Weights & Biases (`pip install 'pdc[wandb]'`); the
    wandb run's config holds the determinism hashes and the resolved spec. Observation only."""

    project: str = key(doc="the wandb project")
    entity: Optional[str] = key(None, doc="the wandb entity (user or team); default: wandb's own default")
    name: Optional[str] = key(None, doc="the wandb run's display name; default: the run directory's name")
    group: Optional[str] = key(None, doc="the wandb group (e.g. a sweep's name)")
    tags: list[str] = key([], doc="tags of the wandb run")
    mode: Literal["online", "offline", "disabled"] = key(
        "online", doc="`offline` writes RUN/wandb/ for a later `wandb sync`; `disabled` logs nothing")


class EvalKeys(Keys):
    """Evaluation passes on fixed eval data: the same batches at every pass (`eval_path`, else the
    training file in another row order; toys: a seeded stream), so passes differ only by the state."""

    every: Steps = key(1000, doc="steps between eval passes", ge=1)
    metrics: list[Metric] = key(["ci_l0"], doc="metrics computed each pass")
    batches: int = key(1, doc="eval batches per pass, drawn once: the same ones at every pass", ge=1)
    alive_threshold: float = key(0.0, doc="a component fires where ci_lower > threshold", ge=0.0, lt=1.0)
    alive_window: Optional[Steps] = key(None, doc="training examples (batch × positions) a component may go without "
                                        "firing before `alive/<site>` counts it dead (the reference's "
                                        "n_examples_until_dead); default: one log interval", ge=1)
    rounding_threshold: float = key(0.0, doc="ce_kl rounded_masked: mask = 1[ci_lower > threshold]", ge=0.0, lt=1.0)
    pgd_steps: int = key(20, doc="pgd_recon probe: sign-ascent steps", ge=1)
    pgd_step_size: float = key(0.1, doc="pgd_recon probe: step size", gt=0.0)
    identity_tol: float = key(0.1, doc="identity_ci_error tolerance", gt=0.0, lt=1.0)


BUDGET = BlockSchema("budget", BudgetKeys.__doc__ or "", keys=BudgetKeys)
CHECKPOINT = BlockSchema("checkpoint", CheckpointKeys.__doc__ or "", keys=CheckpointKeys)
WANDB = BlockSchema("wandb", WandbKeys.__doc__ or "", keys=WandbKeys)
LOG = BlockSchema("log", LogKeys.__doc__ or "", keys=LogKeys, children=(WANDB,))
EVAL = BlockSchema(
    "eval",
    EvalKeys.__doc__ or "",
    keys=EvalKeys,
    children=(BlockSchema(
        "ci_pattern",
        "Expected CI pattern per site for identity_ci_error: `site-pattern = identity` or `= dense(k)`.",
        entries=Entries.PATTERNS,
    ),),
)
