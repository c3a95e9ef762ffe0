"""`pdc tokens` and `inspect_token_file`: a token file built from local text, JSONL and
Parquet decodes back to its documents joined by EOS, its sidecar says what made it, a
killed build resumes to the same bytes (and restarts when the tokenizer or the sources
change), the checker returns each PD042x for the file that shows it and nothing for a
good file, and the command's bad inputs are one line and exit 1.

The tokenizer is trained here, in a fraction of a second, on a few files of this Python's
standard library: byte-level BPE with 256 ids (a 100-character alphabet, `<unk>` and
`<eos>`), so its files are uint16 and fit `specs/tiny_llama.pd` (vocab 256)."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from pdc.cli import main
from pdc.run import tokens
from pdc.run.data import open_tokens
from pdc.inputs import token_file
from pdc.inputs.token_file import TokenProblem, inspect_token_file
from pdc.run.tokens import TokensError, build_tokens
from pdc.syntax.codes import CODES
from pdc.syntax.parse import parse_text

from conftest import REPO

STDLIB = Path(sysconfig.get_paths()["stdlib"])
VOCAB = 256
DOCS = ["def add(x, y):\n    return x + y\n", "", "class Point:\n    x: int = 0\n    y: int = 0\n",
        "# a comment, then\nimport os\nprint(os.getcwd())\n"]


def stdlib_files(count: int, skip: int = 0) -> list[Path]:
    """Small `.py` files of the standard library, in a stable order."""
    files = sorted(p for p in STDLIB.glob("*.py") if 500 < p.stat().st_size < 20_000)
    return files[skip:skip + count]


def save_tokenizer(tokenizer: Tokenizer, directory: Path, eos: str = "<eos>") -> Path:
    directory.mkdir(parents=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({"eos_token": {"content": eos}}))
    return directory


def bpe_tokenizer(vocab_size: int) -> Tokenizer:
    """Byte-level BPE on 20 stdlib files: `<unk>` = 0, `<eos>` = 1, at most `vocab_size` ids."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<eos>"], limit_alphabet=100,
                                  initial_alphabet=[], show_progress=False)
    tokenizer.train_from_iterator((p.read_text() for p in stdlib_files(20)), trainer)
    return tokenizer


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tokenizer(bpe_tokenizer(VOCAB), tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def other_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tokenizer(bpe_tokenizer(200), tmp_path_factory.mktemp("model") / "other")


@pytest.fixture()
def sources(tmp_path: Path) -> Path:
    """Six stdlib files in a tree (one nested), plus entries a walk must skip."""
    root = tmp_path / "src"
    for index, file in enumerate(stdlib_files(6)):
        target = root / ("pkg" if index % 3 == 0 else "") / file.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(file, target)
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\x00\xff")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_bytes(b"\xff")
    return root


def walked(root: Path) -> list[Path]:
    """The files a build of `root` reads, in its order (sorted by path, skips excluded)."""
    return sorted(p for p in root.rglob("*.py"))


def ids_of(tokenizer: Tokenizer, texts: list[str], eos: int) -> np.ndarray:
    return np.array([i for text in texts for i in tokenizer.encode(text, add_special_tokens=False).ids + [eos]],
                    dtype=np.uint16)


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t, "id": n}) + "\n" + ("\n" if n == 1 else "")
                            for n, t in enumerate(texts)))
    return path


# ---- building ---------------------------------------------------------------------------------


def test_a_directory_is_walked_sorted_and_its_files_joined_by_eos(model: Path, sources: Path, tmp_path: Path) -> None:
    info = build_tokens([sources], model, tmp_path / "out" / "t.bin", progress=False)
    tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
    eos = tokenizer.token_to_id("<eos>")
    expected = ids_of(tokenizer, [p.read_text() for p in walked(sources)], eos)
    assert np.array_equal(np.fromfile(tmp_path / "out" / "t.bin", dtype="<u2"), expected)
    assert [s.path for s in info.sources] == [str(p) for p in walked(sources)]  # pkg/ sorts among the files
    assert info.documents == 6 and info.tokens == len(expected) and info.dtype == "uint16"
    rows = open_tokens(tmp_path / "out" / "t.bin", "uint16", 64)  # what `data tokens { format = uint16 }` reads
    assert rows.rows == len(expected) // 64 and rows.tokens.dtype == np.uint16


