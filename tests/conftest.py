"""Test set-up shared by every test module.

Multi-device tests run on 8 fake CPU devices; the flag must be set before JAX is first
imported, which is why it lives here (front-end tests never import JAX at all)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Threads for 8 fake devices' collectives: on a 2-core machine the default pool deadlocks a
# sharded step (pdc/run/host_devices.py says why); child processes inherit it.
from pdc.run.host_devices import collective_threads  # noqa: E402  (stdlib only: JAX is not imported yet)

os.environ.setdefault("PJRT_NPROC", str(collective_threads(8)))

# Property tests: the default run is derandomized (a seed fixed per test, no example database
# replaying an earlier machine's failures), so a newcomer's `pytest` draws exactly CI's cases;
# `PDC_HYPOTHESIS=explore` draws fresh random cases (and remembers failures) to hunt for bugs.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("deterministic", derandomize=True, database=None, print_blob=True)
_hypothesis_settings.register_profile("explore", derandomize=False)
_hypothesis_settings.load_profile(os.environ.get("PDC_HYPOTHESIS", "deterministic"))

REPO = Path(__file__).resolve().parents[1]
SPECS = sorted((REPO / "specs").glob("*.pd"))


def spec_text(name: str) -> str:
    """A shipped spec (`specs/<name>.pd`) as one self-contained text, its imports and
    parameters resolved (the TMS specs import `specs/base/tms.pd`): what `pdc train` records
    as RUN/spec.pd, and what tests edit with string replacements."""
    from pdc.syntax.format import format_spec
    from pdc.syntax.load import check_file

    result = check_file(REPO / "specs" / f"{name}.pd")
    assert result.family is not None and result.family.source is not None, result.diagnostics
    return format_spec(result.family.source)


def shrunk_toy_spec(name: str, *, batch: int, warmup: int, checkpoint: int, keep: int, eval_every: int) -> str:
    """A bundled toy spec (`specs/<name>.pd`) shrunk so a run takes seconds: its data batch,
    faithfulness warmup, checkpoint cadence and eval cadence replaced, logging every step,
    and its target weights found from any directory."""
    import re

    text = spec_text(name).replace("../targets/", f"{REPO}/targets/")
    text = re.sub(r"batch = \d+", f"batch = {batch}", text, count=1)  # the data block's (toys have no pretrain)
    text = re.sub(r"faithfulness_warmup \{ steps = \d+", f"faithfulness_warmup {{ steps = {warmup}", text)
    text = re.sub(r"checkpoint \{ every = \S+ keep = \d+ \}", f"checkpoint {{ every = {checkpoint} keep = {keep} }}", text)
    text = re.sub(r"log \{ every = \S+ \}", "log { every = 1 }", text)
    return re.sub(r"(eval \{\n\s+every = )\S+", rf"\g<1>{eval_every}", text)


def write_with_random_weights(text: str, tmp: Path, seed: int = 3) -> Path:
    """Write `text` (a spec whose target reads `tmp/weights`) as `tmp/tiny.pd`, and random
    frozen weights of its target in HF format into `tmp/weights`; returns the spec's path.
    JAX is imported here, not at module level (front-end tests never start it)."""
    import jax

    from pdc.models import build_target
    from pdc.targets.llama.hf import hf_config, save_hf
    from pdc.passes import run_passes
    from pdc.syntax.load import check_text

    spec = tmp / "tiny.pd"
    spec.write_text(text)
    result = check_text(text, str(spec))
    assert result.ok and result.spec is not None, [d.summary for d in result.diagnostics]
    ir = run_passes(result.spec)
    target = build_target(ir.facts["target"], [n[5:] for n in ir.graph if n.startswith("site:")])
    save_hf(target.init_params(jax.random.PRNGKey(seed)), tmp / "weights", config=hf_config(target.config))
    return spec


def install_plugin(plugin: Path, site: Path, dist: str, modules: Sequence[str]) -> None:
    """What `pip install` of the test distribution in `plugin` (its modules, METADATA and
    entry_points.txt) leaves in `site` (a fresh site-packages): the modules — files, or
    packages without their caches — and `<dist>-0.1.0.dist-info`."""
    site.mkdir()
    for module in modules:
        if (plugin / module).is_dir():
            shutil.copytree(plugin / module, site / module, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(plugin / module, site)
    info = site / f"{dist}-0.1.0.dist-info"
    info.mkdir()
    for name in ("METADATA", "entry_points.txt"):
        shutil.copy(plugin / name, info / name)


def run_with_plugin(site: Path, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """`python ARGS` in a fresh process (at the repo root) with `site` on its PYTHONPATH (so
    this process's registry stays as shipped), on one CPU device (no fake-device flag)."""
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("XLA_FLAGS", None)
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, cwd=cwd)


def check_with_broken_entry_point(site: Path, dist: str, group: str, entry: str) -> subprocess.CompletedProcess[str]:
    """`pdc check` of a shipped spec with the installed distribution's entry point replaced
    by `entry` in `group` (one naming something that is not an extension)."""
    (site / f"{dist}-0.1.0.dist-info" / "entry_points.txt").write_text(f"[{group}]\n{entry}\n")
    return run_with_plugin(site, "-m", "pdc.cli", "check", "--no-inputs", "specs/tms_5-2.pd")
