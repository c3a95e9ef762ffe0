"""Hostile and degenerate files through the public routes: `check_file` (no exception may
escape it) and `pdc check` (`pdc.cli.main`, which would turn an escaped exception into exit
1 and a crash report, so exit 2 proves the problem was a diagnostic).

Exit codes: 2 for every file that is not a valid spec, 0 for the padded valid spec. An empty,
blank or comment-only file is exit 2 (PD0215) rather than "nothing to check": a spec file
holds exactly one `spec NAME { ... }` block, and an empty file is far more likely a
truncated write than an intended spec. Rendered output is bounded: a 2 MB line is shown as
one cut row, never echoed whole.
"""

from __future__ import annotations

import json
import os
import random
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SPECS, spec_text
from pdc.cli import main
from pdc.syntax.codes import CODES
from pdc.syntax.diagnostics import SpecError
from pdc.syntax.format import format_spec
from pdc.syntax.load import check_file, load_spec
from pdc.syntax.parse import MAX_FILE_BYTES, parse_text
from pdc.syntax.scan import MAX_DEPTH

ERROR_LINE = re.compile(r"^.+:\d+:\d+: error\[PD\d{4}\]: ")
MAX_OUTPUT = 10_000
VALID = spec_text("tms_5-2")
MB = 1_000_000


def check_cli(path: Path, capsys: pytest.CaptureFixture[str], expected_rc: int = 2) -> tuple[str, str]:
    """`pdc check PATH`: the exit code, a first stderr line in the documented form, short output.
    The specs here are written to a temporary directory, away from the weights they name, and
    test the front end: `--no-inputs`."""
    rc = main(["check", "--no-inputs", str(path)])
    out, err = capsys.readouterr()
    assert rc == expected_rc, err[:2000]
    if expected_rc == 2:
        assert ERROR_LINE.match(err.splitlines()[0]), err[:2000]
    assert len(out) + len(err) < MAX_OUTPUT, (len(out), len(err), err[:2000])
    return out, err


def check_api(path: Path, *codes: str) -> None:
    """`check_file` returns documented diagnostics (it has no catch-all to hide behind)."""
    result = check_file(path)
    assert all(re.fullmatch(r"PD\d{4}", d.code) and d.code in CODES for d in result.diagnostics)
    if codes:
        assert {d.code for d in result.diagnostics} == set(codes), result.diagnostics


def write(tmp_path: Path, data: str | bytes, name: str = "edge.pd") -> Path:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


# ---- empty and near-empty files ---------------------------------------------------------------


@pytest.mark.parametrize("text", ["", " \n\t\n\r\n   ", "# only a comment\n# and another", "#"],
                         ids=["empty", "whitespace", "comments", "bare-hash"])
def test_no_spec_block(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    path = write(tmp_path, text)
    check_api(path, "PD0215")
    _, err = check_cli(path, capsys)
    assert err.startswith(f"{path}:1:1: error[PD0215]: ")


def test_only_a_closing_brace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "}")
    check_api(path, "PD0102")
    _, err = check_cli(path, capsys)
    assert err.startswith(f"{path}:1:1: error[PD0102]: ")


