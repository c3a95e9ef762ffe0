"""The dry-run's devices and its one program: every device offered has a target config;
the budget takes a GPU's memory from it; a GPU target that cannot be compiled for here is
refused (explicit `--target`) or replaced by a CPU compile whose report says so first
(the budget's device); and the dry-run compiles on exactly the arguments `pdc train`
places its live state, frozen weights and batch on."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import jax
import numpy as np
import pytest

from pdc import devices
from pdc.cli import build_parser, main
from pdc.inspect import dryrun
from pdc.inspect.dryrun import abstract_step
from pdc.ir.nodes import BudgetNode
from pdc.lower.program import lower_program
from pdc.lower.sharding import make_mesh
from pdc.passes import run_passes
from pdc.registry.observe import Device
from pdc.run.rundir import RunDir
from pdc.run.train import Trainer
from pdc.syntax.load import check_text

from conftest import REPO, spec_text
from test_multihost import spec_with_weights

GPUS = ("a100", "b200", "h100_pcie", "h100_sxm", "h200")
TMS = spec_text("tms_5-2")


def ir_of(text: str, path: Path = REPO / "specs" / "x.pd"):  # type: ignore[no-untyped-def]
    result = check_text(text, str(path))
    assert result.ok and result.spec is not None, [d.summary for d in result.diagnostics]
    return run_passes(result.spec)


def test_every_offered_device_has_a_target_config_with_its_kind_and_memory() -> None:
    models = devices.gpu_models()
    assert tuple(sorted(models)) == GPUS
    assert set(get_args(Device)) == set(devices.names()) == {"cpu", *GPUS}
    kinds = {name: (m.description, m.memory) for name, m in models.items()}
    assert kinds["h100_sxm"] == ("NVIDIA H100 80GB HBM3", 84_929_347_584)
    assert kinds["h200"] == ("NVIDIA H200 141GB HBM3e", 151_397_597_184)
    assert kinds["a100"][0] == "NVIDIA A100-SXM4-80GB" and kinds["b200"][0] == "NVIDIA B200"
    compile_ = next(a for a in build_parser()._subparsers._group_actions[0].choices["compile"]._actions  # noqa: SLF001
                    if a.dest == "target")
    assert tuple(compile_.choices) == devices.names()


def test_budget_device_without_memory_takes_the_configs_memory() -> None:
    text = TMS.replace("budget { device = cpu device_memory = 2 GiB }", "budget { device = h200 headroom = 0% }")
    budget = next(p for _, p in ir_of(text).nodes(BudgetNode))
    assert budget.device_memory == devices.memory_of("h200") == 151_397_597_184
    assert budget.limit() == budget.device_memory
    assert budget.limit("a100") == devices.memory_of("a100")  # another GPU brings its own memory
    assert budget.limit("cpu") == budget.device_memory  # the CPU stand-in is held to the spec's device


def _no_gpu_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    """As without the `cuda` extra: the CUDA topology cannot be built."""
    from jax.experimental import topologies

    def unavailable(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Unknown backend cuda")

    monkeypatch.setattr(topologies, "get_topology_desc", unavailable)


@pytest.mark.parametrize("target", GPUS)
def test_an_explicit_gpu_target_without_the_compiler_is_refused(target: str, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    _no_gpu_compiler(monkeypatch)
    code = main(["compile", str(REPO / "specs" / "tms_5-2.pd"), "--target", target])
    err = capsys.readouterr().err
    assert code == 1
    assert f"cannot compile for `{target}`" in err and devices.CUDA_EXTRA in err and "Traceback" not in err


def test_the_budgets_gpu_without_the_compiler_is_a_cpu_approximation_said_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _no_gpu_compiler(monkeypatch)
    spec = tmp_path / "tms.pd"
    spec.write_text(TMS.replace("../targets/", f"{REPO}/targets/")
                    .replace("budget { device = cpu device_memory = 2 GiB }", "budget { device = h100_sxm }"))
    code = main(["compile", str(spec)])
    out = capsys.readouterr().out
    assert code == 0
    first = out.splitlines()[0]
    assert "CPU approximation" in first and devices.CUDA_EXTRA in first
    assert "level cpu" in out.splitlines()[1]


def test_cpu_target_compiles_for_the_cpu_with_a_peak_by_spec_line() -> None:
    report = dryrun.dry_run(ir_of(TMS), target="cpu")
    assert report.level == "cpu" and report.device == "cpu" and not report.approximation
    assert report.peak is not None
    groups = report.peak["groups"]
    assert sum(g["bytes"] for g in groups) == report.peak["bytes"]
    assert all(g["spec_line"].split(":")[-1].isdigit() for g in groups)
    assert {"components", "optimizer.components"} <= {g["group"] for g in groups}


def test_dry_run_arguments_are_the_live_arguments_of_pdc_train(tmp_path: Path) -> None:
    """tiny_llama with bf16 frozen weights on 8 fake devices: every leaf of the dry-run's
    abstract arguments has the shape, dtype and sharding of what `pdc train` places."""
    spec = spec_with_weights(tmp_path)
    tokens = tmp_path / "tokens.npy"
    np.save(tokens, np.random.default_rng(0).integers(0, 256, 4096).astype(np.uint16))
    text = spec.read_text().replace("dtype = f32", "dtype = bf16")
    text = text.replace("data corpus {\n    corpus = python_stdlib", f'data tokens {{\n    path = "{tokens}"')
    spec.write_text(text)
    ir = ir_of(text, spec)
    program = lower_program(ir)
    trainer = Trainer(ir, RunDir(tmp_path / "run"), program, make_mesh(ir))
    params = trainer.params()
    state = trainer.start(trainer.manager(), params)
    batch = trainer.batch(trainer.tokens(), 0)
    _, abstract = abstract_step(program, make_mesh(ir))
    live = (state, params, batch)
    assert jax.tree.structure(abstract) == jax.tree.structure(live)
    leaves = list(zip(jax.tree.leaves(abstract), jax.tree.leaves(live)))
    assert any(a.dtype == jax.numpy.bfloat16 for a, _ in leaves)
    for a, b in leaves:
        assert (a.shape, a.dtype) == (b.shape, b.dtype)
        assert a.sharding.is_equivalent_to(b.sharding, len(a.shape)), (a.sharding, b.sharding)


def test_splitting_the_stacked_layer_axis_is_flagged_at_the_rule_and_the_shipped_spec_is_clean() -> None:
    path = REPO / "specs" / "llama8b_l18.pd"
    shipped = path.read_text()
    assert not ir_of(shipped, path).diagnostics
    split = shipped.replace("target.layers.*               = [_, dp, _]", "target.layers.*               = [dp, _, _]")
    assert split != shipped
    [warning] = ir_of(split, path).diagnostics
    assert warning.code == "PD0326" and warning.severity.value == "warning"
    assert split.splitlines()[warning.span.line - 1].strip().startswith("target.layers.*")
    assert "`target.layers.* = [_, dp, _]`" in warning.help[-1]


def _report(total: int, remat_total: int | None, allow: bool) -> dryrun.DryRun:
    memory = {"argument": 1, "output": 1, "alias": 1, "temp": total - 1, "total": total}
    remat = None if remat_total is None else {**memory, "temp": remat_total - 1, "total": remat_total}
    return dryrun.DryRun("s", "gpu", "h100_sxm", 8, "NVIDIA H100 80GB HBM3", memory, 100, [], [], 1, 8, 0.0,
                         xla_remat=remat, allow_xla_remat=allow)


def test_verdicts_fits_only_with_xla_remat_counts_only_when_the_budget_allows_it() -> None:
    from pdc.inspect.report import render, to_json

    assert (_report(90, None, False).verdict, _report(90, None, False).fits) == ("fits", True)
    assert (_report(120, 130, False).verdict, _report(120, 130, False).fits) == ("does_not_fit", False)
    refused, allowed = _report(120, 95, False), _report(120, 95, True)
    assert refused.verdict == allowed.verdict == "fits_with_xla_remat"
    assert (refused.fits, allowed.fits) == (False, True)
    assert to_json(refused)["verdict"] == "fits_with_xla_remat" and to_json(refused)["schema"] == "pdc.dryrun/2"
    assert "fits only because XLA rematerialised" in render(refused).splitlines()[-1]
    assert "not counted as fitting" in render(refused).splitlines()[-1]


@pytest.mark.slow  # ~1 min: a tied tiny Llama step compiled and its HLO read
def test_a_tied_head_compiles_without_copies_of_the_embedding() -> None:
    """Issue 33: the tied LM head reads the embedding as stored. In the dry-run's compiled step
    of a tied tiny Llama (vocabulary 4000, distinct from every other size), no instruction
    makes a `[vocab, hidden]` or `[hidden, vocab]` array — no transpose, copy or fusion of the
    embedding — besides the parameter and its aliases (with `embed.T` as the head there were
    a transpose, two copies and two fusions of `[hidden, vocab]`)."""
    from pdc import api
    from pdc.inspect import hlo

    result = api.check(REPO / "specs" / "tiny_llama.pd", ["target.vocab=4000", "target.tied_embeddings=true",
                                                          "mesh.dp=1", "mesh.tp=1", "data.seq_len=32"])
    assert result.ok and result.ir is not None, [d.summary for d in result.diagnostics]
    assert "target.lm_head" not in {t.path for t in result.ir.facts["target"].tensors}
    report = dryrun.dry_run(result.ir, target="cpu")  # ~40 s of CPU time: one compile of a small step
    sizes = {(4000, 64), (64, 4000)}
    made = [(i.opcode, i.shape_text()) for i in hlo.parse(report.hlo_text)  # single arrays: tuples only alias
            if len(i.shapes) == 1 and i.shapes[0][1] in sizes
            and i.opcode not in ("parameter", "get-tuple-element", "bitcast")]
    assert made == [], made
    assert not any(b["shape"].split("[")[1].rstrip("]") in ("4000,64", "64,4000") for b in report.largest)
