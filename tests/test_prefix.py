"""Masked forwards start at the first decomposed layer: the frozen layers before it hold no
site and compute the same residual in every forward, so the clean pass's residual there is
the start of every masked forward. Where that layer decomposes only MLP matrices they start
at its MLP, from the clean pass's residual after attention and the MLP's normed input. Same
losses and gradients as running every forward from the tokens (to float rounding: the
first layer's attention is now the clean pass's, fused differently by XLA), and less work."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from pdc.lower.state import init_state
from pdc.lower.step import make_step_gradients
from pdc.models.base import CleanPass, Residual

from test_step import TINY, program_of

# tiny_llama's MLPs of layers 2..3 (of 4): two frozen layers before the first site
MIDDLE = TINY.replace("seq_len = 128\n    batch = 16", "seq_len = 16\n    batch = 4").replace(
    "layers[1..2].mlp", "layers[2..3].mlp")


def _from_tokens(program):  # type: ignore[no-untyped-def]
    """The same program with every masked forward run from the tokens (as before the prefix)."""
    target = program.target

    class FromTokens:
        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(target, name)

        def clean(self, params, batch, **options) -> CleanPass:  # type: ignore[no-untyped-def]
            return dataclasses.replace(target.clean(params, batch, **options), start=None)

    return dataclasses.replace(program, target=FromTokens())


def _layers_run(jaxpr) -> int:  # type: ignore[no-untyped-def]
    """Scan iterations in a traced program, nested ones included: the layers it runs."""
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "scan":
            total += eqn.params["length"] * max(1, _layers_run(eqn.params["jaxpr"].jaxpr))
        else:
            for value in eqn.params.values():
                for sub in value if isinstance(value, (list, tuple)) else (value,):
                    inner = getattr(sub, "jaxpr", None)
                    if inner is not None:
                        total += _layers_run(getattr(inner, "jaxpr", inner))
    return total


def _count(jaxpr, primitive: str) -> int:  # type: ignore[no-untyped-def]
    """Equations of `primitive` in a traced program, scan bodies times their length."""
    total = 0
    for eqn in jaxpr.eqns:
        total += eqn.primitive.name == primitive
        times = eqn.params["length"] if eqn.primitive.name == "scan" else 1
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else (value,):
                inner = getattr(sub, "jaxpr", None)
                if inner is not None:
                    total += times * _count(getattr(inner, "jaxpr", inner), primitive)
    return total


def _run(program, params, batch):  # type: ignore[no-untyped-def]
    gradients = make_step_gradients(program)
    state = jax.jit(lambda: init_state(program))()
    traced = jax.make_jaxpr(gradients)(state, params, batch).jaxpr
    return jax.jit(gradients)(state, params, batch), (_layers_run(traced), _count(traced, "dot_general"))


def _assert_same_step(program, params, batch) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Losses and gradients from the clean pass's start equal those from the tokens (f32 on
    CPU: the first layer's attention, now the clean pass's, differs in the last bit at most);
    returns the (layers, matmuls) each ran."""
    prefixed, layers = _run(program, params, batch)
    tokens, layers_tokens = _run(_from_tokens(program), params, batch)
    for name in prefixed.values:
        np.testing.assert_allclose(float(prefixed.values[name]), float(tokens.values[name]), rtol=1e-6, err_msg=name)
    for a, b in zip(jax.tree.leaves((prefixed.components, prefixed.ci, prefixed.sources)),
                    jax.tree.leaves((tokens.components, tokens.ci, tokens.sources))):
        a, b = np.asarray(a), np.asarray(b)
        assert np.max(np.abs(a - b)) <= 4e-6 * np.max(np.abs(b)), np.max(np.abs(a - b)) / np.max(np.abs(b))
    return layers, layers_tokens


def test_masked_forwards_from_the_prefix_equal_forwards_from_the_tokens() -> None:
    program = program_of(MIDDLE)
    assert program.target.first_decomposed == 2 and program.target.starts_at_mlp
    params = program.target.init_params(jax.random.PRNGKey(1))
    batch = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 16)), jnp.int32)
    clean = program.target.clean(params, batch)
    assert isinstance(clean.start, Residual) and clean.start.x.shape == clean.start.mlp_input.shape == (4, 16, 64)
    (layers, _), (layers_tokens, _) = _assert_same_step(program, params, batch)
    assert layers < layers_tokens, (layers, layers_tokens)


def test_mlp_sites_in_the_first_layer_start_at_its_mlp() -> None:
    """No frozen layer before the sites (layer 0), yet the first layer's attention runs once:
    the masked forward from the clean pass's start equals the one from the tokens and
    projects no q, k, v, o in layer 0."""
    from test_models import components_of, lm_shape, random_masks, random_params

    from pdc.models import build_target

    model = build_target(lm_shape("llama"), ("layers.0.mlp.gate_proj", "layers.0.mlp.down_proj",
                                             "layers.2.mlp.up_proj"), rope_theta=10_000.0)
    params = random_params(model, 5)
    tokens = jnp.asarray(np.random.default_rng(6).integers(0, 48, (2, 8)), jnp.int32)
    clean = model.clean(params, tokens)
    assert model.first_decomposed == 0 and clean.start.mlp_input is not None
    comps, masks = components_of(model), random_masks(model, (2, 8))
    resumed, from_tokens = (jax.jit(model.forward)(params, start, comps, masks) for start in (clean.start, tokens))
    np.testing.assert_allclose(np.asarray(resumed), np.asarray(from_tokens), rtol=1e-5, atol=1e-6)
    dots = [_count(jax.make_jaxpr(model.forward)(params, start, comps, masks).jaxpr, "dot_general")
            for start in (clean.start, tokens)]
    assert dots[0] == dots[1] - 6, dots  # layer 0's q, k, v, o and its two attention products


def test_an_attention_site_in_the_first_layer_starts_from_the_tokens() -> None:
    program = program_of(MIDDLE.replace("layers[2..3].mlp.{gate_proj, up_proj, down_proj}",
                                        "layers[0..1].self_attn.o_proj").replace("mesh { dp = 2 tp = 4 }", "mesh { dp = 4 tp = 2 }"))
    params = program.target.init_params(jax.random.PRNGKey(1))
    clean = program.target.clean(params, jnp.zeros((4, 16), jnp.int32))
    assert program.target.first_decomposed == 0 and not program.target.starts_at_mlp and clean.start is None
