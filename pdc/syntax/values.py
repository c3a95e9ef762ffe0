"""AST values → Python values, driven by the registry's type annotations.

Each converter either returns a value or appends one diagnostic and returns `INVALID`,
so one bad key never hides the next. Units are checked here: which units a key takes
follows from its type (`Bytes` → sizes, `Fraction` → `%`, integers → `k`/`M`/`G`).
"""

from __future__ import annotations

import math
import re
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import ValidationError

from pdc.registry.types import CallValue, Schedule, Unit
from pdc.syntax.ast import Call, Ident, ListValue, Number, String, Value
from pdc.syntax.diagnostics import Diagnostic
from pdc.syntax.span import Span
from pdc.syntax.suggest import did_you_mean, one_of
from pdc.syntax.units import ALL_UNITS, COUNT_UNITS, PERCENT, SIZE_UNITS


class _Invalid:
    def __repr__(self) -> str:
        return "INVALID"


INVALID: Any = _Invalid()


def unwrap(annotation: Any) -> tuple[Any, Unit | None]:
    """`Annotated[int, Unit('bytes')]` → (int, Unit('bytes'))."""
    if get_origin(annotation) is typing.Annotated:
        base, *meta = get_args(annotation)
        return base, next((m for m in meta if isinstance(m, Unit)), None)
    return annotation, None


def field_annotation(model: Any, name: str) -> Any:
    """A model field's annotation with its `Unit` re-attached (pydantic moves a top-level
    `Annotated[...]`'s metadata into `FieldInfo.metadata`)."""
    info = model.model_fields[name]
    unit = next((m for m in info.metadata if isinstance(m, Unit)), None)
    return typing.Annotated[info.annotation, unit] if unit is not None else info.annotation


def union_arms(annotation: Any) -> tuple[Any, ...] | None:
    if get_origin(annotation) in (Union, types.UnionType):
        return get_args(annotation)
    return None


def describe(annotation: Any) -> str:
    """How a value of this type is written, for 'expected ...' messages."""
    base, unit = unwrap(annotation)
    if (arms := union_arms(base)) is not None:
        return " or ".join(describe(a) for a in arms if a is not type(None))
    if unit is not None:
        return {"bytes": "a size like `80 GiB`", "fraction": "a fraction like `10%` or `0.1`",
                "path": "a path string like `\"targets/x.safetensors\"`", "count": "an integer like `10k`",
                "site": "a site path like `linear1`"}[unit.kind]
    if get_origin(base) is Literal:
        return "one of " + one_of(get_args(base))
    if get_origin(base) is list:
        return f"a list of {_plural(get_args(base)[0])}"
    if get_origin(base) is tuple:
        return f"a list of {len(get_args(base))} {_plural(get_args(base)[0])}"
    if isinstance(base, type) and issubclass(base, Schedule):
        return "a number or a schedule like `cosine(1e-3, final = 0.1)`"
    if isinstance(base, type) and issubclass(base, CallValue):
        return f"`{base.call_names[0]}({', '.join(base.positional)})`"
    return {int: "an integer", float: "a number", bool: "`true` or `false`", str: "a string"}.get(base, str(base))


def _plural(annotation: Any) -> str:
    text = describe(annotation)
    return {"an integer": "integers", "a number": "numbers"}.get(text, f"values ({text})")


def found(value: Value) -> str:
    if isinstance(value, Number):
        return f"`{value.text}{value.unit}`"
    if isinstance(value, String):
        return "a string"
    if isinstance(value, Ident):
        return f"`{value.name}`"
    if isinstance(value, ListValue):
        return "a list"
    return f"`{value.name}(...)`"


