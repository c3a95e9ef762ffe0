"""`pdc pretrain`: a target trained from its `pretrain` block, cached by the target's
hash, written in the layout the loaders read, and picked up by `pdc train`."""

from __future__ import annotations

from pathlib import Path

import pytest

from pdc.passes import run_passes
from pdc.run.pretrain import pretrained, target_hash
from pdc.run.train import train
from pdc.syntax.load import check_text

from conftest import REPO, spec_text

SPEC = spec_text("tms_5-2-id").replace("steps = 10k\n      batch = 1024",
                                                              "steps = 300\n      batch = 256")


def ir_of(text: str, directory: Path):
    path = directory / "spec.pd"
    path.write_text(text)
    result = check_text(text, str(path))
    assert result.ok and result.spec is not None
    return run_passes(result.spec)


def test_pretrain_caches_by_target_hash_and_train_uses_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ir = ir_of(SPEC, tmp_path)
    weights = pretrained(ir)
    assert weights.exists() and weights.parent.name.endswith(target_hash(ir))
    stamp = weights.stat().st_mtime_ns
    assert pretrained(ir) == weights and weights.stat().st_mtime_ns == stamp  # reused, not retrained
    assert "steps = 300" in SPEC
    assert "      seed = 6\n" in SPEC  # the pretrain block's seed
    other = ir_of(SPEC.replace("      seed = 6\n", "      seed = 7\n"), tmp_path)
    assert target_hash(other) != target_hash(ir)
    observation_only = ir_of(SPEC.replace("log { every = 200 }", "log { every = 7 }"), tmp_path)
    assert target_hash(observation_only) == target_hash(ir)
    state = train(ir, tmp_path / "run", max_steps=2)
    assert int(state.step) == 2
