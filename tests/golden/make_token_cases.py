"""Writes the token files of the PD042x golden cases and the good tiny checkpoint they share
(`tests/golden/_inputs/`); the cases' spec.pd files are hand-written. Run from the
repository root after a change here:

    .venv/bin/python tests/golden/make_token_cases.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from make_weight_cases import tensors

HERE = Path(__file__).resolve().parent
SHARED = HERE / "_inputs"
TOKENIZER = '{"version": "1.0", "model": {"type": "WordLevel", "vocab": {"a": 0}, "unk_token": "a"}}\n'


def ids(count: int, high: int = 16) -> np.ndarray:
    return (np.arange(count) % high).astype(np.uint16)


def write(case: str, data: bytes | np.ndarray, sidecar: dict | str | None = None, name: str = "tokens.bin") -> None:
    directory = HERE / case
    directory.mkdir(exist_ok=True)
    (directory / name).write_bytes(data if isinstance(data, bytes) else data.tobytes())
    if sidecar is not None:
        text = sidecar if isinstance(sidecar, str) else json.dumps(sidecar, indent=2) + "\n"
        (directory / f"{name}.json").write_text(text)


def sidecar_of(data: np.ndarray, **changes: object) -> dict:
    import hashlib

    made_with = hashlib.sha256(TOKENIZER.encode()).hexdigest()
    return {"schema": "pdc.tokens/1", "dtype": "uint16", "tokens": int(data.size), "documents": 1, "vocab_size": 16,
            "eos_id": 0, "tokenizer_sha256": made_with, "sources": [], "created_by": "pdc golden"} | changes


def main() -> None:
    SHARED.mkdir(exist_ok=True)
    save_file(tensors(), str(SHARED / "model.safetensors"), metadata={"format": "pt"})
    (SHARED / "tokenizer.json").write_text(TOKENIZER)
    good = ids(64)
    write("pd0421_raw_length_not_whole_ids", good.tobytes()[:-2])  # read as uint32: 126 bytes
    write("pd0422_too_few_tokens", ids(12))
    write("pd0423_ids_beyond_vocab", ids(64, high=21))
    write("pd0424_sidecar_unreadable", good, "{not json")
    write("pd0425_sidecar_dtype", good, sidecar_of(good, dtype="uint32"))
    write("pd0426_sidecar_count", good, sidecar_of(good, tokens=80))
    write("pd0427_tokenizer_bigger", good, sidecar_of(good, vocab_size=512))
    write("pd0428_other_tokenizer", good, sidecar_of(good, tokenizer_sha256="0" * 64))


if __name__ == "__main__":
    main()
