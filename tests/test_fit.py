"""`pdc fit`: the search over mesh split, remat and divergence chunk — order, pruning by the
monotone knobs, the cache keyed by program hash, the time budget, the table with its
`--set` lines and `--write` — on a fake memory model (no XLA), then once for real on the
TMS spec with the CPU compiler."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import jax  # noqa: F401 — JAX starts with conftest's 8 host devices, before a CLI call would size them
import pytest

from pdc.cli import main
from pdc.inspect import fit
from pdc.syntax.format import format_spec
from pdc.passes import check
from pdc.syntax.parse import parse_text

from conftest import REPO, spec_text

TINY = REPO / "specs" / "tiny_llama.pd"
GiB = 2 ** 30


def tiny_space(devices: list[int] | None = None) -> fit.Space:
    result = check(TINY)
    assert result.ir is not None
    return fit.space_of(result.ir, devices)


def fake_memory(c: fit.Candidate, batch: int = 16) -> float:
    """GiB per device: grows with sequences per device, shrinks with remat and chunking, and
    with tp — monotone in each knob as the search assumes."""
    remat = {"off": 4.0, "matmuls": 3.0, "per_layer": 2.0, "whole": 1.5}[c.recon_forwards]
    ci = 1.0 if c.ci == "off" else 0.5
    chunk = 0.5 * (c.divergence_chunk or 512) / 256
    return (batch // c.dp) * (remat + ci + chunk) / c.tp ** 0.5


class FakeCompiler:
    def __init__(self, budget_gib: float) -> None:
        self.budget = budget_gib
        self.compiled: list[fit.Candidate] = []

    def __call__(self, c: fit.Candidate) -> dict[str, Any]:
        self.compiled.append(c)
        total = fake_memory(c)
        return {"total": int(total * GiB), "budget": int(self.budget * GiB), "fits": total <= self.budget,
                "flops": 1e12 * (1 + c.recompute()), "level": "cpu", "approximation": ""}


def search(space: fit.Space, compiler: FakeCompiler, cache: fit.Cache, budget_s: float = 1e9) -> fit.Search:
    return fit.Search(space, compiler, lambda c: fit.program_key(*map(str, (c.sets(), c.devices))), cache, budget_s)


def test_space_reads_the_spec_and_keeps_the_global_batch() -> None:
    space = tiny_space()
    assert space.base == fit.Candidate(8, 2, 4, "per_layer", "off", 256)
    assert space.base.sets()[:2] == ["mesh.dp=2", "mesh.tp=4"]
    assert space.batch == 16 and space.lm and space.chunks == (128, 256)  # seq_len 128: 512 does not apply
    splits = space.splits()
    assert (8, 8, 1) in splits and (8, 1, 8) in splits and all(16 % dp == 0 for _, dp, _ in splits)
    assert "no gradient accumulation" in space.notes[0]
    assert {n for n, _, _ in tiny_space([8, 16]).splits()} == {8, 16}


def test_the_spec_itself_is_tried_first_then_its_neighbours() -> None:
    space = tiny_space()
    ordered = fit.order(space.candidates(), space.base)
    assert ordered[0] == space.base

    def changed(c: fit.Candidate) -> int:
        return sum((c.recon_forwards != space.base.recon_forwards, c.ci != space.base.ci,
                    c.divergence_chunk != space.base.divergence_chunk))

    same_mesh = [c.tp == space.base.tp for c in ordered]
    assert same_mesh == sorted(same_mesh, reverse=True)  # the spec's mesh first, other splits after
    assert [changed(c) for c in ordered[1:6]] == [1] * 5  # 3 other recon, ci, the other chunk
    assert [changed(c) for c in ordered[:same_mesh.count(True)]] == sorted(changed(c) for c in ordered
                                                                           if c.tp == space.base.tp)


def test_pruning_skips_what_cannot_fit_and_what_only_adds_recompute(tmp_path: Path) -> None:
    space = tiny_space([4, 8, 16])
    compiler = FakeCompiler(budget_gib=12.0)
    results = search(space, compiler, fit.Cache(tmp_path)).run()
    by = {r.candidate: r for r in results}
    assert len(results) == len(space.candidates())
    statuses = {r.status for r in results}
    assert {"fits", "does_not_fit", "pruned_memory", "pruned_dominated"} <= statuses
    for r in results:
        truth = fake_memory(r.candidate) <= 12.0
        if r.status == "pruned_memory":
            assert not truth, r  # never prunes a candidate that would have fit
        if r.status in ("fits", "does_not_fit"):
            assert (r.status == "fits") == truth
    assert len(compiler.compiled) < len(results) / 2
    # a fitting `off` dominates the heavier remat of the same mesh and chunk
    off = next(r for r in results if r.fits and r.candidate.recon_forwards == "off")
    heavier = fit.Candidate(off.candidate.devices, off.candidate.dp, off.candidate.tp, "whole", "on",
                            off.candidate.divergence_chunk)
    assert by[heavier].status == "pruned_dominated"


def test_the_cache_answers_a_second_search_without_compiling(tmp_path: Path) -> None:
    space = tiny_space()
    first = FakeCompiler(20.0)
    search(space, first, fit.Cache(tmp_path)).run()
    second = FakeCompiler(20.0)
    results = search(space, second, fit.Cache(tmp_path)).run()
    assert first.compiled and second.compiled == []
    assert all(r.cached for r in results if not r.status.startswith("pruned"))


def test_the_time_budget_stops_the_search(tmp_path: Path) -> None:
    compiler = FakeCompiler(20.0)
    s = search(tiny_space(), compiler, fit.Cache(None), budget_s=0.0)
    s.run()
    assert len(compiler.compiled) == 1 and "time budget" in s.stopped


def test_the_table_lists_fitting_candidates_cheapest_first_with_set_lines(tmp_path: Path) -> None:
    space = tiny_space()
    results = search(space, FakeCompiler(20.0), fit.Cache(None)).run()
    rows = fit.fitting(results)
    text = fit.table(results, space.batch)
    assert len(rows) >= 3
    costs = [r.cost() for r in rows]
    assert costs == sorted(costs)
    for r in rows:
        assert r.candidate.set_line() in text
    top = rows[0].candidate
    assert check(str(TINY), overrides=top.sets()).ok  # the lines are valid `--set`s


def test_write_applies_the_choice_keeping_the_layout(tmp_path: Path) -> None:
    spec = tmp_path / "tiny_llama.pd"
    shutil.copy(TINY, spec)
    choice = fit.Candidate(8, 8, 1, "matmuls", "on", 128)
    text = fit.write_choice(str(spec), choice)
    source, problems = parse_text(text, str(spec))
    assert source is not None and not problems and format_spec(source) == text
    before, after = TINY.read_text().splitlines(), text.splitlines()
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(before) == len(after)
    assert changed == [("  mesh { dp = 2 tp = 4 }", "  mesh { dp = 8 tp = 1 }"),
                       ("  remat { recon_forwards = per_layer ci = off }",
                        "  remat { recon_forwards = matmuls ci = on divergence_chunk = 128 }")]
    assert "# A tiny byte-level Llama" in text  # comments kept


def test_fit_on_tms_compiles_prunes_caches_and_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "tms.pd"
    text = spec_text("tms_5-2").replace('"../targets/', f'"{REPO}/targets/')
    spec.write_text(text)
    cache = tmp_path / "cache"
    assert main(["fit", str(spec), "--cache", str(cache), "--write"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("compiler: CPU (fake host devices)")
    assert "no tp axis" in out  # the spec has no mesh block: one dp axis, no tp added
    assert "--set mesh.dp=1 --set remat.recon_forwards=off --set remat.ci=off\n" in out
    written = spec.read_text()
    assert "remat { recon_forwards = off ci = off }" in written and "mesh { dp = 1 }" in written
    assert list(cache.glob("*.json"))
    assert main(["fit", str(spec), "--cache", str(cache), "--format", "json"]) == 0
    assert '"cached": true' in capsys.readouterr().out
