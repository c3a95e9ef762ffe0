"""`target.pretrain`: the keys of the pretraining blocks families share (a family names one of
these in its `TargetFamily.pretrain`; a family with another recipe declares its own)."""

from __future__ import annotations

from typing import Literal, Optional

from pdc.registry.types import Fraction, Keys, Schedule, Steps, key


class PretrainToy(Keys):
    """Train a toy target from scratch (TMS / ResidMLP recipes)."""

    steps: Steps = key(10_000, doc="optimizer steps", ge=1)
    batch: int = key(1024, doc="examples per step", ge=1)
    lr: Schedule = key(Schedule.constant_of(5e-3), doc="AdamW learning rate")
    weight_decay: float = key(0.01, doc="AdamW weight decay", ge=0.0)
    seed: int = key(0, doc="initialisation and data seed", ge=0)
    feature_probability: Optional[Fraction] = key(None, doc="data sparsity; default: the `data` block's", gt=0.0, le=1.0)
    init_bias_to_zero: bool = key(False, doc="start the biases at zero (TMS: `b2`; ResidMLP: the MLP biases)")


class PretrainLM(Keys):
    """Train a small language model from scratch on a local corpus (no downloads)."""

    corpus: Literal["python_stdlib"] = key("python_stdlib", doc="text present on every machine: the Python standard library's sources")
    tokenizer: Literal["bytes"] = key("bytes", doc="byte-level tokens (vocab 256)")
    steps: Steps = key(2000, doc="optimizer steps", ge=1)
    batch: int = key(32, doc="sequences per step", ge=1)
    seq_len: int = key(256, doc="tokens per sequence", ge=2)
    lr: Schedule = key(Schedule(fn="cosine", start=3e-3, final=0.1), doc="AdamW learning rate")
    weight_decay: float = key(0.0, doc="AdamW weight decay", ge=0.0)
    seed: int = key(0, doc="initialisation and data seed", ge=0)


TOY = (PretrainToy, "Train the toy target in-process before decomposing.")
LM = (PretrainLM, "Pretrain a tiny LM on a local corpus before decomposing.")
