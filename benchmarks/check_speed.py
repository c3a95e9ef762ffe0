"""How fast is `pdc check`? Prints one JSON object; asserts nothing about time.

    .venv/bin/python benchmarks/check_speed.py [--runs 5] [--lines 1000] [--no-5mb]

1. A generated valid spec of about `--lines` lines (the tiny Llama spec stretched from 4 to
   ~115 layers: every site of every layer its own decompose entry, a shard rule per layer,
   and every other block) is checked `--runs` times, each in a fresh `python -m pdc.cli check`
   process, so the times include interpreter start-up and imports, as a user sees them.
2. One more fresh process runs the check in-process and reports whether `jax` got imported
   (`pdc check` promises it never is).
3. In-process phase times for the same file: parse, parse + validate, and the full check
   with the IR passes (the best of three).
4. Two 5 MB files, each checked once in a fresh process: a valid spec padded with comment
   lines, and a valid spec of ~84k commented shard rules (670k tokens: lark's LALR parse
   dominates). Plus the in-process parse time of the latter.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "specs" / "tiny_llama.pd"
SITES = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
         "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
MB = 1_000_000


def generated_spec(lines: int) -> str:
    """A valid spec of about `lines` lines (8 lines per layer over an ~80-line base)."""
    base = BASE.read_text()
    layers = max(1, (lines - len(base.splitlines())) // (len(SITES) + 1))
    decompose = "".join(f"    layers[{i}].{site} {{ C = 64 }}\n" for i in range(layers) for site in SITES)
    rules = "".join(f"    target.layers.{i}.** = replicated  # layer {i}\n" for i in range(layers))
    text = base.replace("    layers = 4\n", f"    layers = {layers}\n").replace("kv_heads = 2", "kv_heads = 4")
    text = re.sub(r"  decompose \{\n.*?\n  \}\n", lambda _: "  decompose {\n" + decompose + "  }\n", text, flags=re.S)
    return text.replace("    target.**      = replicated\n", rules + "    target.**      = replicated\n")


def tms_text() -> str:
    """specs/tms_5-2.pd resolved to one self-contained text (it imports specs/base/tms.pd)."""
    from pdc.syntax.format import format_spec
    from pdc.syntax.load import check_file

    family = check_file(REPO / "specs" / "tms_5-2.pd").family
    assert family is not None and family.source is not None
    return format_spec(family.source)


def comment_padded_spec(size: int) -> str:
    base = tms_text()
    line = "  # " + "padding " * 12 + "\n"
    return base.replace("  train {", line * (size // len(line)) + "  train {")


def shard_rules_spec(size: int) -> str:
    base = tms_text()
    rules, total, i = [], 0, 0
    while total < size:
        rules.append(f"    x{i}.layers[0..3].{{a, b}}_proj = [dp, _]  # rule {i}\n")
        total += len(rules[-1])
        i += 1
    return base.replace("  checkpoint {", "  mesh { dp = 1 }\n  shard {\n" + "".join(rules) +
                        "    ** = replicated\n  }\n  checkpoint {")


def timed_check(path: Path) -> float:
    """Wall seconds of `python -m pdc.cli check PATH` in a fresh process (must exit 0)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pdc.cli", "check", str(path)], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"pdc check {path} exited {proc.returncode}:\n{proc.stderr[:4000]}")
    return wall


_IN_PROCESS = """
import json, sys
from pdc.cli import main
rc = main(["check", sys.argv[1]])
print(json.dumps({"rc": rc, "jax_imported": "jax" in sys.modules}))
"""


def jax_imported(path: Path) -> bool:
    proc = subprocess.run([sys.executable, "-c", _IN_PROCESS, str(path)], capture_output=True, text=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise SystemExit(f"in-process check exited {result['rc']}:\n{proc.stderr[:4000]}")
    return bool(result["jax_imported"])


def phases(path: Path, repeat: int = 3) -> dict[str, float]:
    """Best-of-`repeat` in-process seconds of each front-end phase (imports already paid)."""
    from pdc.passes import check
    from pdc.syntax.load import check_text
    from pdc.syntax.parse import parse_text

    text = path.read_text()
    steps = {"parse": lambda: parse_text(text, str(path)), "parse_validate": lambda: check_text(text, str(path)),
             "check_with_passes": lambda: check(path)}
    out = {}
    for name, step in steps.items():
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        out[name] = round(min(times), 4)
    return out


def environment() -> dict[str, object]:
    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    return {"python": sys.version.split()[0], "implementation": platform.python_implementation(),
            "platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "pdc": version("pdc"), "lark": version("lark"), "pydantic": version("pydantic")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--no-5mb", dest="big", action="store_false", help="skip the two 5 MB files")
    args = parser.parse_args()
    report: dict[str, object] = {"benchmark": "pdc check", "env": environment()}
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "generated.pd"
        spec.write_text(generated_spec(args.lines))
        walls = [timed_check(spec) for _ in range(args.runs)]
        report["spec"] = {"lines": len(spec.read_text().splitlines()), "bytes": spec.stat().st_size,
                          "runs": args.runs, "median_wall_s": round(statistics.median(walls), 4),
                          "min_wall_s": round(min(walls), 4), "walls_s": [round(w, 4) for w in walls],
                          "jax_imported": jax_imported(spec), "in_process_s": phases(spec)}
        if args.big:
            big: dict[str, object] = {}
            for name, text in (("comment_padded", comment_padded_spec(5 * MB)), ("shard_rules", shard_rules_spec(5 * MB))):
                path = Path(tmp) / f"{name}.pd"
                path.write_text(text)
                big[name] = {"bytes": path.stat().st_size, "lines": text.count("\n"), "wall_s": round(timed_check(path), 3)}
            from pdc.syntax.parse import parse_text

            text = (Path(tmp) / "shard_rules.pd").read_text()
            start = time.perf_counter()
            parse_text(text, "shard_rules.pd")
            big["shard_rules"]["in_process_parse_s"] = round(time.perf_counter() - start, 3)  # type: ignore[index]
            report["5mb"] = big
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
