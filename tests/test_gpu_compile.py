"""The dry-run with the GPU compiler (`pytest -m gpu_compile`; needs the `cuda` extra,
which `.ci/run` installs for this step): every offered GPU compiles for its own device
kind and memory, a spec whose budget names a GPU gets the GPU compiler by default, and
the peak is explained by groups that each name a spec line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pdc import devices
from pdc.cli import main
from pdc.inspect.dryrun import dry_run, gpu_devices
from pdc.passes import run_passes
from pdc.passes import check

from conftest import REPO

pytestmark = pytest.mark.gpu_compile
SPEC_LINE = re.compile(r"^\S+\.pd:\d+$")


@pytest.fixture(scope="module", autouse=True)
def gpu_compiler() -> None:
    devices_, why = gpu_devices("h100_sxm", 1)
    if devices_ is None:
        pytest.fail(f"these tests need the deviceless GPU compiler: {why}")


def ir_of(path: Path):  # type: ignore[no-untyped-def]
    result = check(path)
    assert result.spec is not None and not result.diagnostics, [d.summary for d in result.diagnostics]
    return run_passes(result.spec)


def _dumped_memory(directory: Path) -> int:
    """device_memory_size of the target config XLA compiled with (its own dump)."""
    [config] = directory.glob("*gpu_target_config.pbtxt")
    return int(re.search(r"device_memory_size: (\d+)", config.read_text()).group(1))  # type: ignore[union-attr]


@pytest.mark.parametrize("target", sorted(devices.gpu_models()))
def test_each_offered_gpu_compiles_for_its_own_kind_and_memory(target: str, tmp_path: Path) -> None:
    model = devices.gpu_models()[target]
    report = dry_run(ir_of(REPO / "specs" / "tms_5-2.pd"), target=target, xla_dump=tmp_path)
    assert (report.level, report.device, report.device_kind) == ("gpu", target, model.description)
    assert _dumped_memory(tmp_path) == model.memory
    assert report.memory["total"] > 0 and report.verdict == "fits"


def _compile_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    code = main(["compile", *args, "--format", "json"])
    out = capsys.readouterr().out
    report = json.loads(out)
    assert code == (0 if report["fits"] is not False else 2)
    return report


def _check_peak(report: dict) -> None:
    peak = report["peak"]
    groups = peak["groups"]
    assert sum(g["bytes"] for g in groups) == peak["bytes"]
    # held allocations are counted whole (constants too), so they can exceed argument + output bytes a little
    assert abs(peak["bytes"] + peak["packing_gap"] - report["memory"]["total"]) <= 0.01 * report["memory"]["total"]
    assert all(SPEC_LINE.match(g["spec_line"]) for g in groups), [g["spec_line"] for g in groups]
    assert {"target", "components", "optimizer.components", "ci.params"} <= {g["group"] for g in groups}
    assert any(g["group"].startswith("loss.") for g in groups)


def test_a_gpu_budget_compiles_with_the_gpu_compiler_by_default(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(REPO)
    default = _compile_json(capsys, "specs/llama8b_l18.pd")
    explicit = _compile_json(capsys, "specs/llama8b_l18.pd", "--target", "h100_sxm")
    assert default["schema"] == "pdc.dryrun/2"
    assert (default["level"], default["device"], default["device_kind"]) == ("gpu", "h100_sxm",
                                                                            "NVIDIA H100 80GB HBM3")
    assert default["memory"] == explicit["memory"] and not default["approximation"]
    _check_peak(default)


def test_tiny_llama_peak_groups_name_spec_lines(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(REPO)
    report = _compile_json(capsys, "specs/tiny_llama.pd", "--target", "h100_sxm")
    assert report["level"] == "gpu" and report["budget"] == int(devices.memory_of("h100_sxm") * 0.9)
    _check_peak(report)


def test_a_bf16_step_compiles_cudnn_fused_attention_for_the_gpu(tmp_path: Path) -> None:
    """tiny_llama in bf16 compute: the Llama layers' and the CI transformer's attention
    become cuDNN's fused attention calls when compiled for the GPU, XLA's for the CPU."""
    text = (REPO / "specs" / "tiny_llama.pd").read_text().replace("compute = f32", "compute = bf16")
    spec = REPO / "specs" / "tiny_llama.pd"
    from pdc.syntax.load import check_text

    result = check_text(text, str(spec))
    assert result.spec is not None
    ir = run_passes(result.spec)
    gpu = dry_run(ir, target="h100_sxm")
    assert gpu.level == "gpu" and not [n for n in gpu.notes if "cuDNN" in n]
    assert "__cudnn$fmha" in gpu.hlo_text
    cpu = dry_run(ir, target="cpu")
    assert "__cudnn$fmha" not in cpu.hlo_text
