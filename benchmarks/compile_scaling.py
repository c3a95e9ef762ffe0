"""Compile time of the train step against depth: tiny_llama at 2, 8 and 32 layers with
every layer's MLP decomposed. Layers are scanned, so the time should stay flat.

    .venv/bin/python benchmarks/compile_scaling.py [--layers 2 8 32] [--devices 8]

Prints one JSON object: seconds to lower and to compile per depth, and t(max)/t(min).
Runs on fake CPU devices; asserts nothing (timings are noisy on a shared machine)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def spec_text(layers: int) -> str:
    text = (REPO / "specs" / "tiny_llama.pd").read_text()
    text = text.replace("    layers = 4\n", f"    layers = {layers}\n")
    return text.replace("layers[1..2].mlp.{gate_proj, up_proj, down_proj}", "layers.*.mlp.{gate_proj, up_proj, down_proj}")


def measure(layers: int) -> dict[str, float]:
    from pdc.inspect.dryrun import abstract_step
    from pdc.lower.program import lower_program
    from pdc.lower.sharding import make_mesh
    from pdc.passes import run_passes
    from pdc.syntax.load import check_text

    result = check_text(spec_text(layers), str(REPO / "specs" / "scaling.pd"))
    assert result.ok and result.spec is not None, [d.summary for d in result.diagnostics]
    ir = run_passes(result.spec)
    assert not ir.diagnostics, [d.summary for d in ir.diagnostics]
    start = time.perf_counter()
    step, args = abstract_step(lower_program(ir), make_mesh(ir))
    lowered = step.lower(*args)
    lowered_at = time.perf_counter()
    lowered.compile()
    done = time.perf_counter()
    return {"layers": layers, "lower_s": round(lowered_at - start, 3), "compile_s": round(done - lowered_at, 3),
            "total_s": round(done - start, 3)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--devices", type=int, default=8)
    args = parser.parse_args()
    from pdc.run.host_devices import request_host_devices

    os.environ["XLA_FLAGS"] = ""
    request_host_devices(args.devices)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    sys.path.insert(0, str(REPO))
    rows = [measure(n) for n in args.layers]
    print(json.dumps({"benchmark": "compile time vs depth (tiny_llama, all MLP sites decomposed)",
                      "env": {"python": platform.python_version(), "jax": jax.__version__,
                              "cpu_count": os.cpu_count(), "devices": args.devices},
                      "runs": rows, "ratio_max_over_min_depth": round(rows[-1]["total_s"] / rows[0]["total_s"], 3)},
                     indent=2))


if __name__ == "__main__":
    main()
