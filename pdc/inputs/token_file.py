"""Token files a `data tokens` block names, checked without JAX: `inspect_token_file` reads a
file's header, length and ids in bounded chunks, and its `pdc.tokens/1` sidecar, and returns
what would go wrong as (code, message, help) — `pdc check` reports them at the spec's
`data.path` line. `pdc.run.tokens` builds such files (and shares the layout below).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = "pdc.tokens/1"
HASH_CHUNK = 1 << 20
SCAN_TOKENS = 1 << 23  # ids per chunk of the checker's pass: 16-32 MiB of file, a bool mask of 8 MiB
NPY_MAGIC = b"\x93NUMPY"


def sidecar_path(out: Path) -> Path:
    return out.with_name(out.name + ".json")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---- the checker ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenProblem:
    """One thing wrong with a token file for a spec: a PD042x code, what the file holds,
    and the fix."""

    code: str
    message: str
    help: str


@dataclass(frozen=True)
class TokenLayout:
    """Where the ids of a token file are: their dtype, byte offset and count."""

    dtype: np.dtype
    offset: int
    count: int


def inspect_token_file(path: str | Path, fmt: str, seq_len: int, batch: int, vocab: int,
                       tokenizer_dir: str | Path | None = None) -> list[TokenProblem]:
    """The problems a `data tokens { path format seq_len batch }` block would hit with
    this file for a target of `vocab` ids, found cheaply: the header and length, one
    chunked memory-mapped pass over the ids, and the sidecar. Never raises on a bad file."""
    path = Path(path)
    unreadable = _unreadable(path)
    if unreadable is not None:
        return [unreadable]
    layout = token_layout(path, fmt)
    if isinstance(layout, TokenProblem):
        return _sidecar_dtype_problem(path, fmt) or [layout]
    problems = _too_few_rows(path, layout, seq_len, batch)
    problems += _ids_out_of_range(path, layout, vocab, fmt)
    problems += _sidecar_problems(path, layout, fmt, vocab, tokenizer_dir)
    return problems


def _unreadable(path: Path) -> TokenProblem | None:
    help_text = "build one with `pdc tokens SOURCE... --tokenizer DIR --out FILE`, or fix `data.path`"
    if not path.exists():
        return TokenProblem("PD0420", f"{path}: no such file", help_text)
    if not path.is_file():
        return TokenProblem("PD0420", f"{path}: not a regular file", help_text)
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as error:
        return TokenProblem("PD0420", f"{path}: cannot be read ({error.strerror or error})",
                            "make it readable by the user who trains")
    return None


def token_layout(path: Path, fmt: str) -> TokenLayout | TokenProblem:
    """Where the ids are, or the PD0421 that says the file does not match `fmt`."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        is_npy = handle.read(len(NPY_MAGIC)) == NPY_MAGIC
    if fmt == "npy":
        return _npy_layout(path, size) if is_npy else TokenProblem(
            "PD0421", f"{path}: not an .npy file (no NUMPY header)",
            "a raw token file (as `pdc tokens` writes) needs `format = uint16` or `format = uint32`")
    if fmt not in ("uint16", "uint32"):
        return TokenProblem("PD0421", f"unknown token format {fmt!r}", "use `npy`, `uint16` or `uint32`")
    if is_npy:
        return TokenProblem("PD0421", f"{path}: an .npy file read as raw {fmt} (its header would be read as ids)",
                            "write `format = npy`")
    itemsize = np.dtype(fmt).itemsize
    if size % itemsize:
        return TokenProblem("PD0421", f"{path}: {size:,} bytes is not a whole number of {itemsize}-byte {fmt} ids",
                            "check `format` (the sidecar `<file>.json` names the dtype), or rebuild a truncated file")
    return TokenLayout(np.dtype(fmt).newbyteorder("<"), 0, size // itemsize)


def _npy_layout(path: Path, size: int) -> TokenLayout | TokenProblem:
    """An .npy header parsed without loading the data (no pickles), checked against the file."""
    rebuild = "rewrite it with `np.save(path, ids)` from an integer array, or use a raw file with `format`"
    try:
        with path.open("rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(handle)
            offset = handle.tell()
    except (ValueError, OSError, EOFError) as error:
        return TokenProblem("PD0421", f"{path}: the .npy header does not parse ({error})", rebuild)
    if dtype.kind not in "iu":
        return TokenProblem("PD0421", f"{path}: holds {dtype} values, not integer token ids", rebuild)
    count = int(np.prod(shape, dtype=np.int64))
    if offset + count * dtype.itemsize > size:
        held = max(size - offset, 0) // dtype.itemsize
        return TokenProblem("PD0421", f"{path}: the header promises {count:,} ids, the file holds {held:,} (truncated)",
                            rebuild)
    return TokenLayout(dtype, offset, count)


def _too_few_rows(path: Path, layout: TokenLayout, seq_len: int, batch: int) -> list[TokenProblem]:
    rows = layout.count // seq_len
    if rows >= batch:
        return []
    return [TokenProblem("PD0422", f"{path}: holds {layout.count:,} tokens = {rows:,} row{'s' if rows != 1 else ''} "
                                   f"of {seq_len}; a batch needs {batch}",
                         f"tokenize more text (at least {batch * seq_len:,} tokens), or lower `data.seq_len` or "
                         "`data.batch`")]


@dataclass
class IdScan:
    """What one pass over the ids found: the largest id and where it first occurs, the
    smallest, and how many ids fall outside [0, vocab) with the first such offset."""

    largest: int = -1
    largest_at: int = -1
    smallest: int = 0
    bad: int = 0
    first_bad: int = -1

    def add(self, chunk: np.ndarray, start: int, vocab: int) -> None:
        high = int(chunk.max())
        if high > self.largest:
            self.largest, self.largest_at = high, start + int(chunk.argmax())
        self.smallest = min(self.smallest, int(chunk.min()))
        if high >= vocab or self.smallest < 0:
            outside = (chunk >= vocab) | (chunk < 0)
            found = int(np.count_nonzero(outside))
            if found and self.first_bad < 0:
                self.first_bad = start + int(outside.argmax())
            self.bad += found


def scan_ids(path: Path, layout: TokenLayout, vocab: int) -> IdScan:
    """One memory-mapped pass in chunks of SCAN_TOKENS ids: RAM stays bounded for any file."""
    scan = IdScan()
    if layout.count == 0:
        return scan
    ids = np.memmap(path, dtype=layout.dtype, mode="r", offset=layout.offset, shape=(layout.count,))
    for start in range(0, layout.count, SCAN_TOKENS):
        scan.add(np.asarray(ids[start:start + SCAN_TOKENS]), start, vocab)
    del ids
    return scan


def _ids_out_of_range(path: Path, layout: TokenLayout, vocab: int, fmt: str) -> list[TokenProblem]:
    scan = scan_ids(path, layout, vocab)
    if scan.bad == 0:
        return []
    low = f"; the smallest is {scan.smallest:,}" if scan.smallest < 0 else ""
    message = (f"{path}: {scan.bad:,} of {layout.count:,} ids are outside the target's vocabulary 0..{vocab - 1:,}, the first "
               f"at token offset {scan.first_bad:,}; the largest id is {scan.largest:,} (first at offset "
               f"{scan.largest_at:,}){low}")
    hint = " (a uint32 file read as uint16 shows ids like these)" if fmt == "uint16" else ""
    return [TokenProblem("PD0423", message, "tokenize with the target's tokenizer (`pdc tokens --tokenizer` the "
                                            f"target's directory), or check `format`{hint}")]


def _sidecar_problems(path: Path, layout: TokenLayout, fmt: str, vocab: int,
                      tokenizer_dir: str | Path | None) -> list[TokenProblem]:
    """The file against what its sidecar says made it, when there is a sidecar."""
    side = sidecar_path(path)
    if not side.exists():
        return []
    sidecar = _read_sidecar(side)
    if isinstance(sidecar, TokenProblem):
        return [sidecar]
    problems: list[TokenProblem] = []
    if sidecar["dtype"] != layout.dtype.name:
        read_as = f"an .npy of {layout.dtype.name}" if fmt == "npy" else fmt
        problems.append(TokenProblem("PD0425", f"{side} says the ids are {sidecar['dtype']}; the spec reads them as "
                                               f"{read_as}", f"write `format = {sidecar['dtype']}`"))
    elif sidecar["tokens"] != layout.count:
        problems.append(TokenProblem("PD0426", f"{path}: holds {layout.count:,} tokens; {side} says {sidecar['tokens']:,} "
                                               "(truncated, appended to, or another build's sidecar)",
                                     "rebuild the file with `pdc tokens`"))
    if sidecar["vocab_size"] > vocab:
        problems.append(TokenProblem("PD0427", f"{side}: made with a tokenizer of {sidecar['vocab_size']:,} ids; the "
                                               f"target's vocabulary has {vocab:,}",
                                     "tokenize with the target's tokenizer"))
    problems += _tokenizer_mismatch(side, sidecar, tokenizer_dir)
    return problems


def _sidecar_dtype_problem(path: Path, fmt: str) -> list[TokenProblem]:
    """PD0425 when a raw file does not fit `fmt` because its sidecar's dtype is another:
    a better explanation of a length that is no whole number of ids than PD0421."""
    side = sidecar_path(path)
    sidecar = _read_sidecar(side) if side.exists() and fmt != "npy" else None
    if not isinstance(sidecar, dict) or sidecar["dtype"] == fmt:
        return []
    return [TokenProblem("PD0425", f"{side} says the ids are {sidecar['dtype']}; the spec reads them as {fmt}",
                         f"write `format = {sidecar['dtype']}`")]


_SIDECAR_FIELDS = {"dtype": str, "tokens": int, "vocab_size": int, "tokenizer_sha256": str}


def _read_sidecar(side: Path) -> dict[str, Any] | TokenProblem:
    help_text = "rebuild the file with `pdc tokens`, or delete the sidecar"
    try:
        sidecar = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return TokenProblem("PD0424", f"{side}: cannot be read as JSON ({error})", help_text)
    if not isinstance(sidecar, dict) or sidecar.get("schema") != SCHEMA:
        return TokenProblem("PD0424", f"{side}: not a `{SCHEMA}` sidecar", help_text)
    for name, kind in _SIDECAR_FIELDS.items():
        if not isinstance(sidecar.get(name), kind) or isinstance(sidecar.get(name), bool):
            return TokenProblem("PD0424", f"{side}: `{name}` is missing or not a {kind.__name__}", help_text)
    return sidecar


def _tokenizer_mismatch(side: Path, sidecar: dict[str, Any], tokenizer_dir: str | Path | None) -> list[TokenProblem]:
    if tokenizer_dir is None or not (Path(tokenizer_dir) / "tokenizer.json").is_file():
        return []
    file = Path(tokenizer_dir) / "tokenizer.json"
    actual = file_sha256(file)
    if actual == sidecar["tokenizer_sha256"]:
        return []
    made_with = sidecar["tokenizer_sha256"][:12]
    return [TokenProblem("PD0428", f"{side}: made with another tokenizer (sha256 {made_with}…) than the target's "
                                   f"{file} (sha256 {actual[:12]}…)",
                         f"rebuild with `pdc tokens ... --tokenizer {Path(tokenizer_dir)}`")]
