"""`pdc pretrain`: train the target a `pretrain` block describes, once per target.

The result is cached under `$XDG_CACHE_HOME/pdc/targets/<family>-<hash>/` (default
`~/.cache`), keyed by a hash of everything that determines the target (the `target`
block with its `pretrain` block, and for toys the data distribution), so `pdc train`
and later runs reuse it. Weights are written in the layouts the loaders read: torch
`nn.Linear` layout for the toys (as in targets/), HF safetensors + config.json for LMs.

Recipes (SPD_ALGORITHM.md §8): a toy family brings its own (`FamilyRuntime.recipe`: TMS
minimises mean((x − ReLU(W2 W1 x + b2))²) on sparse features, ResidMLP
mean((out − (x + ReLU(x)))²) with W_E, W_U fixed); an LM family without one gets the shared
recipe here, next-token cross-entropy on the byte corpus. The family writes the weights
(`FamilyRuntime.save`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pdc.decomp.metrics import next_token_ce
from pdc.ir.graph import IR
from pdc.lower.program import lower_program, schedule_fn
from pdc.targets import family
from pdc.run.data import open_tokens, python_stdlib_bytes

CHUNK = 100  # steps per jitted call: one dispatch per chunk, progress between chunks


def target_hash(ir: IR) -> str:
    target, data = ir.options_node("target"), ir.options_node("data")
    keyed = {"family": target.label, "target": target.keys.model_dump(mode="json"),
             "pretrain": ir.options("target.pretrain").model_dump(mode="json")}
    if data.label == "sparse_features":
        keyed["data"] = data.keys.model_dump(mode="json", exclude={"batch"})
    keyed["target"].pop("weights", None)
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]


def cache_dir(ir: IR) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pdc" / "targets"
    return root / f"{ir.options_node('target').label}-{target_hash(ir)}"


def weights_path(ir: IR) -> Path:
    """Where the pretrained weights live (a file for toys, a directory for LMs)."""
    directory = cache_dir(ir)
    return directory if ir.facts["target"].has_positions else directory / "model.safetensors"


def pretrained(ir: IR, force: bool = False) -> Path:
    """The cached weights of the spec's target, pretraining them first if needed."""
    path = weights_path(ir)
    done = cache_dir(ir) / "pretrain.json"
    if done.exists() and not force:
        return path
    target = lower_program(ir).target
    pretrain = ir.options("target.pretrain")
    assert pretrain is not None, "a target without weights has a `pretrain` block (PD0329)"
    loss_fn, fixed, trainable, assemble = _recipe(ir, target, pretrain)
    final, trained = _fit(loss_fn, fixed, trainable, pretrain)
    params = assemble(trained, fixed)
    cache_dir(ir).mkdir(parents=True, exist_ok=True)
    _save(target, params, path)
    report = {"target_hash": target_hash(ir), "final_loss": final, "steps": pretrain.steps,
              **_sanity(target, params)}
    done.write_text(json.dumps(report, indent=2) + "\n")  # written last: marks the cache entry complete
    return path


# ---- recipes ---------------------------------------------------------------------------------

Loss = Callable[[Any, Any, jax.Array], jax.Array]  # (trainable, fixed, key) → loss
Assemble = Callable[[Any, Any], Any]  # (trainable, fixed) → the target's full params
Recipe = tuple[Loss, Any, Any, Assemble]


def _merge(train: Any, fix: Any) -> Any:
    return {**fix, **train}


def _recipe(ir: IR, target: Any, keys: Any) -> Recipe:
    """(loss, fixed params, initial trainable params, assemble): the family's own recipe, or
    the shared next-token one for an LM family without one."""
    init = target.init_params(jax.random.PRNGKey(int(keys.seed)))
    recipe = family(target.family).jax().recipe
    if recipe is not None:
        return recipe(target, init, keys, ir.options("data"))
    if ir.facts["target"].output != "logits":
        raise ValueError(f"target family `{target.family}` has a `pretrain` block but no pretraining recipe")
    return _lm(target, init, keys, ir)


def _lm(target: Any, init: Any, keys: Any, ir: IR) -> Recipe:
    rows = open_tokens(python_stdlib_bytes(cache_dir(ir).parent / "corpus"), "npy", int(keys.seq_len) + 1)
    corpus = jnp.asarray(np.asarray(rows.tokens[: rows.rows * rows.seq_len]).reshape(rows.rows, rows.seq_len),
                         jnp.int32)

    def loss(train: Any, fix: Any, key: jax.Array) -> jax.Array:
        del fix
        tokens = corpus[jax.random.randint(key, (int(keys.batch),), 0, corpus.shape[0])]
        return next_token_ce(target.clean(train, tokens).output, tokens)

    return loss, {}, init, _merge


def _fit(loss: Loss, fixed: Any, params: Any, keys: Any) -> tuple[float, Any]:
    steps = int(keys.steps)
    opt = optax.adamw(schedule_fn(keys.lr, steps), weight_decay=float(keys.weight_decay))
    root = jax.random.PRNGKey(int(keys.seed) + 1)

    @functools.partial(jax.jit, static_argnums=3)
    def chunk(params: Any, state: Any, start: jax.Array, length: int) -> tuple[Any, Any, jax.Array]:
        def body(carry: Any, step: jax.Array) -> tuple[Any, jax.Array]:
            p, s = carry
            value, grads = jax.value_and_grad(loss)(p, fixed, jax.random.fold_in(root, step))
            updates, s = opt.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), value

        (params, state), values = jax.lax.scan(body, (params, state), start + jnp.arange(length))
        return params, state, values[-1]

    state, value, t0 = opt.init(params), jnp.zeros(()), time.perf_counter()
    for start in range(0, steps, CHUNK):  # exactly `steps`: the last chunk is shorter (one more compile)
        length = min(CHUNK, steps - start)
        params, state, value = chunk(params, state, jnp.asarray(start), length)
        rate = (start + length) / (time.perf_counter() - t0)
        print(f"\rpretrain step {start + length}/{steps}  loss {float(value):.4g}  {rate:.0f} steps/s",
              end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return float(value), params


# ---- saving ------------------------------------------------------------------------------------


def _save(target: Any, params: Any, path: Path) -> None:
    save = family(target.family).jax().save
    if save is None:
        raise ValueError(f"target family `{target.family}` cannot write pretrained weights")
    save(target, params, path)


def _sanity(target: Any, params: Any) -> dict[str, Any]:
    """The family's facts about the pretrained weights (TMS: the feature norms), if it has any."""
    sanity = family(target.family).jax().sanity
    return {} if sanity is None else sanity(target, params)
