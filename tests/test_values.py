"""Value conversion: units, unions, schedules and calls, against hand-computed values."""

from __future__ import annotations

import pytest

from pdc.registry.types import Schedule
from pdc.syntax.load import check_text

BASE = """spec s {{
  target tms {{ features = 5 hidden = 2 }}
  data sparse_features {{ probability = 0.05 batch = 8 }}
  decompose {{ linear1 {{ C = 4 }} }}
  ci mlp {{ hidden = [4] }}
  loss {{ importance_minimality {{ weight = 1e-3 }} stochastic_recon {{}} }}
  optimize {{ components {{ adamw {{ lr = 1e-3 }} }} ci {{ adamw {{ lr = 1e-3 }} }} }}
  train {{ steps = {steps} }}
  {extra}
}}
"""


def checked(steps: str = "100", extra: str = ""):
    result = check_text(BASE.format(steps=steps, extra=extra), "v.pd")
    assert result.ok, [d.summary for d in result.diagnostics]
    assert result.spec is not None
    return result.spec


@pytest.mark.parametrize("text,value", [("10k", 10_000), ("1M", 1_000_000), ("2_500", 2500), ("1G", 10**9)])
def test_counts(text: str, value: int) -> None:
    assert checked(steps=text).block("train").get("steps") == value


@pytest.mark.parametrize("text,value", [("80 GiB", 80 * 2**30), ("80GiB", 80 * 2**30), ("1.5 TiB", int(1.5 * 2**40)),
                                        ("4 GB", 4 * 10**9), ("512 MiB", 512 * 2**20)])
def test_sizes(text: str, value: int) -> None:
    assert checked(extra=f"budget {{ device_memory = {text} }}").block("budget").get("device_memory") == value


@pytest.mark.parametrize("text,value", [("10%", 0.1), ("0.25", 0.25), ("2.5%", 0.025)])
def test_fractions(text: str, value: float) -> None:
    assert checked(extra=f"budget {{ headroom = {text} }}").block("budget").get("headroom") == pytest.approx(value)


def test_schedules() -> None:
    spec = checked(extra="")
    assert spec.block("optimize").child("ci").child("adamw").get("lr") == Schedule.constant_of(1e-3)
    text = BASE.format(steps="100", extra="").replace(
        "components {{ adamw {{ lr = 1e-3 }} }}".replace("{{", "{").replace("}}", "}"),
        "components { adamw { lr = cosine(1e-3, final = 10%, warmup = 500) } }")
    result = check_text(text, "v.pd")
    assert result.ok and result.spec is not None
    lr = result.spec.block("optimize").child("components").child("adamw").get("lr")
    assert (lr.fn, lr.start, lr.final, lr.warmup) == ("cosine", 1e-3, pytest.approx(0.1), 500)
    assert lr.end_value() == pytest.approx(1e-4)


def test_warmup_fraction_versus_steps() -> None:
    spec = checked(extra="")
    del spec
    frac = check_text(BASE.format(steps="100", extra="").replace("stochastic_recon {}", "persistent_pgd { lr = constant(0.01, warmup = 2.5%) }"), "v.pd")
    steps = check_text(BASE.format(steps="100", extra="").replace("stochastic_recon {}", "persistent_pgd { lr = constant(0.01, warmup = 25) }"), "v.pd")
    assert frac.spec is not None and steps.spec is not None
    assert frac.spec.block("loss").child("persistent_pgd").get("lr").warmup == pytest.approx(0.025)
    assert steps.spec.block("loss").child("persistent_pgd").get("lr").warmup == 25


@pytest.mark.parametrize("extra,code", [
    ("budget { device_memory = 80 }", "PD0209"),
    ("budget { headroom = 10k }", "PD0209"),
    ("budget { headroom = 1.5 }", "PD0207"),
    ("budget { device = h100 }", "PD0208"),
    ("log { every = 2.5 }", "PD0206"),
    ("log { tensorboard = yes }", "PD0206"),
])
def test_value_errors(extra: str, code: str) -> None:
    result = check_text(BASE.format(steps="100", extra=extra), "v.pd")
    assert [d.code for d in result.diagnostics] == [code]