@pytest.mark.parametrize("text", ['spec s {\n  x = "abc', 'spec s {\n  x = "abc\\', '"'], ids=["open", "escape", "quote"])
def test_unterminated_string_at_eof(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    path = write(tmp_path, text)
    check_api(path, "PD0104")
    _, err = check_cli(path, capsys)
    assert "error[PD0104]: unterminated string" in err.splitlines()[0]


# ---- binary garbage ---------------------------------------------------------------------------------


GARBAGE = [
    bytes(range(256)),  # NUL first, invalid UTF-8 from 0x80
    b"spec s {\x00}\n",  # valid UTF-8 holding a NUL
    b"spec s {\n  train { steps = 1\xff0 }\n}\n",  # one invalid byte in an otherwise valid file
    b"\xef\xbb\xbfspec s {}\n",  # a UTF-8 byte-order mark
    b"\xff\xfes\x00p\x00e\x00c\x00",  # UTF-16
    b"\xc3",  # truncated multi-byte sequence at EOF
    *(random.Random(seed).randbytes(4096) for seed in range(4)),
    *(bytes(random.Random(seed).choice(b"\x00{}[]()=,\"#\n ab1.") for _ in range(4096)) for seed in range(4)),
]


@pytest.mark.parametrize("data", GARBAGE, ids=range(len(GARBAGE)))
def test_binary_garbage(tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes) -> None:
    path = write(tmp_path, data)
    check_api(path)
    check_cli(path, capsys)
    assert main(["fmt", "--check", str(path)]) in (0, 2)  # never 1, the internal-error exit
    assert len(capsys.readouterr().err) < MAX_OUTPUT


def test_invalid_utf8_points_at_the_byte(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GARBAGE[2])
    check_api(path, "PD0001")
    _, err = check_cli(path, capsys)
    assert err.startswith(f"{path}:2:20: error[PD0001]: ")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_random_bytes(data: bytes) -> None:
    fd, name = tempfile.mkstemp(suffix=".pd")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        check_api(Path(name))
    finally:
        os.unlink(name)


# ---- odd paths and the file-size limit -----------------------------------------------------------------


def test_unreadable_paths_are_diagnostics(tmp_path: Path) -> None:
    for path in ("no\x00such.pd", "x" * 5000 + ".pd", str(tmp_path)):  # a NUL byte raised ValueError
        [diagnostic] = check_file(path).diagnostics
        assert diagnostic.code == "PD0001"


def test_load_spec_raises_only_spec_error() -> None:
    for text in ("a = 1\n" * 1000, "x" * 5000, "a\x00b"):  # text too long to stat as a path raised OSError
        with pytest.raises(SpecError):
            load_spec(text)


def test_a_file_over_the_size_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, b"#" * (MAX_FILE_BYTES + 1))
    check_api(path, "PD0001")
    _, err = check_cli(path, capsys)
    assert "error[PD0001]: spec file is 16.0 MiB; the limit is 16 MiB" in err


# ---- big files -------------------------------------------------------------------------------------


