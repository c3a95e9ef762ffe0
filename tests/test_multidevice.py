"""Sharded execution on 8 fake CPU devices (conftest sets the XLA flag before JAX
starts): real steps on several meshes, the dry-run's bytes against live arrays,
remat knobs that change the program, and layout-invariant trajectories."""

from __future__ import annotations

import functools
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdc.inspect.dryrun import abstract_step
from pdc.lower.program import lower_program
from pdc.lower.sharding import batch_sharding, make_mesh, params_shardings, pins_for, state_shardings
from pdc.lower.state import abstract_state, init_state
from pdc.lower.step import make_train_step
from pdc.passes import run_passes
from pdc.syntax.load import check_text

from conftest import REPO, spec_text

TINY = (REPO / "specs" / "tiny_llama.pd").read_text().replace("seq_len = 128\n    batch = 16",
                                                              "seq_len = 16\n    batch = 16")
TMS = spec_text("tms_5-2")


def ir_of(text: str, mesh: str | None = None):
    if mesh is not None:
        text = text.replace("mesh { dp = 2 tp = 4 }", mesh)
    result = check_text(text, str(REPO / "specs" / "x.pd"))
    assert result.ok and result.spec is not None, [d.summary for d in result.diagnostics]
    ir = run_passes(result.spec)
    assert not ir.diagnostics, [d.summary for d in ir.diagnostics]
    return ir


def sharded_run(ir, steps: int) -> tuple[list[float], Any, Any]:
    """Run `steps` real steps with the IR's shardings; returns (losses, compiled, live args)."""
    program = lower_program(ir)
    mesh = make_mesh(ir)
    state_s = state_shardings(ir, mesh, abstract_state(program))
    params_abstract = jax.eval_shape(program.target.init_params, jax.random.PRNGKey(1))
    params_s = params_shardings(ir, mesh, params_abstract)
    state = jax.jit(lambda: init_state(program), out_shardings=state_s)()
    params = jax.jit(program.target.init_params, out_shardings=params_s)(jax.random.PRNGKey(1))
    batch, batch_s = None, None
    if program.shape.has_positions:
        batch_s = batch_sharding(ir, mesh)
        batch = jax.device_put(jnp.asarray(np.random.default_rng(0).integers(0, 256, (16, 16)), jnp.int32), batch_s)
    step = jax.jit(make_train_step(program, pins_for(ir, mesh)), in_shardings=(state_s, params_s, batch_s),
                   out_shardings=(state_s, None))
    compiled = step.lower(state, params, batch).compile()
    args = (state, params, batch)
    losses = []
    for _ in range(steps):
        state, metrics = compiled(state, params, batch)
        losses.append(float(metrics["loss/total"]))
    return losses, compiled, (args, (state, metrics))


TRAJECTORY_STEPS = 5


@functools.cache
def tiny_run(mesh: str) -> tuple[list[float], Any, Any]:
    """The tiny Llama's TRAJECTORY_STEPS real steps on `mesh`, run once per module: the
    bytes test and the layout test share the 2×4 compile (the suite's costliest)."""
    return sharded_run(ir_of(TINY, mesh), TRAJECTORY_STEPS)


def per_device_bytes(tree: Any, device: Any) -> int:
    return sum(shard.data.nbytes for leaf in jax.tree.leaves(tree) for shard in leaf.addressable_shards
               if shard.device == device)


@pytest.mark.parametrize("text,mesh", [(TINY, "mesh { dp = 2 tp = 4 }"),
                                       pytest.param(TINY, "mesh { dp = 8 tp = 1 }", marks=pytest.mark.slow),  # ~1 min
                                       (TMS, None)], ids=["tiny_llama-2x4", "tiny_llama-8x1", "tms_5-2"])
