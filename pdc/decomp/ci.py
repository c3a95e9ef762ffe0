"""The CI network as the train step sees it (SPD_ALGORITHM.md §3): `init_ci` / `apply_ci` split
the network the spec's `ci` label names into a static `GraphDef` and a `State` pytree, so its
parameters can be differentiated, optimised and sharded as an ordinary pytree.

The networks are the registry `pdc.ci.NETWORKS` (one file each in `pdc/ci/`, or a `pdc.ci`
entry point): each builds its nnx module from the shared pieces in `pdc.ci._nn`, re-exported
here for the lowering."""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from pdc.ci import NETWORKS
from pdc.ci._nn import Buffer, CiInputs, CiSite, _check_layout, ci_layout, transformer_chunk
from pdc.registry.types import Keys

Array = jax.Array
CiModule = nnx.Module  # what a network's `build` returns

__all__ = ["Buffer", "CiInputs", "CiSite", "abstract_ci", "apply_ci", "build_ci", "ci_layout", "ci_param_shapes",
           "init_ci", "transformer_chunk"]


def build_ci(key: Array, variant: str, options: Keys, layout: Sequence[CiSite], *,
             resid_width: int | None = None, param_dtype: Any = jnp.float32,
             compute_dtype: Any | None = None) -> CiModule:
    """The CI network `variant` (the spec's `ci` label) as an nnx module, initialised
    deterministically from `key`. `resid_width` is the target's hidden size, needed only
    by transformers reading residual taps. `compute_dtype` casts parameters and inputs
    for the forward; outputs are always fp32."""
    network = NETWORKS.get(variant)
    if network is None:
        raise ValueError(f"unknown CI network {variant!r}; expected one of {sorted(NETWORKS)}")
    if not isinstance(options, network.keys):
        raise TypeError(f"`ci {variant}` takes {network.keys.__name__} options, got {type(options).__name__}")
    layout = tuple(layout)
    _check_layout(layout)
    return network.build(key, options, layout, resid_width=resid_width, param_dtype=param_dtype,
                         compute_dtype=compute_dtype)


def abstract_ci(kind: str, options: Keys, layout: Sequence[CiSite], *, resid_width: int | None = None,
                param_dtype: Any = jnp.float32, compute_dtype: Any | None = None) -> tuple[nnx.GraphDef, nnx.State]:
    """The graph and a state of `ShapeDtypeStruct`s, allocating nothing: what sharding
    plans (`out_shardings` of a jitted init) and shape checks against the IR need."""
    return nnx.split(nnx.eval_shape(lambda k: build_ci(k, kind, options, layout, resid_width=resid_width,
                                                       param_dtype=param_dtype, compute_dtype=compute_dtype),
                                    jax.random.key(0)))


def init_ci(key: Array, kind: str, options: Keys, layout: Sequence[CiSite], *, resid_width: int | None = None,
            param_dtype: Any = jnp.float32, compute_dtype: Any | None = None) -> tuple[nnx.GraphDef, nnx.State]:
    """`build_ci`, split into the static graph and the parameter state (a pytree of
    `nnx.Param`s, plus the `Buffer` `inv_freq` for transformers; separate them with
    `nnx.split_state(state, nnx.Param, Buffer)` to give the optimizer only the Params).
    `kind` is the CI network variant (the spec's `ci` label).

    The initialiser runs as one jitted program (many small eager random ops would each
    dispatch and compile on their own); the graph comes from an abstract build."""
    graphdef, _ = abstract_ci(kind, options, layout, resid_width=resid_width, param_dtype=param_dtype,
                              compute_dtype=compute_dtype)  # also validates the arguments
    program = _init_program(kind, options.model_dump_json(), tuple(layout), resid_width, param_dtype, compute_dtype)
    return graphdef, program(key)


@functools.lru_cache(maxsize=16)
def _init_program(kind: str, options_json: str, layout: tuple[CiSite, ...], resid_width: int | None,
                  param_dtype: Any, compute_dtype: Any | None) -> Callable[[Array], nnx.State]:
    """The jitted initialiser of one configuration, cached so re-initialising the same
    network with another key does not compile again (options travel as JSON: pydantic
    models with list fields are not hashable)."""
    options = NETWORKS[kind].keys.model_validate_json(options_json)
    return jax.jit(lambda k: nnx.state(build_ci(k, kind, options, layout, resid_width=resid_width,
                                                param_dtype=param_dtype, compute_dtype=compute_dtype)))


def apply_ci(graphdef: nnx.GraphDef, state: nnx.State, inputs: CiInputs) -> dict[str, Array]:
    """CI pre-activations, kind → `[L_k, *lead, C]` fp32. Pure in `state`: differentiate,
    jit (`graphdef` is static) or shard it like any pytree."""
    return nnx.merge(graphdef, state)(inputs)


def ci_param_shapes(kind: str, options: Keys, layout: Sequence[CiSite], *, resid_width: int | None = None,
                    param_dtype: Any = jnp.float32) -> dict[str, tuple[tuple[int, ...], bool]]:
    """IR tensor name (`ci.…`) → (shape, trainable), without allocating anything: what
    the compiler's build_ci pass must agree with."""
    _, state = abstract_ci(kind, options, layout, resid_width=resid_width, param_dtype=param_dtype)
    return {"ci." + ".".join(str(p) for p in path): (tuple(v.shape), isinstance(v, nnx.Param))
            for path, v in nnx.to_flat_state(state)}
