"""The generated docs are committed and current: regenerate with `python -m pdc.docs`."""

from __future__ import annotations

from pdc.docs import diagnostics_md, language_md

from conftest import REPO


def test_language_reference_is_current() -> None:
    assert (REPO / "docs" / "language.md").read_text() == language_md(), "run `python -m pdc.docs`"


def test_diagnostics_index_is_current() -> None:
    assert (REPO / "docs" / "diagnostics.md").read_text() == diagnostics_md(REPO / "tests" / "golden"), \
        "run `python -m pdc.docs`"


def test_every_registry_key_is_documented() -> None:
    from pdc.registry import SPEC

    text = (REPO / "docs" / "language.md").read_text()
    for _, schema in SPEC.walk():
        for key in schema.key_names():
            if key != "fn":
                assert f"| `{key}` |" in text
