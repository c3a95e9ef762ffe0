"""Value types of spec keys, as annotations on the registry's pydantic models.

The annotation says both what Python value a key holds and how it is written:
`Bytes` takes a size unit (`80 GiB`), `Fraction` a percentage or a plain number in
[0, 1], `Steps` an integer with an optional `k`/`M` suffix, `Schedule` a number or a
schedule call. The validator (`pdc.syntax.validate`) dispatches on these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal, Optional, Union

from annotated_types import Ge
from pydantic import BaseModel, ConfigDict, Field


@dataclass(frozen=True)
class Unit:
    """Marks how a number is written: 'bytes' needs a size unit, 'fraction' allows `%`."""

    kind: Literal["bytes", "fraction", "path", "count", "site"]


Bytes = Annotated[int, Unit("bytes")]
Fraction = Annotated[float, Unit("fraction")]
FilePath = Annotated[str, Unit("path")]
SiteName = Annotated[str, Unit("site")]  # a decomposed site's path, written bare: `linear1`, `layers.0.mlp_in`
Steps = Annotated[int, Unit("count")]
PositiveSteps = Annotated[int, Unit("count"), Ge(1)]


class Keys(BaseModel):
    """Base of every block's key model: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


REQUIRED = ...


def key(default: object = REQUIRED, doc: str = "", **constraints: object) -> object:
    """A registry key: its default (omit for required keys), its doc string, and
    pydantic constraints (`ge`, `le`, `gt`, `lt`) checked by the validator."""
    return Field(default, description=doc, **constraints)  # type: ignore[arg-type]


class CallValue(Keys):
    """A value written as a named call, `name(arg, ..., kw = value)`.

    `call_names` lists the accepted names (the chosen one is stored in `fn`),
    `positional` the fields that positional arguments fill, in order."""

    call_names: ClassVar[tuple[str, ...]] = ()
    positional: ClassVar[tuple[str, ...]] = ()
    fn: str = ""


class Schedule(CallValue):
    """A value that may change over training: a number (constant) or a schedule call.

    - `constant(v, warmup = 2.5%)`
    - `linear(start, end)` or `linear(start, final = 0.1)` (`final` is a fraction of start)
    - `cosine(start, final = 0.1, warmup = 0)`; without `end`/`final` the curve ends at 0
    `warmup` is a fraction of the run (`2.5%`, `0.025`) or a number of steps (`500`);
    `start_frac`/`end_frac` bound the ramp (as for p annealing)."""

    call_names: ClassVar[tuple[str, ...]] = ("constant", "linear", "cosine")
    positional: ClassVar[tuple[str, ...]] = ("start", "end")
    start: float = key(doc="value at the start of the curve")
    end: Optional[float] = key(None, doc="absolute value at the end of the curve")
    final: Optional[Fraction] = key(None, doc="value at the end as a fraction of `start`", ge=0.0)
    warmup: Union[Steps, Fraction] = key(0, doc="linear warmup from 0: fraction of the run or steps", ge=0)
    start_frac: Fraction = key(0.0, doc="fraction of the run where the curve starts", ge=0.0, le=1.0)
    end_frac: Fraction = key(1.0, doc="fraction of the run where the curve ends", ge=0.0, le=1.0)

    @classmethod
    def constant_of(cls, value: float) -> Schedule:
        return cls(fn="constant", start=value)

    def end_value(self) -> float:
        if self.fn == "constant":
            return self.start
        if self.end is not None:
            return self.end
        return self.start * (self.final if self.final is not None else 0.0)


class StaticProbability(CallValue):
    """Route each site independently with probability `p` per position."""

    call_names: ClassVar[tuple[str, ...]] = ("static_probability",)
    positional: ClassVar[tuple[str, ...]] = ("p",)
    p: Fraction = key(doc="probability that a site is routed", gt=0.0, le=1.0)


Routing = Union[Literal["all", "uniform_k_subset"], StaticProbability]


class Dense(CallValue):
    """Expect `k` components active on every probe input (a dense CI pattern)."""

    call_names: ClassVar[tuple[str, ...]] = ("dense",)
    positional: ClassVar[tuple[str, ...]] = ("k",)
    k: int = key(doc="number of components expected on every input", ge=1)


CiPattern = Union[Literal["identity"], Dense]
Dtype = Literal["f32", "bf16", "f16"]
Switch = Literal["on", "off"]


def schedule_keys(model: type[Keys]) -> tuple[str, ...]:
    """The keys of `model` whose value may change over training (annotated `Schedule`): read
    off the annotations, so a new scheduled key needs no list kept elsewhere."""
    return tuple(name for name, info in model.model_fields.items()
                 if isinstance(info.annotation, type) and issubclass(info.annotation, Schedule))
