"""Front-end entry points: text or file → checked `Spec` plus diagnostics."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from pdc.syntax.checked import Spec
from pdc.syntax.diagnostics import Diagnostic, SpecError, has_errors, sorted_diagnostics
from pdc.syntax.family import Resolved, resolve
from pdc.syntax.overrides import Override, override_sources
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
    family: Resolved | None = field(default=None, repr=False)  # imports, params, sweeps (pdc.syntax.family)

    @property
    def ok(self) -> bool:
        return self.spec is not None and not has_errors(self.diagnostics)

    @property
    def sources(self) -> dict[str, str]:
        """Every text a diagnostic may point into: the file, each file it imports and each
        `--set` argument."""
        imported = self.family.sources if self.family is not None else {}
        return {**imported, self.path: self.text or "", **override_sources(self.override_args)}

    @property
    def is_base(self) -> bool:
        """The file holds a `base` (a partial spec): it checks only as far as a base can."""
        return self.family is not None and self.family.is_base


def check_text(text: str, path: str = "<string>", overrides: Sequence[str] = (), point: Sequence[Any] = ()
               ) -> CheckResult:
    """Parse and validate spec text, with its imports and parameters resolved and `--set`
    `overrides` (`path=value`) applied to the merged spec first, after the keys of a sweep
    `point` (its `Assign`s). Every problem is a diagnostic, nothing raises."""
    source, diagnostics = parse_text(text, path)
    spec, family = None, None
    if source is not None and not has_errors(diagnostics):
        family, more = resolve(source, overrides, point)
        source, diagnostics = family.source, diagnostics + more
    if source is not None and not has_errors(diagnostics):
        spec, more = validate(source)
        if family is not None and family.is_base:  # a base leaves keys and blocks to its importers
            spec, more = None, [d for d in more if d.code not in BASE_FORGIVES]
        diagnostics = diagnostics + more
    return CheckResult(path, text, spec, sorted_diagnostics(diagnostics),
                       overrides=family.overrides if family is not None else (), override_args=tuple(overrides),
                       family=family)


BASE_FORGIVES = ("PD0204", "PD0205")  # required keys and blocks: a base may leave them to its importers


def check_file(path: str | Path, overrides: Sequence[str] = (), point: Sequence[Any] = ()) -> CheckResult:
    """Parse and validate one file (the front end; `pdc.passes.check` runs the IR passes
    on top). `overrides` and a sweep `point` as in `check_text`."""
    text, diagnostics = read_source(str(path))
    if text is None:
        return CheckResult(str(path), _shown_text(str(path)), None, diagnostics)
    return check_text(text, str(path), overrides, point)


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
