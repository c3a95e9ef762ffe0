"""The optional Weights & Biases sink (`log { wandb { ... } }`): observation only (neither hash
moves), PD0440 when the block is used without the package, and — when wandb is installed —
an offline run whose wandb record holds the run's hashes, resolved spec and metrics.

The default CI line does not install the `wandb` extra, so the offline-run test skips there
(`pip install 'pdc[wandb]'` runs it); the other tests need no wandb.
"""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path
from typing import Any

import pytest

from conftest import shrunk_toy_spec

WANDB = 'wandb { project = "pdc-test" name = "toy" group = "g" tags = ["a", "b"] mode = offline }'
TOY = shrunk_toy_spec("tms_5-2", batch=64, warmup=2, checkpoint=2, keep=1, eval_every=2)


def with_wandb(text: str, block: str = WANDB) -> str:
    return text.replace("log { every = 1 }", f"log {{\n    every = 1\n    tensorboard = false\n    {block}\n  }}")


def write(tmp: Path, text: str) -> Path:
    spec = tmp / "spec.pd"
    spec.write_text(text)
    return spec


def test_the_wandb_block_changes_neither_hash(tmp_path: Path) -> None:
    from pdc.passes import check

    plain = check(write(tmp_path, TOY))
    logged = check(write(tmp_path, with_wandb(TOY)))
    assert logged.ok, [d.summary for d in logged.diagnostics]
    for name in ("decomposition_hash", "runtime_hash", "program_hash"):
        assert logged.ir.facts[name] == plain.ir.facts[name], name
    keys = logged.ir.options("log.wandb")
    assert (keys.project, keys.name, keys.group, keys.tags, keys.mode) == ("pdc-test", "toy", "g", ["a", "b"], "offline")
    assert plain.ir.options("log.wandb") is None


def test_without_wandb_installed_the_block_is_pd0440(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pdc.passes import check

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    spec = write(tmp_path, with_wandb(TOY))
    checked = check(spec, inputs=True)
    assert [(d.code, d.severity.value) for d in checked.diagnostics] == [("PD0440", "warning")]
    assert "pdc[wandb]" in checked.diagnostics[0].help[0]
    required = check(spec, inputs="required")
    assert [(d.code, d.severity.value) for d in required.diagnostics] == [("PD0440", "error")]
    line = next(i for i, text in enumerate(spec.read_text().splitlines(), 1) if "wandb {" in text)
    assert required.diagnostics[0].span.line == line
    disabled = check(write(tmp_path, with_wandb(TOY, 'wandb { project = "p" mode = disabled }')), inputs="required")
    assert disabled.ok, "mode = disabled imports nothing"


def wandb_records(run_file: Path) -> list[Any]:
    """The protobuf records of a wandb transaction log (`run-<id>.wandb`): a 7-byte header,
    then LevelDB-log framing (32 KiB blocks; each chunk: crc32 u32, length u16, type u8 —
    1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = run_file.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, parts, out = 7, 32768, b"", []
    while pos + 7 <= len(data):
        room = block - pos % block
        if room < 7:
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            pos += room
            continue
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        parts = chunk if kind in (1, 2) else parts + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(parts)
            out.append(record)
            parts = b""
    return out


@pytest.mark.slow  # ~30 s: a short toy run with a wandb service process; CI installs no wandb extra
def test_an_offline_run_logs_hashes_spec_and_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb", reason="the wandb extra is not installed (pip install 'pdc[wandb]')")
    import pdc

    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_CODE", "true")
    spec = write(tmp_path, with_wandb(TOY))
    pdc.train(spec, tmp_path / "run", overrides=("train.steps=3",))
    files = list((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    records = wandb_records(files[0])
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert (run.project, run.display_name, run.run_group, list(run.tags)) == ("pdc-test", "toy", "g", ["a", "b"])
    config = {item.key: json.loads(item.value_json) for item in run.config.update}["pdc"]
    stored = json.loads((tmp_path / "run" / "run.json").read_text())
    assert config["decomposition_hash"] == stored["decomposition_hash"]
    assert config["runtime_hash"] == stored["runtime_hash"]
    assert config["resolved_spec"] == (tmp_path / "run" / "spec.pd").read_text()
    assert config["overrides"] == stored["overrides"] and config["overrides"][0]["path"] == "train.steps"
    history = [r.history for r in records if r.WhichOneof("record_type") == "history"]
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    by_step: dict[int, dict[str, float]] = {}
    for h in history:
        by_step.setdefault(h.step.num, {}).update(
            {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in h.item})
    for record in logged:
        row = by_step[record["step"]]
        assert row["loss/total"] == pytest.approx(record["loss/total"])
        assert row["weighted/stochastic_recon"] == pytest.approx(record["weighted/stochastic_recon"])
        assert "time" not in row