def _padded_with_comments(size: int) -> str:
    """A valid spec with `size` bytes of comment lines inside it, before `train`."""
    line = "  # " + "padding " * 12 + "\n"
    return VALID.replace("  train {", line * (size // len(line)) + "  train {")


def test_5mb_of_comments_is_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every comment line goes through the lexer callback and the trivia pass (linear: a
    filter over all pending comments per item was quadratic)."""
    text = _padded_with_comments(5 * MB)
    path = write(tmp_path, text)
    assert path.stat().st_size >= 5 * MB
    check_api(path)
    out, _ = check_cli(path, capsys, expected_rc=0)
    assert out.startswith("ok: 1 spec checked")


def _many_shard_rules(size: int) -> str:
    """A valid spec of `size` bytes: thousands of commented shard rules, the last a catch-all."""
    rules = []
    total, i = 0, 0
    while total < size:
        rules.append(f"    x{i}.layers[0..3].{{a, b}}_proj = [dp, _]  # rule {i}\n")
        total += len(rules[-1])
        i += 1
    return VALID.replace("  checkpoint {", "  mesh { dp = 1 }\n  shard {\n" + "".join(rules) +
                         "    ** = replicated\n  }\n  checkpoint {")


def test_many_commented_items_are_linear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """250 kB of commented shard rules (4k items) through the whole check: the trivia pass
    filtered every pending comment per item (quadratic: 20k commented items took 13 s)."""
    path = write(tmp_path, _many_shard_rules(MB // 4))
    check_api(path)
    check_cli(path, capsys, expected_rc=0)


@pytest.mark.slow
def test_5mb_of_items(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """5 MB of tokens (84k commented shard rules, 670k tokens): lark's LALR parse dominates (see
    benchmarks/check_speed.py for the time); slow, so not in the default run."""
    path = write(tmp_path, _many_shard_rules(5 * MB))
    assert path.stat().st_size >= 5 * MB
    check_api(path)
    check_cli(path, capsys, expected_rc=0)


# ---- one 2 MB line -----------------------------------------------------------------------------------

LONG = 2 * MB


@pytest.mark.parametrize("text, code", [
    ('spec s {\n  x = "' + "a" * LONG + '"\n}\n', "PD0202"),  # the error is at the start of the line
    ('spec s {\n  target tms { weights = "' + "a" * LONG + '" @ }\n}\n', "PD0101"),  # ... at its end
    ('spec s {\n  x = "' + "a" * LONG + "\n}\n", "PD0104"),  # a 2 MB unterminated string: 2M carets before
    ("spec s { # " + "a" * LONG + "\n}\n", "PD0205"),  # a 2 MB comment, then a spec missing its blocks
    ("spec s {" + " " * LONG + "@}\n", "PD0101"),  # 2 MB of blanks, then a stray character
    # one 2 MB token that the message quotes (was echoed whole in the summary and help)
    ("spec s { " + "a" * LONG + " = 1 }\n", "PD0202"),
    ("spec s { " + "a." * (LONG // 2) + "b }\n", "PD0102"),
    ("spec s { target " + "a" * LONG + " { } }\n", "PD0210"),
    ("spec s { train { steps = " + "1" * LONG + " } }\n", "PD0106"),
    ("spec s { train { steps = 1" + "k" * LONG + " } }\n", "PD0209"),
    ("spec s { optimize { components { adamw { lr = " + "f" * LONG + "(1) } } } }\n", "PD0214"),
], ids=["error-at-start", "error-at-end", "unterminated-string", "comment", "blanks",
        "key", "pattern-key", "label", "number", "unit", "call"])
def test_a_2mb_line_is_not_echoed(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, code: str) -> None:
    path = write(tmp_path, text)
    check_api(path)
    _, err = check_cli(path, capsys)
    assert f"error[{code}]" in err
    assert max(len(line) for line in err.splitlines()) < 1000  # a path and a clipped message


@pytest.mark.parametrize("data", [
    ("spec s { " + "a" * LONG + " = 1 }\n").encode(), ('spec s {\n  x = "' + "a" * LONG).encode(),
    b"{" * 10_000, GARBAGE[0],
], ids=["key", "unterminated-string", "nesting", "garbage"])
def test_json_output_is_bounded_too(tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes) -> None:
    path = write(tmp_path, data)
    assert main(["check", "--format", "json", str(path)]) == 2
    out = capsys.readouterr().out
    assert json.loads(out)["ok"] is False
    assert len(out) < MAX_OUTPUT


@pytest.mark.slow
def test_a_2mb_line_of_tokens(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One million tokens on one line, then a stray character (about 20 s in lark)."""
    path = write(tmp_path, "spec s { " + "a = 1 " * (LONG // 6) + "@ }\n")
    _, err = check_cli(path, capsys)
    assert f"{path}:1:{LONG // 6 * 6 + 10}: error[PD0101]: " in err


# ---- nesting --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "{" * 10_000, "x = " + "[" * 10_000, "x = f" + "(" * 10_000,  # unclosed
    "a " * 10_000 + "{" * 10_000 + "}" * 10_000,  # closed, but still too deep
    "x = " + "[" * 10_000 + "]" * 10_000,
    "x = " + "f(" * 10_000 + ")" * 10_000,
    "spec s {" + "a {" * 10_000 + "}" * 10_001,
], ids=["braces", "brackets", "parens", "closed-braces", "closed-brackets", "closed-calls", "blocks"])
def test_10000_deep_nesting(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    path = write(tmp_path, text)
    check_api(path, "PD0002")
    _, err = check_cli(path, capsys)
    assert "error[PD0002]: brackets nested more than" in err.splitlines()[0]


@pytest.mark.parametrize("text", [
    "spec s {" + "a {" * (MAX_DEPTH - 1) + "}" * MAX_DEPTH,  # blocks exactly at the limit
    "spec s { x = " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + " }",
    "spec s { x = " + "f(" * (MAX_DEPTH - 1) + ")" * (MAX_DEPTH - 1) + " }",
    'spec s { x = "' + "{[(" * 10_000 + '" }  # ' + "{" * 10_000,  # brackets in strings and comments do not count
], ids=["blocks", "lists", "calls", "quoted"])
def test_nesting_at_the_limit_parses_and_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    source, diagnostics = parse_text(text, "deep.pd")
    assert source is not None and not diagnostics
    formatted = format_spec(source)
    again, more = parse_text(formatted, "deep.pd")
    assert again is not None and not more and format_spec(again) == formatted
    path = write(tmp_path, text)
    check_api(path)
    check_cli(path, capsys)  # a spec missing its blocks: exit 2, but a diagnostic, not a crash


# ---- a grammar limitation, pinned only as "a diagnostic, not a crash" ---------------------------------


def test_a_unit_named_key_after_a_number(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """UNIT (priority 2) may follow NUMBER across a line break, so a key spelled like a size
    unit on the line after a number is lexed as that number's unit and the `=` after it is
    a syntax error. No registry key is spelled so; the grammar is left as it is."""
    path = write(tmp_path, "spec s {\n  a = 1\n  GiB = 2\n}\n")
    _, err = check_cli(path, capsys)
    assert err.startswith(f"{path}:3:")
