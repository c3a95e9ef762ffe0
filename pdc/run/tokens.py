"""Token files for `data tokens`: `pdc tokens` builds one (`pdc.inputs.token_file` checks one).

A `data tokens` block memory-maps a flat stream of token ids (`pdc/run/data.py:
open_tokens`). Building that stream is where a long run most often goes wrong before it
starts — a tokenizer that is not the target's, a file too short for one batch, a uint32
file read as uint16 — and the build itself is long enough to be killed. So the builder
streams (bounded RAM whatever the corpus size), resumes after a kill at the last source
it recorded as finished, and writes a JSON sidecar saying what made the file; the checker
reads a file's header, length and ids in bounded chunks and returns problems as data
instead of raising.

File layout for `out`:

    out                 the ids: raw little-endian uint16 (vocab ≤ 65536) or uint32
    out.json            the sidecar (schema `pdc.tokens/1`)
    out.partial         the ids so far, while building
    out.progress.json   the sources finished so far, while building
"""

from __future__ import annotations

import fnmatch
import gzip
import importlib.metadata
import itertools
import json
import zlib
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, Protocol, Sequence

import numpy as np

from pdc.inputs.token_file import SCHEMA, file_sha256, sidecar_path

PROGRESS_SCHEMA = "pdc.tokens.progress/1"
UINT16_VOCAB = 1 << 16  # ids 0..65535 fit uint16
BATCH_DOCUMENTS = 1024  # documents per encode_batch call ...
BATCH_CHARS = 8 << 20  # ... or fewer, so a batch of long documents stays a few tens of MB
PROGRESS_SECONDS = 10.0  # record finished sources at most this often: a kill loses ≤ 10 s of work, and
# a build of 100k small files does not rewrite a growing progress file (and fsync) 100k times


class TokensError(Exception):
    """A problem with the inputs that the user can fix: the file, and what is wrong with it.

    Raised, not returned, because the build cannot go on; the CLI prints it as one line
    (`pdc: error: FILE: PROBLEM`) because none of these is a bug in pdc."""

    def __init__(self, file: str | Path, problem: str) -> None:
        self.file = str(file)
        self.problem = problem
        super().__init__(f"{file}: {problem}")


class NotText(TokensError):
    """A source that is not text (binary, not UTF-8, a broken .gz): skipped with a count and
    its name unless the build is `strict`, where it stops the build like any TokensError."""


@dataclass(frozen=True)
class SourceRecord:
    """One input file as the sidecar records it, so a file can be traced to its sources."""

    path: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class TokenFileInfo:
    """What `build_tokens` wrote: the sidecar's fields, plus the notes it printed (a resume,
    a restart and why) so callers and tests can see them without reading stderr."""

    path: Path
    dtype: str
    tokens: int
    documents: int
    vocab_size: int
    eos_id: int
    tokenizer_sha256: str
    sources: tuple[SourceRecord, ...]
    created_by: str
    notes: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()  # (file, why) of sources that were not text
    eos_token: str | None = None  # the separator's text, when the tokenizer has one for the id
    eos_from: str = ""  # where the separator was chosen: `--eos`, tokenizer_config.json's eos_token, ...

    def sidecar(self) -> dict[str, Any]:
        """The `pdc.tokens/1` document written next to the data as `<out>.json`."""
        return {"schema": SCHEMA, "dtype": self.dtype, "tokens": self.tokens, "documents": self.documents,
                "vocab_size": self.vocab_size, "eos_id": self.eos_id, "tokenizer_sha256": self.tokenizer_sha256,
                "sources": [asdict(s) for s in self.sources], "created_by": self.created_by}


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def progress_path(out: Path) -> Path:
    return out.with_name(out.name + ".progress.json")


