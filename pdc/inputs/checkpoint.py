"""Safetensors checkpoints without JAX: a lazy reader of one file or an index's shards, and
the checks `pdc check` runs on a spec's `weights` against a family's layout (headers and index
only, never the tensor data; the layout is the family's: the Llama-style one is
pdc/targets/llama/layout.py). The families' loaders read the tensors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from safetensors import SafetensorError, safe_open

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")  # safetensors dtype names a weight may be stored in


class WeightsError(Exception):
    """A weight file is missing, unreadable, or does not fit the target's shapes."""


def _one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())


# ---- reading ----------------------------------------------------------------------------------

@dataclass
class Checkpoint:
    """The tensors of one safetensors file or of an index's shards, read lazily."""

    shown: str  # the path as given, for messages
    files: dict[str, Path]  # tensor name → file holding it
    handles: dict[Path, Any]

    @classmethod
    def open(cls, path: str | Path) -> Checkpoint:
        """A file, an index JSON, or a directory holding `model.safetensors` or an index."""
        path = Path(path)
        if path.is_dir():
            if (path / INDEX).is_file():
                return cls._from_index(path / INDEX, str(path))
            if (path / SINGLE).is_file():
                return cls._from_files([path / SINGLE], str(path))
            raise WeightsError(f"`{path}` holds neither {SINGLE} nor {INDEX}")
        if not path.is_file():
            raise WeightsError(f"`{path}` does not exist")
        if path.name.endswith(".json"):
            return cls._from_index(path, str(path))
        return cls._from_files([path], str(path))

    @classmethod
    def _from_files(cls, paths: list[Path], shown: str) -> Checkpoint:
        files: dict[str, Path] = {}
        handles = {}
        for path in paths:
            try:
                handles[path] = safe_open(str(path), framework="numpy")
                names = list(handles[path].keys())
            except (SafetensorError, OSError, ValueError) as error:
                raise WeightsError(f"cannot read `{path}`: {_one_line(error)}") from None
            for name in names:
                if name in files:
                    raise WeightsError(f"tensor `{name}` appears in both `{files[name]}` and `{path}`")
                files[name] = path
        return cls(shown, files, handles)

    @classmethod
    def _from_index(cls, index: Path, shown: str) -> Checkpoint:
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            if not isinstance(weight_map, dict):
                raise ValueError("`weight_map` is not an object")
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise WeightsError(f"cannot read index `{index}`: {_one_line(error)}") from None
        shards = []
        for name in dict.fromkeys(weight_map.values()):
            shard = index.parent / str(name)
            if not shard.is_file():
                raise WeightsError(f"shard `{shard}` named in `{index}` does not exist")
            shards.append(shard)
        checkpoint = cls._from_files(shards, shown)
        for name, file in weight_map.items():
            if checkpoint.files.get(name) != index.parent / str(file):
                raise WeightsError(f"missing tensor `{name}`: `{index}` maps it to `{index.parent / str(file)}`, "
                                   "which does not hold it")
        return checkpoint

    def has(self, name: str) -> bool:
        return name in self.files

    def header(self, name: str) -> tuple[tuple[int, ...], str]:
        """(shape, safetensors dtype name) of a tensor, from the file's header only."""
        found = self.handles[self.files[name]].get_slice(name)
        return tuple(found.get_shape()), str(found.get_dtype())

    def get(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """The tensor, its shape checked against `shape` before its data is read."""
        code, message = _tensor_problem(self, name, tuple(shape))  # the checks `pdc check` runs, one tensor
        if code:
            raise WeightsError(message)
        path = self.files[name]
        try:
            return self.handles[path].get_tensor(name)
        except (SafetensorError, OSError, ValueError) as error:
            raise WeightsError(f"cannot read tensor `{name}` from `{path}`: {_one_line(error)}") from None

    def check_unexpected(self, used: set[str], tolerated: Callable[[str], bool] = lambda _: False) -> None:
        """An unknown tensor usually means a different architecture or naming: refuse it."""
        for name, path in self.files.items():
            if name not in used and not tolerated(name):
                raise WeightsError(f"unexpected tensor `{name}` in `{path}`")


_DTYPE_NAMES = {"F64": "f64", "F32": "f32", "F16": "f16", "BF16": "bf16"}  # safetensors → spec dtype names


def stored_dtype(path: str | Path) -> str | None:
    """The dtype the checkpoint's floating-point weights are stored in, from the headers only
    (`f32`, `bf16`, or `mixed (bf16, f32)`); None when the weights cannot be opened (not
    downloaded yet: `pdc check` says so elsewhere)."""
    try:
        checkpoint = Checkpoint.open(path)
        found = sorted({_DTYPE_NAMES[d] for d in (checkpoint.header(n)[1] for n in checkpoint.files) if d in _DTYPE_NAMES})
    except (WeightsError, SafetensorError, OSError, ValueError):
        return None
    if not found:
        return None
    return found[0] if len(found) == 1 else f"mixed ({', '.join(found)})"


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


# ---- checking without reading the data (`pdc check`) -------------------------------------------

@dataclass(frozen=True)
class WeightProblem:
    """One thing wrong with a checkpoint, as a diagnostic code, a message and a fix."""

    code: str
    message: str
    help: str = ""


_OPEN_HELP = "point `weights` at an HF model directory, its index or a .safetensors file"
SHOWN_PER_CODE = 4  # a wholly different checkpoint would otherwise list every tensor


def inspect_file(path: str | Path) -> list[WeightProblem]:
    """That a safetensors file (or an index and its shards) opens and its header parses."""
    try:
        Checkpoint.open(path)
    except WeightsError as error:
        return [WeightProblem("PD0401", str(error), _OPEN_HELP)]
    return []


def inspect_layout(path: str | Path, expected: Mapping[str, tuple[int, ...]],
                   tolerated: Callable[[str], bool] = lambda name: False,
                   optional: Mapping[str, tuple[int, ...]] | None = None) -> list[WeightProblem]:
    """What is wrong with the checkpoint at `path` for a family's layout: `expected`, every
    tensor name with the shape it must have on disk; `optional`, tensors that may be absent
    but must fit when present (a tied model's head); `tolerated`, names that may be present
    unused. Read from the safetensors headers and the index only (no tensor data): unreadable
    files (PD0401), missing (PD0402), mis-shaped (PD0403, transposed said so), non-float
    (PD0404) and unexpected tensors (PD0405). Empty when it loads."""
    try:
        checkpoint = Checkpoint.open(path)
    except WeightsError as error:
        return [WeightProblem("PD0401", str(error), _OPEN_HELP)]
    optional = optional or {}
    found: dict[str, list[str]] = {}
    for name, shape in expected.items():
        code, message = _tensor_problem(checkpoint, name, shape)
        if code:
            found.setdefault(code, []).append(message)
    unexpected = [n for n in checkpoint.files if n not in expected and n not in optional and not tolerated(n)]
    for name, shape in optional.items():
        if checkpoint.has(name):
            code, message = _tensor_problem(checkpoint, name, shape)
            if code:
                found.setdefault(code, []).append(message)
    found |= {"PD0405": [f"unexpected tensor `{n}` in `{checkpoint.files[n]}`" for n in unexpected]} if unexpected \
        else {}
    return [WeightProblem(code, _summarised(messages), _HELP[code]) for code, messages in sorted(found.items())]


_HELP = {
    "PD0402": "the checkpoint is of another architecture or size than the spec's target",
    "PD0403": "HF stores nn.Linear weights as (out, in); check the config's dimensions",
    "PD0404": "weights are stored as F32, F16 or BF16",
    "PD0405": "a tensor pdc does not know means another architecture or naming (biases, extra heads)",
}


def _tensor_problem(checkpoint: Checkpoint, name: str, shape: tuple[int, ...]) -> tuple[str, str]:
    if not checkpoint.has(name):
        return "PD0402", f"missing tensor `{name}` in `{checkpoint.shown}`"
    found, dtype = checkpoint.header(name)
    where = f"tensor `{name}` in `{checkpoint.files[name]}`"
    if found != shape:
        transposed = " (transposed)" if found == tuple(reversed(shape)) and len(shape) == 2 else ""
        return "PD0403", f"{where} has shape {_shape(found)}{transposed}, expected {_shape(shape)}"
    if dtype not in FLOAT_DTYPES:
        return "PD0404", f"{where} holds {dtype} values, not floating-point weights"
    return "", ""


def _summarised(messages: list[str]) -> str:
    more = len(messages) - SHOWN_PER_CODE
    return "; ".join(messages[:SHOWN_PER_CODE]) + (f"; and {more} more" if more > 0 else "")
