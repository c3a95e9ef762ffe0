"""Batches as pure functions of (seed, step) (SPD_ALGORITHM.md §12.3).

Toy inputs are generated inside the jitted step from `fold_in(data_key, step)`
(`pdc.decomp.features`), so no host work or transfer happens per step. Token data lives on the host (a memory-mapped
file); the batch of step k is found in O(1) — epoch, then a seeded permutation of the
rows — so a resumed run reads exactly the batches the uninterrupted run would have.
"""

from __future__ import annotations

import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jax
import numpy as np

Array = jax.Array


@dataclass(frozen=True)
class TokenRows:
    """A flat token stream cut into rows of `seq_len` tokens (the tail is dropped)."""

    tokens: np.ndarray  # 1-D, memory-mapped where possible
    seq_len: int

    @property
    def rows(self) -> int:
        return len(self.tokens) // self.seq_len

    def batch(self, seed: int, step: int, batch: int, process: int = 0, processes: int = 1) -> np.ndarray:
        """The rows of global batch `step` that `process` serves: [batch / processes, seq_len]."""
        local = batch // processes
        picked = self.batch_rows(seed, step, batch)[process * local:(process + 1) * local]
        return np.stack([self.tokens[r * self.seq_len:(r + 1) * self.seq_len] for r in picked]).astype(np.int32)

    def batch_rows(self, seed: int, step: int, batch: int) -> np.ndarray:
        """The row indices of global batch `step` (row r is tokens [r·seq_len, (r+1)·seq_len))."""
        if self.rows < batch:
            raise ValueError(f"the token data holds {self.rows} rows of {self.seq_len} tokens; a batch needs {batch}")
        per_epoch = self.rows // batch
        epoch, index = divmod(step, per_epoch)
        order = np.random.default_rng((seed, epoch, 0xD5)).permutation(self.rows)
        return order[index * batch:(index + 1) * batch]


def open_tokens(path: Path, fmt: Literal["npy", "uint16", "uint32"], seq_len: int) -> TokenRows:
    """A token file as rows: `.npy` (any integer dtype, flattened) or a raw uint16/uint32 file."""
    if fmt == "npy":
        array = np.load(path, mmap_mode="r")
        return TokenRows(array.reshape(-1), seq_len)
    return TokenRows(np.memmap(path, dtype=np.uint16 if fmt == "uint16" else np.uint32, mode="r"), seq_len)


def python_stdlib_bytes(cache_dir: Path) -> Path:
    """The local corpus: every `.py` file of this Python's standard library, sorted by path
    and concatenated as bytes (vocab 256). Cached as `.npy`; present on every machine."""
    target = cache_dir / "python_stdlib_bytes.npy"
    if target.exists():
        return target
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)
    data = b"".join(p.read_bytes() for p in files)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.stem}.{os.getpid()}.partial.npy")  # processes may race: each its own
    np.save(partial, np.frombuffer(data, dtype=np.uint8))
    partial.replace(target)  # atomic; the last writer wins with identical bytes
    return target