def test_three_real_steps_and_dry_run_bytes_equal_live_arrays(text: str, mesh: str | None) -> None:
    ir = ir_of(text, mesh) if mesh else ir_of(text.replace("train { steps = 10k seed = 0 }",
                                                           "train { steps = 10k seed = 0 }\n  mesh { dp = 8 }"))
    losses, compiled, (args, outputs) = tiny_run(mesh) if mesh else sharded_run(ir, 3)
    assert all(np.isfinite(losses))
    device = jax.devices()[0]
    dry_step, dry_args = abstract_step(lower_program(ir), make_mesh(ir))
    memory = dry_step.lower(*dry_args).compile().memory_analysis()
    live_args = per_device_bytes([a for a in args if a is not None], device)
    live_out = per_device_bytes(outputs, device)
    assert memory.argument_size_in_bytes == live_args
    # the step returns a tuple: XLA adds its index table, one 8-byte pointer per output array
    assert memory.output_size_in_bytes == live_out + 8 * len(jax.tree.leaves(outputs))
    assert compiled.memory_analysis().argument_size_in_bytes == live_args


def test_layout_invariant_trajectory() -> None:
    one, _, _ = tiny_run("mesh { dp = 1 tp = 1 }")
    eight, _, _ = tiny_run("mesh { dp = 2 tp = 4 }")
    assert abs(one[-1] - eight[-1]) <= 1e-5 * abs(one[-1])


def lowered_text(text: str) -> str:
    ir = ir_of(text)
    step, args = abstract_step(lower_program(ir), make_mesh(ir))
    return step.lower(*args).as_text()


@pytest.mark.parametrize("old,new", [
    ("remat { recon_forwards = per_layer ci = off }", "remat { recon_forwards = off ci = off }"),
    ("remat { recon_forwards = per_layer ci = off }", "remat { recon_forwards = whole ci = off }"),
    ("remat { recon_forwards = per_layer ci = off }", "remat { recon_forwards = per_layer ci = on }"),
    ("remat { recon_forwards = per_layer ci = off }", "remat { recon_forwards = matmuls ci = off }"),
    ("remat { recon_forwards = off ci = off }", "remat { recon_forwards = matmuls ci = off }"),
])
def test_each_remat_knob_changes_the_program(old: str, new: str) -> None:
    base = TINY.replace("remat { recon_forwards = per_layer ci = off }", old)
    assert old in base
    assert lowered_text(base) != lowered_text(base.replace(old, new))


def test_whole_forward_remat_changes_a_toy_program() -> None:
    base = TMS.replace("train { steps = 10k seed = 0 }", "train { steps = 10k seed = 0 }\n  remat { recon_forwards = off }")
    assert lowered_text(base) != lowered_text(base.replace("recon_forwards = off", "recon_forwards = whole"))


def test_the_chunked_divergence_shards_the_vocabulary_over_tp() -> None:
    """Each chunk's logits [B, chunk, vocab] are pinned batch on dp and vocabulary on tp
    (Shardy's constraint, or GSPMD's `devices=[2,1,4]` tiling on older JAX)."""
    ir = ir_of(TINY, "mesh { dp = 2 tp = 4 }")
    step, args = abstract_step(lower_program(ir), make_mesh(ir))
    text = step.lower(*args).as_text()
    vocab = ir.facts["target"].dims["vocab"]
    shardy = rf'sharding_constraint .*\[\{{"dp"\}}, \{{\}}, \{{"tp"\}}\]> : tensor<\d+x\d+x{vocab}xf32>'
    gspmd = rf'@Sharding.*devices=\[2,1,4\].*tensor<\d+x\d+x{vocab}xf32>'
    assert any(re.search(shardy, line) or re.search(gspmd, line) for line in text.splitlines())


def test_fake_devices_get_a_thread_pool_that_runs_their_collectives() -> None:
    """8 fake devices on 2 cores deadlocked the tiny Llama's sharded step in XLA:CPU's
    collectives (CI, test_tokens): every fake-device path asks for two pool threads a device."""
    from pdc.run.host_devices import collective_threads, request_host_devices

    env: dict[str, str] = {"XLA_FLAGS": "--xla_dump_to=/tmp/x"}
    request_host_devices(8, env)
    assert env["XLA_FLAGS"] == "--xla_dump_to=/tmp/x --xla_force_host_platform_device_count=8"
    assert int(env["PJRT_NPROC"]) == collective_threads(8) >= 16
    mine = {"PJRT_NPROC": "3"}
    request_host_devices(4, mine)
    assert mine == {"PJRT_NPROC": "3", "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
