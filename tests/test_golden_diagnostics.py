"""Golden diagnostics: every `tests/golden/<case>/spec.pd` is a malformed spec (most are a
bundled example with one realistic mistake) and `expected.txt` is exactly what
`pdc check tests/golden/<case>/spec.pd` prints on stderr, run from the repository root,
followed by a line `exit: 2` (`exit: 1` for a case whose errors are all about the input files
the spec names, PD04xx; `exit: 0` for a case that shows a warning alone).

Regenerate after an intended change to a message, then read the diff:

    PDC_UPDATE_GOLDEN=1 .venv/bin/python -m pytest -q tests/test_golden_diagnostics.py
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from pdc.cli import main
from pdc.syntax.codes import CODES

from conftest import REPO

GOLDEN = REPO / "tests" / "golden"
UPDATE = os.environ.get("PDC_UPDATE_GOLDEN") == "1"
EXIT_LINE = re.compile(r"^exit: (\d+)$")
HEADER = re.compile(r"^(?P<path>\S+):(\d+):(\d+): (?:error|warning)\[(?P<code>PD\d{4})\]: ")


def _cases() -> list[str]:
    """Cases with an expected output (all of them, when regenerating)."""
    return sorted(p.parent.name for p in GOLDEN.glob("*/spec.pd") if UPDATE or (p.parent / "expected.txt").exists())


CASES = _cases()
MULTI_ERROR_CASE = "pd0214_multi_llama_review"


def _rel(case: str) -> str:
    return f"tests/golden/{case}/spec.pd"


def _run(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    monkeypatch.chdir(REPO)
    capsys.readouterr()  # drop anything printed before
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _split_expected(text: str) -> tuple[str, int]:
    """expected.txt → (stderr, exit code)."""
    body, _, last = text.rstrip("\n").rpartition("\n")
    match = EXIT_LINE.match(last)
    assert match is not None, "expected.txt must end with a line `exit: N`"
    return body + "\n", int(match.group(1))


def _codes(text: str) -> list[str]:
    return [m.group("code") for line in text.splitlines() if (m := HEADER.match(line))]


def test_there_are_golden_cases() -> None:
    assert len(CASES) >= 45, CASES


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["check", _rel(case)], monkeypatch, capsys)
    expected_file = GOLDEN / case / "expected.txt"
    if UPDATE:
        expected_file.write_text(f"{err}exit: {code}\n")
    expected, expected_code = _split_expected(expected_file.read_text())
    headers = [line for line in err.splitlines() if HEADER.match(line)]
    assert headers, "a malformed spec must produce at least one diagnostic"
    errors = sum(" error[" in line for line in headers)
    warnings = len(headers) - errors
    spec_errors = [line for line in headers if " error[" in line and " error[PD04" not in line]
    # a spec error exits 2, input files alone (PD04xx) 1, a warning alone (PD0326) does not fail the check
    assert code == expected_code == (2 if spec_errors else 1 if errors else 0)
    tail = f", {warnings} warning{'s' if warnings != 1 else ''}" if warnings else ""
    # warnings alone: the `ok` line counts them (issue 33: a warning only above `ok` went unseen)
    assert out == ("" if errors else f"ok{tail}: 1 spec checked\n")
    assert err == expected
    header = re.compile(rf"^{re.escape(_rel(case))}:\d+:\d+: (?:error|warning)\[PD\d{{4}}\]: ")
    for line in headers:
        assert header.match(line), line
    if errors:
        assert err.rstrip("\n").splitlines()[-1] == f"{errors} error{'s' if errors != 1 else ''}{tail}"


@pytest.mark.parametrize("case", CASES)
def test_golden_case_is_named_after_a_code_it_shows(case: str) -> None:
    expected, _ = _split_expected((GOLDEN / case / "expected.txt").read_text())
    prefix = case.split("_", 1)[0].upper()
    assert re.fullmatch(r"PD\d{4}", prefix), f"name golden cases `pdNNNN_what_is_wrong`, not {case!r}"
    assert prefix in _codes(expected)


def test_every_code_has_a_golden_case() -> None:
    # PD07xx (`RUN_CODES`, `pdc migrate`) are about a run directory and a spec together: no spec
    # alone shows them, so they live outside CODES and tests/test_migrate.py makes each one.
    shown = {code for case in CASES for code in _codes((GOLDEN / case / "expected.txt").read_text())}
    assert sorted(set(CODES) - shown) == [], "add a golden case for each of these codes"
    assert shown <= set(CODES), f"codes missing from pdc/syntax/codes.py: {sorted(shown - set(CODES))}"


def test_multi_error_cases_report_every_error_sorted() -> None:
    multi = {case: _codes((GOLDEN / case / "expected.txt").read_text()) for case in CASES if "_multi_" in case}
    assert len(multi) >= 3, multi
    for case, codes in multi.items():
        assert len(codes) >= 3, (case, codes)
        text = (GOLDEN / case / "expected.txt").read_text()
        positions = [(int(m.group(2)), int(m.group(3))) for line in text.splitlines() if (m := HEADER.match(line))]
        assert positions == sorted(positions), case


def test_json_format_matches_text(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["check", "--format", "json", _rel(MULTI_ERROR_CASE)], monkeypatch, capsys)
    assert code == 2 and err == ""
    document = json.loads(out)
    assert document["schema"] == "pdc.diagnostics/1" and document["ok"] is False and document["files_ok"] == []
    diagnostics = document["diagnostics"]
    expected, _ = _split_expected((GOLDEN / MULTI_ERROR_CASE / "expected.txt").read_text())
    assert [d["code"] for d in diagnostics] == _codes(expected)
    assert len(diagnostics) >= 3
    assert all(d["span"]["file"] == _rel(MULTI_ERROR_CASE) for d in diagnostics)
    headers = [line for line in expected.splitlines() if HEADER.match(line)]
    assert [f"{d['span']['file']}:{d['span']['line']}:{d['span']['col']}: error[{d['code']}]: {d['summary']}"
            for d in diagnostics] == headers
