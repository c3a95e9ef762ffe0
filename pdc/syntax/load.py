"""Front-end entry points: text or file → checked `Spec` plus diagnostics."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from pdc.syntax.checked import Spec
from pdc.syntax.diagnostics import Diagnostic, SpecError, has_errors, sorted_diagnostics
from pdc.syntax.overrides import Override, apply_overrides, override_sources
from pdc.syntax.parse import MAX_FILE_BYTES, parse_text, read_source
from pdc.syntax.validate import validate


@dataclass(frozen=True)
class CheckResult:
    path: str
    text: str | None
    spec: Spec | None
    diagnostics: list[Diagnostic]
    ir: Any = None  # pdc.ir.IR after the passes (`pdc.passes.check`)
    overrides: tuple[Override, ...] = ()  # the `--set` overrides applied before validation
    override_args: tuple[str, ...] = field(default=(), repr=False)

    @property
    def ok(self) -> bool:
        return self.spec is not None and not has_errors(self.diagnostics)

    @property
    def sources(self) -> dict[str, str]:
        """Every text a diagnostic may point into: the file and each `--set` argument."""
        return {self.path: self.text or "", **override_sources(self.override_args)}


def check_text(text: str, path: str = "<string>", overrides: Sequence[str] = ()) -> CheckResult:
    """Parse and validate spec text, with `--set` `overrides` (`path=value`) applied to
    the parsed file first; every problem is a diagnostic, nothing raises."""
    source, diagnostics = parse_text(text, path)
    spec, applied = None, []
    if source is not None and not has_errors(diagnostics) and overrides:
        source, applied, more = apply_overrides(source, overrides)
        diagnostics = diagnostics + more
    if source is not None and not has_errors(diagnostics):
        spec, more = validate(source)
        diagnostics = diagnostics + more
    return CheckResult(path, text, spec, sorted_diagnostics(diagnostics), overrides=tuple(applied),
                       override_args=tuple(overrides))


def check_file(path: str | Path, overrides: Sequence[str] = ()) -> CheckResult:
    """Parse and validate one file (the front end; `pdc.passes.check` runs the IR passes
    on top). `overrides` as in `check_text`."""
    text, diagnostics = read_source(str(path))
    if text is None:
        return CheckResult(str(path), _shown_text(str(path)), None, diagnostics)
    return check_text(text, str(path), overrides)


def _shown_text(path: str) -> str | None:
    """A file that is not UTF-8, decoded leniently so its PD0001 shows the offending line."""
    try:
        data = Path(path).read_bytes() if Path(path).stat().st_size <= MAX_FILE_BYTES else None
    except (OSError, ValueError):
        return None
    return data.decode("utf-8", errors="replace") if data is not None else None


def load_spec(path_or_text: str | Path) -> Spec:
    """The checked spec of a file path or of spec text; raises `SpecError` on problems."""
    is_path = isinstance(path_or_text, Path) or ("{" not in path_or_text and _is_file_name(path_or_text))
    result = check_file(path_or_text) if is_path else check_text(str(path_or_text))
    if not result.ok or result.spec is None:
        raise SpecError(result.diagnostics, {result.path: result.text or ""})
    return result.spec


def _is_file_name(text: str) -> bool:
    try:
        return Path(text).exists()
    except (OSError, ValueError):  # spec text too long to be a file name, or holding a NUL byte
        return False