class Converter:
    """Converts values for one file, collecting diagnostics."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics

    def error(self, code: str, summary: str, span: Span, label: str = "", *help_: str) -> Any:
        self.diagnostics.append(Diagnostic(code, summary, span, label, help=tuple(help_)))
        return INVALID

    def mismatch(self, what: str, annotation: Any, value: Value) -> Any:
        wanted = describe(annotation)
        if get_origin(unwrap(annotation)[0]) in (list, tuple) and not isinstance(value, ListValue):
            return self.error("PD0206", f"`{what}` expects {wanted}, found {found(value)}", value.span,
                              "expected a list", f"write a list, even of one item: `{what} = [{_source(value)}]`")
        unquoted = value.value if isinstance(value, String) and re.fullmatch(r"[A-Za-z0-9_.+-]+", value.value) else None
        return self.error("PD0206", f"`{what}` expects {wanted}, found {found(value)}", value.span, f"expected {wanted}",
                          *([f"write it without quotes: `{what} = {unquoted}`"] if unquoted else []))

    def convert(self, what: str, annotation: Any, value: Value) -> Any:
        base, unit = unwrap(annotation)
        if (arms := union_arms(base)) is not None:
            return self._union(what, annotation, arms, value)
        if isinstance(base, type) and issubclass(base, CallValue):
            return self._call_value(what, base, value)
        if get_origin(base) is Literal:
            return self._literal(what, base, value)
        if get_origin(base) in (list, tuple):
            return self._sequence(what, base, value)
        if base is bool:
            if isinstance(value, Ident) and value.name in ("true", "false"):
                return value.name == "true"
            return self.mismatch(what, annotation, value)
        if base is str and unit is not None and unit.kind == "site":
            return value.name if isinstance(value, Ident) else self.mismatch(what, annotation, value)
        if base is str:
            return value.value if isinstance(value, String) else self.mismatch(what, annotation, value)
        if base in (int, float):
            return self._number(what, annotation, base, unit, value)
        return self.mismatch(what, annotation, value)

    def _union(self, what: str, annotation: Any, arms: tuple[Any, ...], value: Value) -> Any:
        if type(None) in arms and isinstance(value, Ident) and value.name == "none":
            return None
        candidates = [arm for arm in arms if arm is not type(None) and _accepts_kind(arm, value)]
        if isinstance(value, Number):
            candidates.sort(key=lambda arm: _number_fit(arm, value))
        if candidates and get_origin(unwrap(candidates[0])[0]) is Literal:
            calls = [describe(arm) for arm in arms if isinstance(arm, type) and issubclass(arm, CallValue)]
            return self._literal(what, candidates[0], value, calls)
        if candidates:
            return self.convert(what, candidates[0], value)
        return self.mismatch(what, annotation, value)

    def _literal(self, what: str, base: Any, value: Value, calls: list[str] | None = None) -> Any:
        choices = get_args(base)
        if not isinstance(value, Ident):
            return self.mismatch(what, base, value)
        if value.name in choices:
            return value.name
        options = [f"`{c}`" for c in choices] + list(calls or ())
        wanted = f"one of {one_of(choices)}" if not calls else ", ".join(options[:-1]) + " or " + options[-1]
        return self.error("PD0208", f"unknown value `{value.name}` for `{what}`{did_you_mean(value.name, choices)}",
                          value.span, "unknown value", f"`{what}` is {wanted}")

    def _sequence(self, what: str, base: Any, value: Value) -> Any:
        if not isinstance(value, ListValue):
            return self.mismatch(what, base, value)
        args = get_args(base)
        if get_origin(base) is tuple and len(value.items) != len(args):
            return self.error("PD0217", f"`{what}` expects a list of {len(args)} values, found {len(value.items)}",
                              value.span, f"expected {len(args)} values")
        element = args[0]
        items = [self.convert(what, element, item) for item in value.items]
        if any(item is INVALID for item in items):
            return INVALID
        return tuple(items) if get_origin(base) is tuple else items

    def _number(self, what: str, annotation: Any, base: type, unit: Unit | None, value: Value) -> Any:
        if not isinstance(value, Number):
            return self.mismatch(what, annotation, value)
        scale = self._unit_scale(what, unit, value)
        if scale is INVALID:
            return INVALID
        number = float(value.text) * scale
        if not math.isfinite(number):  # `1e300 TB`: finite digits, infinite with the unit
            return self.error("PD0207", f"`{what}` is out of range, found {found(value)}", value.span, "too large")
        if base is int:
            if not (value.is_integral_text or value.unit) or number != int(number):
                return self.mismatch(what, annotation, value)
            return int(value.text) * int(scale) if value.is_integral_text and scale == int(scale) else int(number)
        return number

    def _unit_scale(self, what: str, unit: Unit | None, value: Number) -> Any:
        u = value.unit
        kind = unit.kind if unit else None
        if u and u not in ALL_UNITS:
            return self.error("PD0209", f"unknown unit `{u}`{did_you_mean(u, ALL_UNITS)}", value.span, "unknown unit",
                              f"units: {', '.join(ALL_UNITS)}")
        if kind == "bytes":
            if u in SIZE_UNITS:
                return SIZE_UNITS[u]
            return self.error("PD0209", f"`{what}` is a size and needs a unit like `GiB`", value.span,
                              "missing size unit" if not u else f"`{u}` is not a size unit", f"write e.g. `{value.text} GiB`")
        if u == "":
            return 1
        if u == PERCENT and kind == "fraction":
            return 0.01
        if u in COUNT_UNITS and kind != "fraction":
            return COUNT_UNITS[u]
        return self.error("PD0209", f"unit `{u}` does not apply to `{what}`", value.span, "unit not allowed here",
                          f"`{what}` expects {describe(unit_annotation(kind))}")

    def _call_value(self, what: str, model: type[CallValue], value: Value) -> Any:
        if isinstance(value, Number) and issubclass(model, Schedule):
            number = self.convert(what, float, value)
            return INVALID if number is INVALID else model.constant_of(number)
        if not isinstance(value, Call):
            return self.mismatch(what, model, value)
        if value.name not in model.call_names:
            return self.error("PD0214", f"unknown function `{value.name}` for `{what}`"
                              f"{did_you_mean(value.name, model.call_names)}", value.name_span, "unknown function",
                              f"`{what}` takes {one_of(model.call_names)}")
        fields = self._call_fields(what, model, value)
        if fields is INVALID:
            return INVALID
        values = {"fn": value.name} | {name: converted for name, (converted, _) in fields.items()}
        return self.build(model, values, {name: span for name, (_, span) in fields.items()}, value.span)

    def _call_fields(self, what: str, model: type[CallValue], call: Call) -> Any:
        if len(call.args) > len(model.positional):
            extra = call.args[len(model.positional)]
            named_only = [f for f in model.model_fields if f != "fn" and f not in model.positional]
            return self.error("PD0214", f"`{call.name}` takes at most {len(model.positional)} positional "
                              f"argument{'s' if len(model.positional) != 1 else ''}", extra.span, "extra argument",
                              f"`{call.name}({', '.join(model.positional)})`; give the others by name: "
                              f"{one_of(f'{n} = ...' for n in named_only)}")
        named: dict[str, tuple[Value, Span]] = {n: (a, a.span) for n, a in zip(model.positional, call.args)}
        allowed = [f for f in model.model_fields if f != "fn"]
        for kwarg in call.kwargs:
            name_span = kwarg.span.shifted(0, len(kwarg.name))
            if kwarg.name not in allowed:
                return self.error("PD0214", f"unknown argument `{kwarg.name}` of `{call.name}`"
                                  f"{did_you_mean(kwarg.name, allowed)}", name_span, "unknown argument",
                                  f"arguments: {one_of(allowed)}")
            if kwarg.name in named:
                positional = kwarg.name in model.positional[:len(call.args)]
                return self.error("PD0214", f"argument `{kwarg.name}` of `{call.name}` given twice", name_span,
                                  "given again", *([f"`{kwarg.name}` is already set by position"] if positional else []))
            named[kwarg.name] = (kwarg.value, kwarg.value.span)
        missing = [f for f, info in model.model_fields.items() if f != "fn" and info.is_required() and f not in named]
        if missing:
            return self.error("PD0214", f"`{call.name}` needs `{missing[0]}`", call.span, f"missing `{missing[0]}`")
        out = {}
        for name, (arg, span) in named.items():
            converted = self.convert(name, field_annotation(model, name), arg)
            if converted is INVALID:
                return INVALID
            out[name] = (converted, span)
        return out

    def build(self, model: Any, values: dict[str, Any], spans: dict[str, Span], span: Span) -> Any:
        """Instantiate a registry model; constraint violations become PD0207 at the key's span."""
        try:
            return model.model_validate(values)
        except ValidationError as error:
            for detail in error.errors():
                name = str(detail["loc"][0]) if detail["loc"] else ""
                self.error("PD0207", f"`{name}` {_constraint_text(detail)}", spans.get(name, span), "out of range")
            return INVALID


