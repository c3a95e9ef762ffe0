"""Fuzzing the model directory a spec names: `config.json` keys and values, and the
safetensors file (tensor names, shapes, dtypes, header bytes, truncation) of a tiny Llama,
mutated from a seeded generator. Every case must end `pdc check` with exit 0, 1 or 2 — and a
coded diagnostic whenever it is not 0 — never a traceback or "internal error". A sample runs
in the default suite; `pytest -m slow` runs 1,200 cases."""

from __future__ import annotations

import json
import random
import shutil
import struct
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from pdc.cli import main

from conftest import REPO

SPEC = """spec fuzz {
  target llama {
    config = "config.json"
    weights = "model.safetensors"
  }
  data corpus { corpus = python_stdlib seq_len = 8 batch = 2 }
  decompose { layers[0].mlp.down_proj { C = 4 } }
  ci global_transformer { d_model = 8 blocks = 1 heads = 2 mlp = 16 }
  loss {
    faithfulness { weight = 1.0 }
    stochastic_recon { weight = 1.0 }
    importance_minimality { weight = 1e-4 p = 1.0 }
  }
  optimize { components { adamw { lr = 1e-3 } } ci { adamw { lr = 1e-3 } } }
  train { steps = 10 }
}
"""
CONFIG: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 16, "hidden_size": 8,
    "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
    "head_dim": 4, "hidden_act": "silu", "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
    "attention_bias": False, "mlp_bias": False,
    "rope_parameters": {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
                        "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
}
CHECKPOINT = REPO / "tests" / "golden" / "_inputs" / "model.safetensors"  # a tiny Llama matching CONFIG
VALUES = [None, -1, 0, 1, 3, 1.5, 1e30, "x", "silu", [], {}, [1, 2], True, False, 2**40, {"rope_type": "yarn"}]
DTYPES = [np.float16, np.int32, np.int8, np.uint8, np.bool_, np.float64]


def mutate_config(r: random.Random, config: dict[str, Any]) -> None:
    target = config["rope_parameters"] if r.random() < 0.3 and isinstance(config.get("rope_parameters"), dict) \
        else config
    key = r.choice(sorted(target) + ["rope_scaling", "rope_theta", "extra_key"])
    if r.random() < 0.3:
        target.pop(key, None)
    else:
        target[key] = r.choice(VALUES)


def mutate_tensors(r: random.Random, tensors: dict[str, np.ndarray]) -> None:
    name = r.choice(sorted(tensors))
    kind = r.randrange(5)
    if kind == 0:
        tensors[name.replace("weight", r.choice(["bias", "weights", "w"]))] = tensors.pop(name)
    elif kind == 1:
        del tensors[name]
    elif kind == 2:
        shape = list(tensors[name].shape)
        shape[r.randrange(len(shape))] += r.choice([-1, 1, 7])
        tensors[name] = np.zeros([max(s, 0) for s in shape], np.float32)
    elif kind == 3:
        tensors[name] = tensors[name].astype(r.choice(DTYPES))
    else:
        tensors[f"model.layers.{r.choice([0, 1, 5])}.mlp.extra.weight"] = np.zeros((2, 2), np.float32)


def mutate_bytes(r: random.Random, path: Path) -> None:
    raw = bytearray(path.read_bytes())
    if len(raw) < 9:
        return
    (length,) = struct.unpack("<Q", raw[:8])
    kind = r.randrange(4) if 8 + length <= len(raw) else r.randrange(0, 3, 2)  # a broken length: 0 or 2
    if kind == 0:
        raw = raw[: r.randrange(max(len(raw), 1))]  # truncated anywhere, the header included
    elif kind == 1:
        for _ in range(r.randint(1, 4)):  # bytes of the JSON header changed
            raw[8 + r.randrange(max(length, 1))] = r.randrange(256)
    elif kind == 2:
        raw[:8] = struct.pack("<Q", r.choice([0, 1, length + 1, len(raw), 2**40]))
    else:
        try:
            header = json.loads(bytes(raw[8:8 + length]))
        except ValueError:  # an earlier mutation broke the header already
            return
        names = [k for k in header if k != "__metadata__"] if isinstance(header, dict) else []
        if not names:
            return
        name = r.choice(names)
        if not isinstance(header[name], dict):
            return
        header[name][r.choice(["dtype", "shape", "data_offsets"])] = r.choice(["I32", "BOOL", [3], [0, 1], "F8"])
        text = json.dumps(header).encode()
        raw = bytearray(struct.pack("<Q", len(text))) + text + raw[8 + length:]
    path.write_bytes(bytes(raw))


def write_case(directory: Path, seed: int) -> None:
    r = random.Random(seed)
    config = json.loads(json.dumps(CONFIG))
    tensors = load_file(str(CHECKPOINT))
    steps: list[Callable[[], None]] = []
    for _ in range(r.randint(1, 3)):
        which = r.randrange(3)
        if which == 0:
            mutate_config(r, config)
        elif which == 1:
            mutate_tensors(r, tensors)
        else:
            steps.append(lambda: mutate_bytes(r, directory / "model.safetensors"))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "spec.pd").write_text(SPEC)
    (directory / "config.json").write_text(json.dumps(config) if r.random() > 0.02 else "{not json")
    save_file(tensors, str(directory / "model.safetensors"))
    for step in steps:
        step()


def run_case(tmp_path: Path, seed: int, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    directory = tmp_path / f"case{seed}"
    write_case(directory, seed)
    capsys.readouterr()
    code = main(["check", str(directory / "spec.pd")])
    err = capsys.readouterr().err
    return code, err


def check_cases(tmp_path: Path, seeds: range, capsys: pytest.CaptureFixture[str]) -> None:
    outcomes = {0: 0, 1: 0, 2: 0}
    for seed in seeds:
        code, err = run_case(tmp_path, seed, capsys)
        assert code in outcomes and "Traceback" not in err and "internal error" not in err, (seed, code, err)
        assert code == 0 or "error[PD" in err, (seed, code, err)
        outcomes[code] += 1
    assert outcomes[1] and outcomes[2], outcomes  # both kinds of mistake were generated


def test_the_unmutated_directory_checks_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "clean"
    directory.mkdir()
    (directory / "spec.pd").write_text(SPEC)
    (directory / "config.json").write_text(json.dumps(CONFIG))
    shutil.copy(CHECKPOINT, directory / "model.safetensors")
    assert main(["check", str(directory / "spec.pd")]) == 0, capsys.readouterr().err


def test_fuzzed_model_directories_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    check_cases(tmp_path, range(150), capsys)


@pytest.mark.slow
def test_fuzzed_model_directories(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    check_cases(tmp_path, range(1000, 2200), capsys)