def narrowest_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (half the disk and page cache of uint32), else uint32;
    little-endian explicitly, since the file is read by `np.memmap` on any host."""
    return np.dtype("<u2") if vocab_size <= UINT16_VOCAB else np.dtype("<u4")


def pdc_version() -> str:
    try:
        return f"pdc {importlib.metadata.version('pdc')}"
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "pdc (version unknown)"


# ---- the tokenizer -------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedTokenizer:
    """The HF tokenizer with the facts the build and its resume key need."""

    tokenizer: Any  # tokenizers.Tokenizer
    sha256: str
    vocab_size: int
    eos_id: int
    eos_from: str = ""  # `--eos`, tokenizer_config.json `eos_token`, config.json `eos_token_id`

    @property
    def eos_token(self) -> str | None:
        return self.tokenizer.id_to_token(self.eos_id)


def load_tokenizer(tokenizer_dir: Path, eos: int | str | None) -> LoadedTokenizer:
    """`tokenizer_dir/tokenizer.json` and the EOS id that separates documents."""
    file = tokenizer_dir / "tokenizer.json"
    if not file.is_file():
        raise TokensError(file, "no such file; --tokenizer must name a directory holding the HF tokenizer.json")
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise TokensError(file, "reading it needs the HF tokenizers library: pip install tokenizers") from None
    try:
        tokenizer = Tokenizer.from_file(str(file))
    except Exception as error:  # noqa: BLE001 — the Rust side raises a bare Exception for a malformed file
        raise TokensError(file, f"not a tokenizer the HF tokenizers library can read ({error})") from None
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    eos_id, eos_from = resolve_eos(tokenizer, tokenizer_dir, eos)
    if not 0 <= eos_id < vocab_size:
        raise TokensError(tokenizer_dir, f"EOS id {eos_id} is not in the tokenizer's vocabulary "
                                         f"(ids 0..{vocab_size - 1})")
    return LoadedTokenizer(tokenizer, file_sha256(file), vocab_size, eos_id, eos_from)


def resolve_eos(tokenizer: Any, tokenizer_dir: Path, eos: int | str | None) -> tuple[int, str]:
    """The id that ends each document and where it was chosen: `eos` if given (an id, or a
    token's text such as `<|endoftext|>`), else tokenizer_config.json's `eos_token` (the
    tokenizer's own end-of-text token as the model's authors named it), else config.json's
    `eos_token_id` (the first, when a model lists several, as Llama 3.1 does)."""
    if isinstance(eos, int):
        return eos, "--eos"
    if isinstance(eos, str):
        token_id = tokenizer.token_to_id(eos)
        if token_id is None:
            raise TokensError(tokenizer_dir, f"--eos {eos!r} is not a token of tokenizer.json; give a token's text "
                                             "exactly as the tokenizer spells it, or an id")
        return int(token_id), "--eos"
    config = tokenizer_dir / "tokenizer_config.json"
    token = _eos_token_text(read_json(config)) if config.is_file() else None
    if token is not None:
        token_id = tokenizer.token_to_id(token)
        if token_id is None:
            raise TokensError(config, f"eos_token {token!r} is not in tokenizer.json's vocabulary; pass --eos TOKEN")
        return int(token_id), "tokenizer_config.json `eos_token`"
    model_config = tokenizer_dir / "config.json"
    token_id = read_json(model_config).get("eos_token_id") if model_config.is_file() else None
    if isinstance(token_id, list) and token_id:
        token_id = token_id[0]
    if isinstance(token_id, int) and not isinstance(token_id, bool):
        return token_id, "config.json `eos_token_id`"
    raise TokensError(tokenizer_dir, "no EOS token to separate documents: tokenizer_config.json has no eos_token "
                                     "and config.json no eos_token_id; pass --eos TOKEN")


def _eos_token_text(config: dict[str, Any]) -> str | None:
    """`eos_token` as written by transformers: a string, or an AddedToken as `{"content": ...}`."""
    token = config.get("eos_token")
    if isinstance(token, dict):
        token = token.get("content")
    return token if isinstance(token, str) and token else None


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file, or a TokensError naming the file."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TokensError(path, f"cannot be read as JSON ({error})") from None
    if not isinstance(value, dict):
        raise TokensError(path, f"holds a JSON {type(value).__name__}, not an object")
    return value


# ---- sources and their documents ---------------------------------------------------------


def expand_sources(sources: Sequence[str | Path], skip: Iterable[Path] = (), include: Sequence[str] = (),
                   exclude: Sequence[str] = ()) -> list[Path]:
    """Files in the order they are tokenized: as given, a directory replaced by its files
    sorted by path (so two builds of one tree agree byte for byte). Walks skip hidden
    entries and `__pycache__` (VCS metadata and bytecode are never a corpus) and `skip`
    (the build's own output, should it live inside a source directory). In a walk, `include`
    globs (if any) keep only the files one matches and `exclude` globs drop those one
    matches, each tried on the file's name and on its path inside the directory (`*.txt`,
    `doc/*`); files named one by one are always taken."""
    skipped = {p.resolve() for p in skip}
    files: list[Path] = []
    for raw in sources:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and not _ignored(p.relative_to(path))
                           and p.resolve() not in skipped and _selected(p.relative_to(path), include, exclude))
            if not found:
                filtered = " matching --include/--exclude" if include or exclude else ""
                raise TokensError(path, f"directory holds no files{filtered} to tokenize")
            files += found
        elif path.is_file():
            files.append(path)
        elif path.exists():
            raise TokensError(path, "not a regular file or a directory")
        else:
            raise TokensError(path, "no such file or directory")
    if not files:
        raise TokensError("pdc tokens", "no sources given")
    return files


def _ignored(relative: Path) -> bool:
    return any(part.startswith(".") or part == "__pycache__" for part in relative.parts)


def _matches(relative: Path, globs: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(relative.name, g) or fnmatch.fnmatchcase(relative.as_posix(), g) for g in globs)


def _selected(relative: Path, include: Sequence[str], exclude: Sequence[str]) -> bool:
    return (not include or _matches(relative, include)) and not _matches(relative, exclude)


def documents(path: Path, field: str) -> Iterator[tuple[str, int]]:
    """(document text, bytes of the source it came from) for each document of a file:
    JSONL one per line, Parquet one per row, anything else the whole file; a `.gz` file is
    read decompressed (`notes.txt.gz` is text, `rows.jsonl.gz` JSONL)."""
    gz = path.suffix.lower() == ".gz"
    suffix = Path(path.stem).suffix.lower() if gz else path.suffix.lower()
    if suffix == ".jsonl":
        return jsonl_documents(path, field, gz)
    if suffix == ".parquet" and not gz:
        return parquet_documents(path, field)
    return iter([text_document(path)])


def text_document(path: Path) -> tuple[str, int]:
    """A whole file as one document (held in memory: a document is tokenized at once).
    Raises NotText for a file that is not UTF-8 text: NUL bytes (a binary), invalid UTF-8,
    or a `.gz` that does not decompress."""
    raw = path.read_bytes()
    data = _gunzip(path, raw) if path.suffix.lower() == ".gz" else raw
    nul = data.find(b"\0")
    if nul >= 0:
        raise NotText(path, f"binary, not text (a NUL byte at offset {nul:,})")
    try:
        return data.decode("utf-8"), len(raw)
    except UnicodeDecodeError as error:
        raise NotText(path, f"not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start:,}); every "
                            "source but .jsonl and .parquet is read as one UTF-8 document") from None


def _gunzip(path: Path, raw: bytes) -> bytes:
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise NotText(path, f"not gzip data ({error})") from None


def jsonl_documents(path: Path, field: str, gz: bool = False) -> Iterator[tuple[str, int]]:
    """One document per non-blank line, its `field` string; read line by line (through
    gzip for `.jsonl.gz`)."""
    with path.open("rb") as raw:
        handle: BinaryIO = gzip.GzipFile(fileobj=raw) if gz else raw  # type: ignore[assignment]
        try:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield _jsonl_text(line, field, f"{path}:{number}"), len(line)
        except (OSError, EOFError, zlib.error) as error:
            raise NotText(path, f"not gzip data ({error})") from None


def _jsonl_text(line: bytes, field: str, where: str) -> str:
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise TokensError(where, f"not a JSON line ({error})") from None
    if not isinstance(record, dict):
        raise TokensError(where, f"a JSON {type(record).__name__}, not an object with a {field!r} key")
    if field not in record:
        keys = ", ".join(map(repr, list(record)[:8])) or "none"
        raise TokensError(where, f"no {field!r} key (keys: {keys}); pick the text key with --field")
    text = record[field]
    if not isinstance(text, str):
        raise TokensError(where, f"{field!r} holds a JSON {type(text).__name__}, not a string")
    return text


def parquet_documents(path: Path, field: str) -> Iterator[tuple[str, int]]:
    """One document per row of column `field`, read a record batch at a time. Null rows
    are not documents and are skipped. pyarrow is optional: only Parquet needs it."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise TokensError(path, "reading Parquet needs pyarrow, which is not installed: pip install pyarrow") from None
    try:
        parquet = pq.ParquetFile(path)
    except Exception as error:  # noqa: BLE001 — pyarrow raises ArrowInvalid and OSError subclasses
        raise TokensError(path, f"not a Parquet file pyarrow can read ({error})") from None
    names = parquet.schema_arrow.names
    if field not in names:
        raise TokensError(path, f"no column {field!r} (columns: {', '.join(map(repr, names[:8]))}); "
                                "pick the text column with --field")
    for batch in parquet.iter_batches(columns=[field], batch_size=BATCH_DOCUMENTS):
        for text in batch.column(0).to_pylist():
            if text is None:
                continue
            if not isinstance(text, str):
                raise TokensError(path, f"column {field!r} holds {type(text).__name__} values, not strings")
            yield text, 0  # bytes are counted when the file is done: rows do not map to file offsets


def document_batches(docs: Iterable[tuple[str, int]]) -> Iterator[list[tuple[str, int]]]:
    """Documents grouped for one `encode_batch` call each, bounded in count and characters."""
    batch: list[tuple[str, int]] = []
    chars = 0
    for doc in docs:
        batch.append(doc)
        chars += len(doc[0])
        if len(batch) >= BATCH_DOCUMENTS or chars >= BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def ids_with_eos(encodings: Sequence[Any], eos_id: int, dtype: np.dtype) -> np.ndarray:
    """The ids of a batch of documents, each followed by EOS, as one array of `dtype`:
    every document boundary — within a source, across sources and across a resume —
    is marked the same way."""
    chain = itertools.chain.from_iterable(itertools.chain(e.ids, (eos_id,)) for e in encodings)
    return np.fromiter(chain, dtype=dtype, count=sum(len(e.ids) + 1 for e in encodings))


# ---- progress on stderr ------------------------------------------------------------------


class Reporter(Protocol):
    """Where the build reports files, bytes and tokens as it goes."""

    def __enter__(self) -> "Reporter": ...

    def __exit__(self, *exc: object) -> None: ...

    def note(self, message: str) -> None: ...

    def advance(self, nbytes: int, tokens: int) -> None: ...

    def file_done(self, completed_bytes: int) -> None: ...


class SilentReporter:
    """`progress=False`: nothing on stderr."""

    def __enter__(self) -> "SilentReporter":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def note(self, message: str) -> None:
        return None

    def advance(self, nbytes: int, tokens: int) -> None:
        return None

    def file_done(self, completed_bytes: int) -> None:
        return None


class LineReporter(SilentReporter):
    """Without a terminal (a log file) or without rich: a line on stderr after a file when
    PROGRESS_SECONDS have passed since the last, and after the last file."""

    def __init__(self, files: int, done_files: int, tokens: int) -> None:
        self.files, self.done_files, self.tokens = files, done_files, tokens
        self.printed_at = time.monotonic()

    def note(self, message: str) -> None:
        print(f"pdc tokens: {message}", file=sys.stderr)

    def advance(self, nbytes: int, tokens: int) -> None:
        self.tokens += tokens

    def file_done(self, completed_bytes: int) -> None:
        self.done_files += 1
        if time.monotonic() - self.printed_at >= PROGRESS_SECONDS or self.done_files == self.files:
            print(f"pdc tokens: {self.done_files:,}/{self.files:,} files, {self.tokens:,} tokens", file=sys.stderr)
            self.printed_at = time.monotonic()


class RichReporter(SilentReporter):
    """A rich progress bar on stderr over the sources' bytes, with files and tokens so far;
    transient, so the command's summary (or error) line is what stays on the screen."""

    def __init__(self, files: int, done_files: int, tokens: int, total_bytes: int, done_bytes: int) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        self.console = Console(stderr=True)
        self.progress = Progress(TextColumn("tokenizing"), BarColumn(),
                                 TextColumn("{task.fields[files]} files  {task.fields[tokens]:,} tokens"),
                                 TransferSpeedColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=self.console, transient=True)
        self.files, self.done_files, self.tokens = files, done_files, tokens
        self.task = self.progress.add_task("tokens", total=max(total_bytes, 1), completed=done_bytes,
                                           files=f"{done_files}/{files}", tokens=tokens)

    def __enter__(self) -> "RichReporter":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def note(self, message: str) -> None:
        self.console.print(f"pdc tokens: {message}", highlight=False, markup=False)

    def advance(self, nbytes: int, tokens: int) -> None:
        self.tokens += tokens
        self.progress.update(self.task, advance=nbytes, tokens=self.tokens)

    def file_done(self, completed_bytes: int) -> None:
        self.done_files += 1
        self.progress.update(self.task, completed=completed_bytes, files=f"{self.done_files}/{self.files}")


def make_reporter(progress: bool, files: list[Path], done: list[dict[str, Any]], itemsize: int,
                  finished_bytes: list[int]) -> Reporter:
    """rich's bar on a terminal when rich is importable, else lines, or nothing.
    `finished_bytes[k]` is the size of the first k files."""
    if not progress:
        return SilentReporter()
    tokens = done[-1]["end"] // itemsize if done else 0
    try:
        import rich  # noqa: F401
    except ImportError:
        return LineReporter(len(files), len(done), tokens)
    if not sys.stderr.isatty():  # a bar redrawn into a log file is noise; lines read better there
        return LineReporter(len(files), len(done), tokens)
    return RichReporter(len(files), len(done), tokens, finished_bytes[-1], finished_bytes[len(done)])


# ---- resume --------------------------------------------------------------------------------


def build_key(files: list[Path], loaded: LoadedTokenizer, field: str, dtype: np.dtype) -> dict[str, Any]:
    """Everything that decides the bytes of the output: a progress file with another key
    belongs to another build and is not resumed."""
    return {"tokenizer_sha256": loaded.sha256, "eos_id": loaded.eos_id, "field": field, "dtype": dtype.name,
            "sources": [str(f.resolve()) for f in files]}


_RECORD_FIELDS = {"path", "bytes", "sha256", "end", "documents"}  # one finished source in the progress file
_KEY_NAMES = {"tokenizer_sha256": "the tokenizer", "eos_id": "the EOS id", "field": "--field",
              "dtype": "the dtype", "sources": "the source list"}


def resume_point(out: Path, key: dict[str, Any], files: list[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """The finished sources to keep (their progress records) and notes saying what was
    decided. Keeps the longest prefix of finished sources whose bytes are unchanged, and
    truncates `out.partial` to where the last of them ended; anything else starts over."""
    progress, partial = progress_path(out), partial_path(out)
    if not progress.exists():  # a fresh build, or one killed before it recorded a source
        return [], []
    try:
        saved = json.loads(progress.read_text())
        done = list(saved["done"]) if saved.get("schema") == PROGRESS_SCHEMA else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        done = None
    if done is not None and not all(isinstance(d, dict) and _RECORD_FIELDS <= d.keys() for d in done):
        done = None
    if done is None:
        return [], [f"{progress} is unreadable; starting over"]
    changed = [name for name in _KEY_NAMES if saved.get("key", {}).get(name) != key[name]]
    if changed:
        what = ", ".join(_KEY_NAMES[name] for name in changed)
        verb = "differs" if len(changed) == 1 else "differ"
        return [], [f"restarting from scratch: {what} {verb} from the interrupted build's"]
    kept, notes = _unchanged_prefix(done, files)
    end = kept[-1]["end"] if kept else 0
    if not partial.exists() or partial.stat().st_size < end:
        return [], [f"{partial} is missing or shorter than {progress} says; starting over"]
    with partial.open("r+b") as handle:
        handle.truncate(end)
    if kept:
        notes.append(f"resuming after {len(kept)} of {len(files)} sources ({end // np.dtype(key['dtype']).itemsize:,} "
                     "tokens kept)")
    return kept, notes


def _unchanged_prefix(done: list[dict[str, Any]], files: list[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """The finished sources whose sha256 still matches, up to the first that changed."""
    for index, record in enumerate(done[:len(files)]):
        if file_sha256(files[index]) != record["sha256"]:
            return done[:index], [f"{files[index]} changed since it was tokenized; re-tokenizing from it"]
    return done[:len(files)], []


def save_progress(out: Path, key: dict[str, Any], done: list[dict[str, Any]]) -> None:
    """Record the finished sources (called after their ids are on disk, so the progress
    file never claims bytes the partial file may not hold)."""
    write_json_atomically(progress_path(out), {"schema": PROGRESS_SCHEMA, "key": key, "done": done})


def write_json_atomically(path: Path, document: dict[str, Any]) -> None:
    """Write via a temporary file and a rename: a kill leaves the old file or the new one."""
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(temporary, path)


# ---- the build ------------------------------------------------------------------------------


def build_tokens(sources: Sequence[str | Path], tokenizer_dir: str | Path, out: str | Path, *, field: str = "text",
                 eos: int | str | None = None, progress: bool = True, strict: bool = False,
                 include: Sequence[str] = (), exclude: Sequence[str] = ()) -> TokenFileInfo:
    """Tokenize local files into a raw token file `out` and its sidecar `out.json`.

    Sources are text files (one document each), `.jsonl` (one per line, key `field`) and
    `.parquet` (one per row, column `field`), `.gz` of text or JSONL read decompressed;
    directories are walked in sorted order (`include`/`exclude` globs filter the walk). A
    source that is not text (binary, not UTF-8) is skipped and listed in `skipped`, or with
    `strict` stops the build. Each document's ids are followed by the EOS id (`eos`: an id
    or a token's text; default the tokenizer's own). Memory stays bounded by one batch of
    documents; a rerun with the same arguments after a kill resumes at the last recorded
    source. Raises TokensError for inputs the user must fix."""
    out, tokenizer_dir = Path(out), Path(tokenizer_dir)
    loaded = load_tokenizer(tokenizer_dir, eos)
    files = expand_sources(sources, skip=[out, sidecar_path(out), partial_path(out), progress_path(out)],
                           include=include, exclude=exclude)
    dtype = narrowest_dtype(loaded.vocab_size)
    key = build_key(files, loaded, field, dtype)
    out.parent.mkdir(parents=True, exist_ok=True)
    done, notes = resume_point(out, key, files)
    try:
        tokenize_sources(out, key, files, field, loaded, dtype, done, notes, progress, strict)
    except TokensError:
        if not progress_path(out).exists():  # nothing recorded, nothing to resume: leave no stray partial file
            partial_path(out).unlink(missing_ok=True)
        raise
    if done and all("skipped" in d for d in done):
        partial_path(out).unlink(missing_ok=True)
        progress_path(out).unlink(missing_ok=True)
        raise TokensError(files[0] if len(files) == 1 else "pdc tokens",
                          f"none of the {_count(len(files), 'source')} is text (all skipped: binary or not UTF-8)")
    return finish(out, loaded, dtype, done, notes)


def tokenize_sources(out: Path, key: dict[str, Any], files: list[Path], field: str, loaded: LoadedTokenizer,
                     dtype: np.dtype, done: list[dict[str, Any]], notes: list[str], progress: bool,
                     strict: bool = False) -> None:
    """Append the ids of the sources after `done` to `out.partial`, recording finished
    sources in `out.progress.json` at most every PROGRESS_SECONDS and after the last."""
    finished_bytes = list(itertools.accumulate((f.stat().st_size for f in files), initial=0))
    with make_reporter(progress, files, done, dtype.itemsize, finished_bytes) as reporter:
        for note in notes:
            reporter.note(note)
        with partial_path(out).open("r+b" if done else "wb") as sink:
            sink.seek(0, os.SEEK_END)
            saved_at = time.monotonic()
            for path in files[len(done):]:
                done.append(tokenize_source(path, field, loaded, dtype, sink, reporter, done, strict))
                if time.monotonic() - saved_at >= PROGRESS_SECONDS or len(done) == len(files):
                    sink.flush()
                    os.fsync(sink.fileno())  # the ids on disk before the progress file claims them
                    save_progress(out, key, done)
                    saved_at = time.monotonic()
                reporter.file_done(finished_bytes[len(done)])


def tokenize_source(path: Path, field: str, loaded: LoadedTokenizer, dtype: np.dtype, sink: BinaryIO,
                    reporter: Reporter, done: list[dict[str, Any]], strict: bool = False) -> dict[str, Any]:
    """Append one source's ids to `sink`; its progress record (where its ids end). A source
    that is not text adds nothing (ids it wrote before that showed are cut off again) and
    is recorded as skipped, with why — unless `strict`, where it stops the build."""
    sha256 = file_sha256(path)
    start, count, tokens = sink.tell(), 0, 0
    previous = done[-1]["documents"] if done else 0
    try:
        for batch in document_batches(documents(path, field)):
            encodings = loaded.tokenizer.encode_batch([text for text, _ in batch], add_special_tokens=False)
            ids = ids_with_eos(encodings, loaded.eos_id, dtype)
            sink.write(ids.tobytes())
            count += len(batch)
            tokens += len(ids)
            reporter.advance(sum(nbytes for _, nbytes in batch), len(ids))
    except NotText as error:
        if strict:
            raise
        sink.seek(start)
        sink.truncate()
        reporter.advance(0, -tokens)
        return {"path": str(path), "bytes": path.stat().st_size, "sha256": sha256, "end": start,
                "documents": previous, "skipped": error.problem}
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": sha256, "end": sink.tell(),
            "documents": previous + count}


def finish(out: Path, loaded: LoadedTokenizer, dtype: np.dtype, done: list[dict[str, Any]],
           notes: list[str]) -> TokenFileInfo:
    """Move the finished data into place, then write the sidecar, then drop the progress
    file: a kill in between leaves a state the next run either finishes or restarts."""
    end = done[-1]["end"] if done else 0
    info = TokenFileInfo(path=out, dtype=dtype.name, tokens=end // dtype.itemsize,
                         documents=done[-1]["documents"] if done else 0, vocab_size=loaded.vocab_size,
                         eos_id=loaded.eos_id, tokenizer_sha256=loaded.sha256,
                         sources=tuple(SourceRecord(d["path"], d["bytes"], d["sha256"]) for d in done
                                       if "skipped" not in d),
                         created_by=pdc_version(), notes=tuple(notes),
                         skipped=tuple((d["path"], d["skipped"]) for d in done if "skipped" in d),
                         eos_token=loaded.eos_token, eos_from=loaded.eos_from)
    os.replace(partial_path(out), out)
    write_json_atomically(sidecar_path(out), info.sidecar())
    progress_path(out).unlink(missing_ok=True)
    return info


def spec_block(info: TokenFileInfo, seq_len: int = 2048, batch: int = 32) -> str:
    """The `data tokens` block that reads `info`'s file, to paste into a spec (absolute
    path: relative paths in a spec resolve against the spec's directory, not the shell's;
    laid out by `pdc fmt` itself and indented as it sits in `spec NAME { ... }`, so pasted
    there as printed the spec stays formatted)."""
    from pdc.syntax.format import format_spec
    from pdc.syntax.parse import parse_text

    path = str(info.path.resolve()).replace("\\", "\\\\").replace('"', '\\"')  # a spec string's escapes
    rows = info.tokens // seq_len
    block = (f'data tokens {{ path = "{path}" format = {info.dtype} seq_len = {seq_len} batch = {batch} }}'
             f"  # {info.tokens:,} tokens = {rows:,} rows of {seq_len}")
    source, problems = parse_text(f"spec s {{\n{block}\n}}\n", "<pdc tokens>")
    if source is None or problems:  # cannot happen for a path we escaped; the one-line form still parses
        return block
    return "\n".join(format_spec(source).splitlines()[1:-1])


def eos_line(info: TokenFileInfo) -> str:
    """Which token ends each document and why: an instruct tokenizer's `eos_token` (say
    `<|im_end|>`) is not its pretraining `<|endoftext|>`, so the choice is said out loud."""
    token = f"{info.eos_token!r} " if info.eos_token is not None else ""
    return (f"pdc tokens: documents end with {token}(id {info.eos_id}), from {info.eos_from or 'the tokenizer'}; "
            "--eos TOKEN picks another")


def skipped_line(info: TokenFileInfo, shown: int = 3) -> str | None:
    """How many sources were skipped as not text, and the first few with why."""
    if not info.skipped:
        return None
    first = "; ".join(f"{path}: {why}" for path, why in info.skipped[:shown])
    more = f"; and {len(info.skipped) - shown:,} more" if len(info.skipped) > shown else ""
    return (f"pdc tokens: skipped {_count(len(info.skipped), 'source')} that {'is' if len(info.skipped) == 1 else 'are'}"
            f" not text ({first}{more}); --strict stops at the first instead, --exclude GLOB leaves them out")


def summary_line(info: TokenFileInfo) -> str:
    """The command's last word: what was written, from what, and where."""
    return (f"pdc tokens: {_count(info.tokens, 'token')} from {_count(info.documents, 'document')} in "
            f"{_count(len(info.sources), 'file')}, {info.dtype} (vocab {info.vocab_size:,}, eos {info.eos_id}) → "
            f"{info.path}, sidecar {sidecar_path(info.path)}")


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
