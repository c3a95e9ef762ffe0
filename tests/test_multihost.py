"""Multi-host: two local processes (jax.distributed, gloo CPU collectives) train
tiny_llama for a few steps and checkpoint; one process with 8 fake devices resumes the
global checkpoint and reaches the same loss as an uninterrupted single-process run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, write_with_random_weights

TINY = (REPO / "specs" / "tiny_llama.pd").read_text()


def spec_with_weights(tmp: Path) -> Path:
    """tiny_llama with random frozen weights saved in HF format (no pretraining), short sequences."""
    start = TINY.index("    pretrain {")
    end = TINY.index("    }\n", start) + len("    }\n")
    text = TINY[:start] + f'    weights = "{tmp / "weights"}"\n' + TINY[end:]
    text = text.replace("seq_len = 128\n    batch = 16", "seq_len = 16\n    batch = 16")
    text = text.replace("log { every = 50 }", "log { every = 1 }").replace("checkpoint { every = 500 keep = 2 }",
                                                                         "checkpoint { every = 2 keep = 5 }")
    return write_with_random_weights(text, tmp)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def pdc(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return subprocess.Popen([sys.executable, "-m", "pdc.cli", *args], env={**clean, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def losses(run: Path) -> dict[int, float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss/total"] for r in map(json.loads, lines)}


@pytest.mark.slow  # ~3.5 min: three tiny_llama compiles in fresh processes; CI runs it in its slow step
def test_two_processes_train_and_one_process_resumes(tmp_path: Path) -> None:
    spec = spec_with_weights(tmp_path)
    port = free_port()
    procs = [pdc("train", str(spec), "--out", str(tmp_path / "multi"), "--max-steps", "4",
                 "--coordinator", f"localhost:{port}", "--num-processes", "2", "--process-id", str(i))
             for i in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
    assert sorted(int(p.name) for p in (tmp_path / "multi" / "ckpts").iterdir() if p.name.isdigit()) == [0, 2, 4]
    resumed = pdc("train", str(spec), "--out", str(tmp_path / "multi"), "--max-steps", "6")
    straight = pdc("train", str(spec), "--out", str(tmp_path / "single"), "--max-steps", "6")
    for proc in (resumed, straight):
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
    multi, single = losses(tmp_path / "multi"), losses(tmp_path / "single")
    assert sorted(multi) == list(range(1, 7))
    for step in range(1, 7):
        assert abs(multi[step] - single[step]) <= 1e-5 * abs(single[step]), (step, multi[step], single[step])
