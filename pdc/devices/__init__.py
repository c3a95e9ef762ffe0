"""The device models pdc compiles for, one `GpuTargetConfigProto` text file each.

A device name (`h100_sxm`) is offered by `budget.device` and `pdc compile --target` only
when its config file is here, so every offered device really compiles for that GPU: the
deviceless XLA:GPU compile (`pdc.inspect.dryrun`) reads the file, the budget pass reads
its memory. JAX-free: the passes read this module too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

_HERE = Path(__file__).resolve().parent
CPU = "cpu"
CUDA_EXTRA = "pip install -e '.[cuda]'"  # the install extra that brings XLA:GPU (pyproject.toml)


@dataclass(frozen=True)
class DeviceModel:
    name: str  # the spec's and the CLI's name: `h100_sxm`
    description: str  # the device kind XLA reports: "NVIDIA H100 80GB HBM3"
    memory: int  # bytes of device memory (the budget's default)
    config: Path  # the GpuTargetConfigProto text

    def config_text(self) -> str:
        return self.config.read_text()


def _field(text: str, name: str) -> str:
    found = re.search(rf"\b{name}:\s*\"?([^\"\n]+)\"?", text)
    if found is None:
        raise ValueError(f"target config has no `{name}`")
    return found.group(1).strip()


@cache
def gpu_models() -> dict[str, DeviceModel]:
    """Every vendored GPU model, by name (the file's stem)."""
    out = {}
    for path in sorted(_HERE.glob("*.txtpb")):
        text = path.read_text()
        out[path.stem] = DeviceModel(path.stem, _field(text, "device_description_str"),
                                     int(_field(text, "device_memory_size")), path)
    return out


def names() -> tuple[str, ...]:
    """Every device name pdc offers: `cpu` and the GPU models."""
    return (CPU, *gpu_models())


def is_gpu(name: str | None) -> bool:
    return name is not None and name in gpu_models()


def memory_of(name: str | None) -> int | None:
    """The device's memory in bytes, or None (the CPU: no fixed size)."""
    model = gpu_models().get(name or "")
    return model.memory if model is not None else None


__all__ = ["CPU", "CUDA_EXTRA", "DeviceModel", "gpu_models", "is_gpu", "memory_of", "names"]
