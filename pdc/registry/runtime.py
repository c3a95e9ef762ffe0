"""`train`, and the runtime blocks `mesh`, `shard`, `remat`, `precision`: how the
algorithm is executed. Runtime blocks may change numerics, never the algorithm."""

from __future__ import annotations

from typing import Literal, get_args

from pdc.registry.schema import BlockSchema, Entries, Layout
from pdc.registry.types import Dtype, Keys, Steps, Switch, key


class TrainKeys(Keys):
    """Length and seed of the run."""

    steps: Steps = key(doc="training steps after the faithfulness warmup", ge=1)
    seed: int = key(0, doc="seed of initialisation, masks and data", ge=0)


ReconForwards = Literal["off", "whole", "per_layer", "matmuls"]
RECON_FORWARDS: tuple[str, ...] = get_args(ReconForwards)


class RematKeys(Keys):
    """Rematerialisation: trade compute for activation memory."""

    recon_forwards: ReconForwards = key(
        "off", doc="checkpoint each masked forward whole, or each layer inside the scan; LMs: `matmuls` keeps "
                   "each layer's matmul outputs (and cuDNN attention's) and recomputes only norms, RoPE and "
                   "activations in the backward pass")
    ci: Switch = key("off", doc="recompute the CI network in the backward pass")
    divergence_chunk: int = key(
        256, doc="LMs: sequence positions per chunk of the output divergence (KL over the vocabulary) in the "
                 "loss terms and of eval's KL and cross-entropy: only one chunk's logits are ever materialised "
                 "(the loss terms' KL computes their gradient in the same pass, against the clean side computed "
                 "once a step); 0 = all positions at once",
        ge=0)


class PrecisionKeys(Keys):
    """Storage and compute dtypes."""

    params: Dtype = key("f32", doc="master copies of V/U, the CI network and optimizer moments")
    compute: Dtype = key("f32", doc="dtype of forwards (V/U and the CI network are cast to it)")


SHARD_PRESETS: dict[str, str] = {
    "replicated": "every dimension replicated",
    "dp": "leading dimension on the data-parallel axis",
    "fsdp": "largest divisible dimension on the data-parallel axis",
    "tp": "output dimension on the tensor-parallel axis",
    "fsdp_tp": "Megatron-style: output dims on tp, the other weight dim on dp (SPD_ALGORITHM.md §11.2 v2)",
}

TRAIN = BlockSchema("train", TrainKeys.__doc__ or "", keys=TrainKeys, required=True)
MESH = BlockSchema(
    "mesh",
    "Device mesh axes in order, `name = size`: `mesh { dp = 8 tp = 1 }`. Default: one `dp` axis over all devices.",
    entries=Entries.AXES,
)
SHARD = BlockSchema(
    "shard",
    "Ordered sharding rules `tensor-pattern = [axis | _, ...]` or `= preset`; the first matching rule wins "
    "and every tensor must match one. Presets: " + ", ".join(f"`{k}`" for k in SHARD_PRESETS) + ".",
    entries=Entries.RULES,
    layout=Layout.EXPANDED,
)
REMAT = BlockSchema("remat", RematKeys.__doc__ or "", keys=RematKeys)
PRECISION = BlockSchema("precision", PrecisionKeys.__doc__ or "", keys=PrecisionKeys)
