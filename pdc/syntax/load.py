"""Front-end entry points: text or file → checked `Spec` plus diagnostics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pdc.syntax.checked import Spec
from pdc.syntax.diagnostics import Diagnostic, SpecError, has_errors, sorted_diagnostics
from pdc.syntax.parse import parse_text, read_source
from pdc.syntax.validate import validate


@dataclass(frozen=True)
class CheckResult:
    path: str
    text: str | None
    spec: Spec | None
    diagnostics: list[Diagnostic]

    @property
    def ok(self) -> bool:
        return self.spec is not None and not has_errors(self.diagnostics)


def check_text(text: str, path: str = "<string>") -> CheckResult:
    """Parse and validate spec text; every problem is a diagnostic, nothing raises."""
    source, diagnostics = parse_text(text, path)
    spec = None
    if source is not None and not has_errors(diagnostics):
        spec, more = validate(source)
        diagnostics = diagnostics + more
    return CheckResult(path, text, spec, sorted_diagnostics(diagnostics))


def check_file(path: str | Path) -> CheckResult:
    text, diagnostics = read_source(str(path))
    if text is None:
        return CheckResult(str(path), None, None, diagnostics)
    return check_text(text, str(path))


def load_spec(path_or_text: str | Path) -> Spec:
    """The checked spec of a file path or of spec text; raises `SpecError` on problems."""
    is_path = isinstance(path_or_text, Path) or ("{" not in path_or_text and Path(path_or_text).exists())
    result = check_file(path_or_text) if is_path else check_text(str(path_or_text))
    if not result.ok or result.spec is None:
        raise SpecError(result.diagnostics, {result.path: result.text or ""})
    return result.spec