def test_jsonl_documents_decode_back_joined_by_eos(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "docs.bin"
    info = build_tokens([write_jsonl(tmp_path / "docs.jsonl", DOCS)], model, out, progress=False)
    tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
    data = np.fromfile(out, dtype="<u2")
    assert data[-1] == info.eos_id
    pieces = np.split(data, np.flatnonzero(data == info.eos_id) + 1)[:-1]
    assert [tokenizer.decode(p[:-1].tolist()) for p in pieces] == DOCS  # the blank line is not a document
    assert info.documents == len(DOCS)


def test_the_sidecar_says_what_made_the_file(model: Path, sources: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.bin"
    build_tokens([sources, write_jsonl(tmp_path / "d.jsonl", DOCS)], model, out, progress=False)
    sidecar = json.loads((tmp_path / "t.bin.json").read_text())
    files = [*walked(sources), tmp_path / "d.jsonl"]
    assert sidecar["schema"] == "pdc.tokens/1" and sidecar["dtype"] == "uint16"
    assert sidecar["tokens"] == out.stat().st_size // 2 and sidecar["documents"] == 6 + len(DOCS)
    assert sidecar["vocab_size"] == VOCAB and sidecar["eos_id"] == 1
    assert sidecar["tokenizer_sha256"] == hashlib.sha256((model / "tokenizer.json").read_bytes()).hexdigest()
    assert sidecar["sources"] == [{"path": str(p), "bytes": p.stat().st_size,
                                   "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in files]
    assert sidecar["created_by"].startswith("pdc ")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("t.bin")) == ["t.bin", "t.bin.json"]


def test_a_vocabulary_over_65536_ids_is_written_as_uint32(tmp_path: Path) -> None:
    vocab = {"<unk>": 0, "<eos>": 1, **{f"w{i}": i for i in range(2, 70_000)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    model = save_tokenizer(tokenizer, tmp_path / "wide")
    info = build_tokens([write_jsonl(tmp_path / "d.jsonl", ["w2 w69999 w65536", "w7"])], model, tmp_path / "t.bin",
                        progress=False)
    assert info.dtype == "uint32" and info.vocab_size == 70_000
    assert np.fromfile(tmp_path / "t.bin", dtype="<u4").tolist() == [2, 69_999, 65_536, 1, 7, 1]
    assert tokens.narrowest_dtype(65_536) == np.uint16 and tokens.narrowest_dtype(65_537) == np.uint32


def test_eos_comes_from_the_flag_then_tokenizer_config_then_config_json(model: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(model / "tokenizer.json", bare / "tokenizer.json")
    jsonl = write_jsonl(tmp_path / "d.jsonl", DOCS[:1])
    with pytest.raises(TokensError, match="pass --eos TOKEN"):
        build_tokens([jsonl], bare, tmp_path / "a.bin", progress=False)
    (bare / "config.json").write_text(json.dumps({"eos_token_id": [0, 1]}))
    assert build_tokens([jsonl], bare, tmp_path / "b.bin", progress=False).eos_id == 0
    (bare / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<eos>"}))
    assert build_tokens([jsonl], bare, tmp_path / "c.bin", progress=False).eos_id == 1
    assert build_tokens([jsonl], bare, tmp_path / "d.bin", eos=7, progress=False).eos_id == 7
    assert np.fromfile(tmp_path / "d.bin", dtype="<u2")[-1] == 7


def test_parquet_rows_are_documents_and_nulls_are_skipped(model: Path, tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"content": [DOCS[0], None, DOCS[2]]}), tmp_path / "d.parquet")
    info = build_tokens([tmp_path / "d.parquet"], model, tmp_path / "t.bin", field="content", progress=False)
    tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
    assert np.array_equal(np.fromfile(tmp_path / "t.bin", dtype="<u2"), ids_of(tokenizer, [DOCS[0], DOCS[2]], 1))
    assert info.documents == 2


def test_parquet_without_pyarrow_says_how_to_install_it(model: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "d.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow...` now raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(TokensError, match="pip install pyarrow") as error:
        build_tokens([tmp_path / "d.parquet"], model, tmp_path / "t.bin", progress=False)
    assert error.value.file == str(tmp_path / "d.parquet")
    assert not (tmp_path / "t.bin.partial").exists()  # nothing recorded, nothing left behind


# ---- resuming -----------------------------------------------------------------------------------


class Killed(Exception):
    """Stands in for SIGKILL after the build recorded `after` sources."""


def kill_after(monkeypatch: pytest.MonkeyPatch, after: int) -> None:
    """Record every finished source, and die right after recording the `after`-th."""
    real = tokens.save_progress
    monkeypatch.setattr(tokens, "PROGRESS_SECONDS", 0.0)

    def save_then_die(out: Path, key: dict, done: list) -> None:  # type: ignore[type-arg]
        real(out, key, done)
        if len(done) == after:
            raise Killed

    monkeypatch.setattr(tokens, "save_progress", save_then_die)


def tokenized_paths(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sources the next build tokenizes (a resumed build skips the finished ones)."""
    seen: list[str] = []
    real = tokens.tokenize_source

    def spy(path: Path, *args: object) -> dict:  # type: ignore[type-arg]
        seen.append(path.name)
        return real(path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(tokens, "tokenize_source", spy)
    return seen


def test_a_killed_build_resumes_to_the_same_bytes(model: Path, sources: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    straight = build_tokens([sources], model, tmp_path / "straight.bin", progress=False)
    out = tmp_path / "killed.bin"
    with monkeypatch.context() as patch:
        kill_after(patch, 2)
        with pytest.raises(Killed):
            build_tokens([sources], model, out, progress=False)
    progress = json.loads((tmp_path / "killed.bin.progress.json").read_text())
    assert [Path(d["path"]).name for d in progress["done"]] == [p.name for p in walked(sources)[:2]]
    with (tmp_path / "killed.bin.partial").open("ab") as partial:
        partial.write(b"\x07\x00" * 999)  # the third source was half written when the process died
    seen = tokenized_paths(monkeypatch)
    resumed = build_tokens([sources], model, out, progress=False)
    assert seen == [p.name for p in walked(sources)[2:]]
    assert resumed.notes == (f"resuming after 2 of 6 sources ({progress['done'][1]['end'] // 2:,} tokens kept)",)
    assert out.read_bytes() == (tmp_path / "straight.bin").read_bytes()
    assert resumed.sidecar() == straight.sidecar()
    assert not (tmp_path / "killed.bin.partial").exists() and not (tmp_path / "killed.bin.progress.json").exists()


def test_another_tokenizer_or_source_list_restarts_from_scratch(model: Path, other_model: Path, sources: Path,
                                                                tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "t.bin"
    for changed in ({"tokenizer_dir": other_model, "sources": [sources]},
                    {"tokenizer_dir": model, "sources": walked(sources)[:3]}):
        with monkeypatch.context() as patch:
            kill_after(patch, 1)
            with pytest.raises(Killed):
                build_tokens([sources], model, out, progress=False)
        info = build_tokens(changed["sources"], changed["tokenizer_dir"], out, progress=False)
        expected = build_tokens(changed["sources"], changed["tokenizer_dir"], tmp_path / "fresh.bin", progress=False)
        assert len(info.notes) == 1 and info.notes[0].startswith("restarting from scratch: ")
        assert ("the tokenizer" if changed["tokenizer_dir"] == other_model else "the source list") in info.notes[0]
        assert out.read_bytes() == (tmp_path / "fresh.bin").read_bytes() and info.sidecar() == expected.sidecar()


def test_a_finished_source_that_changed_is_tokenized_again(model: Path, sources: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "t.bin"
    with monkeypatch.context() as patch:
        kill_after(patch, 3)
        with pytest.raises(Killed):
            build_tokens([sources], model, out, progress=False)
    second = walked(sources)[1]
    second.write_text(second.read_text() + "\n# edited after the kill\n")
    seen = tokenized_paths(monkeypatch)
    info = build_tokens([sources], model, out, progress=False)
    assert seen == [p.name for p in walked(sources)[1:]]
    assert info.notes[0] == f"{second} changed since it was tokenized; re-tokenizing from it"
    assert info.notes[1].startswith("resuming after 1 of 6 sources")
    build_tokens([sources], model, tmp_path / "fresh.bin", progress=False)
    assert out.read_bytes() == (tmp_path / "fresh.bin").read_bytes()


def test_an_unreadable_progress_file_starts_over(model: Path, sources: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.bin"
    tokens.progress_path(out).write_text('{"schema": "pdc.tokens.progress/1", "done": [{"path": 1}]}')
    tokens.partial_path(out).write_bytes(b"junk")
    info = build_tokens([sources], model, out, progress=False)
    assert info.notes == (f"{tokens.progress_path(out)} is unreadable; starting over",)
    build_tokens([sources], model, tmp_path / "fresh.bin", progress=False)
    assert out.read_bytes() == (tmp_path / "fresh.bin").read_bytes()


# ---- checking -----------------------------------------------------------------------------------


@pytest.fixture()
def built(model: Path, sources: Path, tmp_path: Path) -> Path:
    """A good uint16 token file with its sidecar."""
    out = tmp_path / "good" / "t.bin"
    build_tokens([sources], model, out, progress=False)
    return out


def copy_of(built: Path, name: str, sidecar: bool = True) -> Path:
    target = built.with_name(name)
    shutil.copy(built, target)
    if sidecar:
        shutil.copy(tokens.sidecar_path(built), tokens.sidecar_path(target))
    return target


def codes(problems: list[TokenProblem]) -> list[str]:
    return [p.code for p in problems]


def test_a_good_file_has_no_problems(built: Path, model: Path) -> None:
    assert inspect_token_file(built, "uint16", 64, 8, VOCAB, model) == []
    ids = np.fromfile(built, dtype="<u2").astype(np.int32)
    np.save(built.with_name("t.npy"), ids[:len(ids) // 2 * 2].reshape(-1, 2))  # any integer dtype, any shape
    assert inspect_token_file(built.with_name("t.npy"), "npy", 64, 8, VOCAB) == []


def test_too_few_rows_says_what_the_file_holds(built: Path) -> None:
    count = built.stat().st_size // 2
    [problem] = inspect_token_file(built, "uint16", 2048, 32, VOCAB)
    assert problem.code == "PD0422"
    assert problem.message == f"{built}: holds {count:,} tokens = {count // 2048:,} rows of 2048; a batch needs 32"
    assert "data.seq_len" in problem.help


def test_ids_outside_the_vocabulary_name_the_largest_and_the_first_offset(built: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    data = np.fromfile(built, dtype="<u2")
    first, largest = int(np.flatnonzero(data >= 100)[0]), int(data.max())
    problems = inspect_token_file(built, "uint16", 64, 1, 100)
    assert codes(problems) == ["PD0423", "PD0427"]  # the ids, and the sidecar's 256-id tokenizer
    message = problems[0].message
    assert f"{int(np.count_nonzero(data >= 100)):,} of {len(data):,} ids" in message
    assert f"the first at token offset {first:,}" in message
    assert f"the largest id is {largest:,} (first at offset {int(data.argmax()):,})" in message
    monkeypatch.setattr(token_file, "SCAN_TOKENS", 1000)  # many chunks: the same answer in bounded pieces
    assert inspect_token_file(built, "uint16", 64, 1, 100) == problems


def test_negative_ids_in_an_npy_are_out_of_range(tmp_path: Path) -> None:
    np.save(tmp_path / "t.npy", np.array([3, 4, -1, 5] * 100, dtype=np.int16))
    [problem] = inspect_token_file(tmp_path / "t.npy", "npy", 4, 2, VOCAB)
    assert problem.code == "PD0423" and "the first at token offset 2" in problem.message
    assert "the smallest is -1" in problem.message


def broken_files(built: Path, other_model: Path) -> list[tuple[str, Path, str, int, str | Path | None, str]]:
    """(case, file, format, vocab, tokenizer dir, the code it shows), one or more per code."""
    cases: list[tuple[str, Path, str, int, str | Path | None, str]] = [
        ("missing", built.with_name("nope.bin"), "uint16", VOCAB, None, "PD0420"),
        ("a directory", built.parent, "uint16", VOCAB, None, "PD0420"),
    ]
    odd = copy_of(built, "odd.bin", sidecar=False)
    with odd.open("ab") as handle:
        handle.write(b"\x01")
    np.save(built.with_name("floats.npy"), np.zeros(4096, dtype=np.float32))
    np.save(built.with_name("ids.npy"), np.fromfile(built, dtype="<u2"))
    cases += [("raw read as npy", built, "npy", VOCAB, None, "PD0421"),
              ("npy read as raw", built.with_name("ids.npy"), "uint16", VOCAB, None, "PD0421"),
              ("odd length", odd, "uint16", VOCAB, None, "PD0421"),
              ("float npy", built.with_name("floats.npy"), "npy", VOCAB, None, "PD0421")]
    unreadable = copy_of(built, "bad_sidecar.bin")
    tokens.sidecar_path(unreadable).write_text("{not json")
    not_ours = copy_of(built, "not_ours.bin")
    tokens.sidecar_path(not_ours).write_text(json.dumps({"schema": "other/1"}))
    truncated = copy_of(built, "truncated.bin")
    with truncated.open("r+b") as handle:
        handle.truncate(truncated.stat().st_size - 2)
    np.arange(10, dtype="<u2").tofile(built.with_name("short.bin"))
    cases += [("ten tokens", built.with_name("short.bin"), "uint16", VOCAB, None, "PD0422"),
              ("ids beyond the vocabulary", built, "uint16", 100, None, "PD0423")]
    cases += [("sidecar not JSON", unreadable, "uint16", VOCAB, None, "PD0424"),
              ("sidecar of another schema", not_ours, "uint16", VOCAB, None, "PD0424"),
              ("read as uint32", built, "uint32", 1 << 31, None, "PD0425"),
              ("truncated", truncated, "uint16", VOCAB, None, "PD0426"),
              ("target vocabulary smaller", built, "uint16", 300, None, "PD0427"),
              ("another tokenizer", built, "uint16", VOCAB, other_model, "PD0428")]
    return cases


def test_each_problem_has_its_code_and_every_code_is_shown(built: Path, other_model: Path) -> None:
    sidecar = json.loads(tokens.sidecar_path(built).read_text())
    tokens.sidecar_path(built).write_text(json.dumps({**sidecar, "vocab_size": 512}))  # as if a bigger tokenizer
    shown = set()
    for case, path, fmt, vocab, tokenizer_dir, code in broken_files(built, other_model):
        problems = inspect_token_file(path, fmt, 16, 2, vocab, tokenizer_dir)
        assert code in codes(problems), (case, problems)
        assert all(p.message and p.help for p in problems), case
        shown.add(code)
    assert shown == {code for code in CODES if code.startswith("PD042")}


def test_the_checker_names_the_other_tokenizer_and_the_uint32_reading(built: Path, model: Path,
                                                                      other_model: Path) -> None:
    [mismatch] = inspect_token_file(built, "uint16", 16, 2, VOCAB, other_model)
    assert mismatch.code == "PD0428" and str(other_model / "tokenizer.json") in mismatch.message
    wrong = inspect_token_file(built, "uint32", 16, 2, 1 << 31, model)
    assert codes(wrong) == ["PD0425"] and "says the ids are uint16" in wrong[0].message
    assert wrong[0].help == "write `format = uint16`"


# ---- the command --------------------------------------------------------------------------------


def test_the_command_prints_the_summary_and_the_spec_block(model: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t.bin"
    assert main(["tokens", str(write_jsonl(tmp_path / "d.jsonl", DOCS)), "--tokenizer", str(model), "--out", str(out),
                 "--quiet"]) == 0
    captured = capsys.readouterr()
    eos, summary, *block = captured.out.splitlines()
    count = out.stat().st_size // 2
    assert eos == "pdc tokens: documents end with '<eos>' (id 1), from tokenizer_config.json `eos_token`; " \
                  "--eos TOKEN picks another"
    assert summary.startswith(f"pdc tokens: {count:,} tokens from {len(DOCS)} documents in 1 file, uint16")
    assert block == ["  data tokens {", f'    path = "{out.resolve()}"', "    seq_len = 2048", "    batch = 32",
                     f"    format = uint16",
                     f"  }}  # {count:,} tokens = 0 rows of 2048"]
    assert captured.err == ""


def test_the_printed_block_pasted_into_a_spec_is_formatted(model: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 33: the block as printed, pasted between a spec's braces, passes `pdc fmt --check`."""
    out = tmp_path / 'we"ird\\name.bin'  # a path with a spec string's escapes
    assert main(["tokens", str(write_jsonl(tmp_path / "d.jsonl", DOCS)), "--tokenizer", str(model), "--out", str(out),
                 "--quiet"]) == 0
    block = capsys.readouterr().out.splitlines()[2:]
    spec = tmp_path / "pasted.pd"
    spec.write_text("spec s {\n" + "\n".join(block) + "\n}\n")
    _, diagnostics = parse_text(spec.read_text(), str(spec))
    assert diagnostics == []
    assert main(["fmt", "--check", str(spec)]) == 0
    source, _ = parse_text(spec.read_text(), str(spec))
    assert source is not None


def real_directory(root: Path) -> Path:
    """A corpus as a real directory holds it: text files, a gzipped text file, a binary."""
    corpus = root / "corpus"
    (corpus / "doc").mkdir(parents=True)
    (corpus / "a.txt").write_text(DOCS[0])
    (corpus / "doc" / "b.md").write_text(DOCS[2])
    (corpus / "NEWS.Debian.gz").write_bytes(gzip.compress(DOCS[3].encode()))
    (corpus / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(range(256)))
    return corpus


def test_a_real_directory_skips_binaries_reads_gz_and_says_its_eos(model: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 33's acceptance: text files, a .gz text file and a binary: exit 0, the binary
    skipped with a message, the .gz read decompressed, the EOS choice printed; `--strict` exits 1."""
    corpus, out = real_directory(tmp_path), tmp_path / "t.bin"
    tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
    assert main(["tokens", str(corpus), "--tokenizer", str(model), "--out", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "pdc tokens: skipped 1 source that is not text" in captured.err
    assert f"{corpus / 'logo.png'}: binary, not text" in captured.err
    assert "documents end with '<eos>' (id 1)" in captured.out
    expected = ids_of(tokenizer, [DOCS[3], DOCS[0], DOCS[2]], 1)  # sorted: NEWS.Debian.gz, a.txt, doc/b.md
    np.testing.assert_array_equal(np.fromfile(out, np.uint16), expected)
    sidecar = json.loads((tmp_path / "t.bin.json").read_text())
    assert [Path(s["path"]).name for s in sidecar["sources"]] == ["NEWS.Debian.gz", "a.txt", "b.md"]
    assert main(["tokens", str(corpus), "--tokenizer", str(model), "--out", str(tmp_path / "s.bin"), "--quiet",
                 "--strict"]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"pdc: error: {corpus / 'logo.png'}: binary, not text")


def test_sources_none_of_which_is_text_are_an_error(model: Path, tmp_path: Path) -> None:
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(TokensError, match="none of the 1 source is text"):
        build_tokens([tmp_path / "latin1.txt"], model, tmp_path / "t.bin", progress=False)
    assert not list(tmp_path.glob("t.bin*"))


def test_include_and_exclude_globs_filter_the_walk(model: Path, tmp_path: Path) -> None:
    corpus = real_directory(tmp_path)
    only_text = build_tokens([corpus], model, tmp_path / "a.bin", progress=False, include=["*.txt", "doc/*"])
    assert [Path(s.path).name for s in only_text.sources] == ["a.txt", "b.md"] and not only_text.skipped
    no_binary = build_tokens([corpus], model, tmp_path / "b.bin", progress=False, exclude=["*.png"])
    assert [Path(s.path).name for s in no_binary.sources] == ["NEWS.Debian.gz", "a.txt", "b.md"]
    assert not no_binary.skipped
    with pytest.raises(TokensError, match="no files matching --include/--exclude"):
        build_tokens([corpus], model, tmp_path / "c.bin", progress=False, include=["*.rst"])


def test_eos_is_chosen_by_token_text(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--eos <unk>` picks that token by its text (an instruct tokenizer's `eos_token` may be
    its chat end, not its end of text); a token the tokenizer lacks is an error."""
    jsonl = write_jsonl(tmp_path / "d.jsonl", DOCS)
    assert main(["tokens", str(jsonl), "--tokenizer", str(model), "--out", str(tmp_path / "t.bin"), "--quiet",
                 "--eos", "<unk>"]) == 0
    assert "documents end with '<unk>' (id 0), from --eos" in capsys.readouterr().out
    assert json.loads((tmp_path / "t.bin.json").read_text())["eos_id"] == 0
    assert main(["tokens", str(jsonl), "--tokenizer", str(model), "--out", str(tmp_path / "u.bin"), "--quiet",
                 "--eos", "<nope>"]) == 1
    assert "--eos '<nope>' is not a token" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["missing source", "no tokenizer.json", "bad JSONL line", "no EOS",
                                  "no such key", "not UTF-8"])
def test_bad_inputs_are_one_line_and_exit_1(case: str, model: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    good = write_jsonl(tmp_path / "d.jsonl", DOCS)
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(model / "tokenizer.json", bare / "tokenizer.json")
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"text": oops}\n')
    (tmp_path / "other.jsonl").write_text('{"body": "x"}\n')
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))  # skipped, unless --strict
    sources, tokenizer, file = {
        "missing source": ([tmp_path / "nope.txt"], model, tmp_path / "nope.txt"),
        "no tokenizer.json": ([good], tmp_path, tmp_path / "tokenizer.json"),
        "bad JSONL line": ([tmp_path / "bad.jsonl"], model, f"{tmp_path / 'bad.jsonl'}:2"),
        "no EOS": ([good], bare, bare),
        "no such key": ([tmp_path / "other.jsonl"], model, f"{tmp_path / 'other.jsonl'}:1"),
        "not UTF-8": ([tmp_path / "latin1.txt"], model, tmp_path / "latin1.txt"),
    }[case]
    capsys.readouterr()
    strict = ["--strict"] if case == "not UTF-8" else []
    code = main(["tokens", *map(str, sources), "--tokenizer", str(tokenizer), "--out", str(tmp_path / "t.bin"), *strict])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith(f"pdc: error: {file}: ") and "Traceback" not in captured.err
    assert not list(tmp_path.glob("t.bin*"))


# ---- end to end ---------------------------------------------------------------------------------


@pytest.mark.slow  # ~5 min on two busy cores: a tiny_llama compile and 50 steps on 8 fake devices
def test_pdc_train_runs_on_a_built_token_file(model: Path, tmp_path: Path) -> None:
    """tiny_llama (vocab 256, random frozen weights instead of its pretrain block) trains 50
    steps on tokens built from 50 stdlib files with the 256-id test tokenizer."""
    import jax

    from pdc.models import build_target
    from pdc.targets.llama.hf import hf_config, save_hf
    from pdc.passes import run_passes
    from pdc.syntax.load import check_text

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for file in stdlib_files(50):
        shutil.copy(file, corpus / file.name)
    data = tmp_path / "train.bin"
    info = build_tokens([corpus], model, data, progress=False)
    assert inspect_token_file(data, "uint16", 128, 16, VOCAB, model) == []
    text = (REPO / "specs" / "tiny_llama.pd").read_text()
    start = text.index("    pretrain {")
    text = text[:start] + f'    weights = "{tmp_path / "weights"}"\n' + text[text.index("    }\n", start) + 6:]
    start = text.index("  data corpus {")
    text = (text[:start] + f'  data tokens {{\n    path = "{data}"\n    format = uint16\n    seq_len = 128\n'
            "    batch = 16\n  }\n" + text[text.index("  }\n", start) + 4:])
    text = text.replace("train { steps = 2000 seed = 0 }", "train { steps = 50 seed = 0 }")
    text = text.replace("faithfulness_warmup { steps = 100", "faithfulness_warmup { steps = 10")
    text = text.replace("log { every = 50 }", "log { every = 10 }")
    spec = tmp_path / "tiny_tokens.pd"
    spec.write_text(text)
    result = check_text(text, str(spec))
    assert result.ok and result.spec is not None, [d.summary for d in result.diagnostics]
    ir = run_passes(result.spec)
    target = build_target(ir.facts["target"], [n[5:] for n in ir.graph if n.startswith("site:")])
    save_hf(target.init_params(jax.random.PRNGKey(0)), tmp_path / "weights", config=hf_config(target.config))
    assert main(["train", str(spec), "--out", str(tmp_path / "run")]) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [10, 20, 30, 40, 50]
    assert all(np.isfinite(r["loss/total"]) for r in records)
    assert info.tokens >= 16 * 128