def _source(value: Value) -> str:
    """A short value as it would be written (for `write ...` help)."""
    if isinstance(value, Number):
        return value.text + (" " + value.unit if value.unit in SIZE_UNITS else value.unit)
    if isinstance(value, String):
        return '"' + value.value + '"'
    return value.name if isinstance(value, Ident) else "..."


def unit_annotation(kind: str | None) -> Any:
    from pdc.registry.types import Bytes, Fraction, Steps

    return {"bytes": Bytes, "fraction": Fraction, "count": Steps}.get(kind or "", float)


def _accepts_kind(annotation: Any, value: Value) -> bool:
    """Whether a union arm is the one meant by this kind of value."""
    base, unit = unwrap(annotation)
    if isinstance(base, type) and issubclass(base, Schedule):
        return isinstance(value, (Call, Number))
    if isinstance(base, type) and issubclass(base, CallValue):
        return isinstance(value, Call)
    if get_origin(base) is Literal or base is bool:
        return isinstance(value, Ident)
    if get_origin(base) in (list, tuple):
        return isinstance(value, ListValue)
    if base is str:
        return isinstance(value, Ident) if unit is not None and unit.kind == "site" else isinstance(value, String)
    return isinstance(value, Number)


def _number_fit(annotation: Any, value: Number) -> int:
    """Rank of a numeric union arm for this literal (lower fits better): `2.5%` is a
    fraction, `500` a step count, `80 GiB` a size."""
    base, unit = unwrap(annotation)
    kind = unit.kind if unit else None
    if value.unit in SIZE_UNITS:
        return 0 if kind == "bytes" else 1
    if value.unit == PERCENT:
        return 0 if kind == "fraction" else 1
    if value.is_integral_text:
        return 0 if base is int else 1
    return 0 if base is float else 1


_BOUNDS = {"greater_than_equal": ("≥", "ge"), "greater_than": (">", "gt"), "less_than_equal": ("≤", "le"),
           "less_than": ("<", "lt")}


def _constraint_text(detail: Any) -> str:
    kind = detail.get("type", "")
    if kind in _BOUNDS:
        symbol, ctx_key = _BOUNDS[kind]
        return f"must be {symbol} {detail.get('ctx', {}).get(ctx_key)}, found {detail.get('input')}"
    return f"is invalid: {detail.get('msg', kind)}"
