"""The JAX half of the Llama-style families (`llama`, and those built on it as a `Variant`):
the transformer (`model.py`) configured from the shape, the HF safetensors
loader, and where pretrained weights are written (HF layout + config.json). Their pretraining
recipe is the shared next-token one (pdc/run/pretrain.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from pdc.models.base import Site
from pdc.targets.llama.hf import hf_config, load_llama, save_hf
from pdc.targets.llama.model import Llama, LlamaConfig, RopeScaling
from pdc.registry.runtime import RECON_FORWARDS
from pdc.targets.base import FamilyRuntime, TargetShape
from pdc.targets.llama import VARIANTS


def build(shape: TargetShape, sites: tuple[Site, ...], decomposed: dict[str, tuple[int, ...]], dtype: Any,
          options: dict[str, Any]) -> Llama:
    scaling = options.pop("rope_scaling", None)
    if isinstance(scaling, Mapping):
        scaling = RopeScaling.from_hf(scaling)
    d = shape.dims
    config = LlamaConfig(d["vocab"], d["hidden"], d["intermediate"], d["layers"], d["heads"], d["kv_heads"],
                         d["head_dim"], tied=not any(t.path == "target.lm_head" for t in shape.tensors),
                         simple_mlp=VARIANTS[shape.family].simple_mlp,
                         rope_theta=float(options.pop("rope_theta")), rms_norm_eps=float(options.pop("rms_norm_eps")),
                         rope_scaling=scaling)
    remat = options.pop("remat", "off")
    if remat not in RECON_FORWARDS:
        raise ValueError(f"remat must be one of {', '.join(RECON_FORWARDS)}, found {remat!r}")
    return Llama(sites, decomposed, config, remat, dtype, shape.family)


def load(target: Llama, path: str | Path, dtype: Any = None) -> dict[str, Any]:
    return load_llama(path, target.config, dtype)


def save(target: Llama, params: Any, path: Path) -> None:
    save_hf(params, path, config=hf_config(target.config))


RUNTIME = FamilyRuntime(build, load, save)
