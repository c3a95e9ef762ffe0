"""One pdc train step against the torch reference's, to float32 rounding.

`tests/reference/tms_5-2_step.npz` holds a trained TMS 5-2 state (pdc's seed-0 run at step
10,000: `linear1`'s factors, both sites' CI MLPs), a batch of 512 sparse inputs, fixed mask
sources, and what the reference's own code computes from them in float64 with autocast off:
the three loss terms, every gradient, and the parameters' change after one AdamW step from
fresh moments (tied `linear2` as the reference ties it: two parameters on one storage). How
it was made: `tests/reference/README.md`.

Both sides draw no randomness here: the reference's `torch.rand_like` / `torch.rand` and
pdc's `stochastic_masks` are both replaced by the stored sources, so the comparison is of
the arithmetic alone. Two loss settings: the shipped `tms_5-2.pd` (importance p = 1, 3e-3)
and `tms_40-10.pd`'s (p = 2, 1e-4)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdc.decomp import losses
from pdc.decomp.components import Factors, SiteMask
from pdc.decomp.masks import adversarial_masks
from pdc.lower.state import init_state
from pdc.lower.step import make_step_gradients, make_train_step
from pdc.lower.ties import tie
from pdc.models import load_params

from conftest import REPO
from test_step import TMS, program_of

REFERENCE = dict(np.load(REPO / "tests" / "reference" / "tms_5-2_step.npz"))
P2 = TMS.replace("importance_minimality { weight = 3e-3 p = 1.0", "importance_minimality { weight = 1e-4 p = 2.0")
CASES = {"p1": TMS, "p2": P2}


def _fixed_sources(ref: dict[str, np.ndarray]) -> Any:
    """`stochastic_masks` with the stored sources for every kind and draw, as the reference
    replay had them: the masks a fixed source gives (`adversarial_masks`, whose last source
    channel is the delta's)."""
    source = jnp.concatenate([ref["source"], ref["delta_source"][:, None]], axis=-1)

    def stochastic_masks(key: Any, ci_lower: dict[str, jax.Array], sampling: str = "continuous",
                         with_delta: bool = True) -> dict[str, SiteMask]:
        masks = adversarial_masks(ci_lower, {kind: source for kind in ci_lower})
        return masks if with_delta else {kind: SiteMask(m.mask) for kind, m in masks.items()}

    return stochastic_masks


def _ci_name(path: tuple[Any, ...]) -> str:
    return "ci/" + "/".join(p.key for p in path if isinstance(p, jax.tree_util.DictKey))


def _reference_state(program: Any, ref: dict[str, np.ndarray]) -> Any:
    """A fresh state (AdamW moments at count 0) carrying the stored weights."""
    state = init_state(program)
    components = tie({"linear1": Factors(jnp.asarray(ref["V"])[None], jnp.asarray(ref["U"])[None])}, program.ties)
    ci = jax.tree_util.tree_map_with_path(lambda path, leaf: jnp.asarray(ref[_ci_name(path)])[None], state.ci)
    return state._replace(components=components, ci=ci)


def _pdc_arrays(components: dict[str, Factors], ci: Any) -> dict[str, np.ndarray]:
    """The fixture's names for a components dict and a CI tree (leading layer axis dropped)."""
    out = {f"{kind}/{name}": np.asarray(getattr(f, name)[0]) for kind, f in components.items() for name in "VU"}
    out.update({_ci_name(path): np.asarray(leaf[0]) for path, leaf in jax.tree_util.tree_leaves_with_path(ci)})
    return out


def _relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any, Any, Any]:
    monkeypatch.setattr(losses, "stochastic_masks", _fixed_sources(REFERENCE))
    program = program_of(CASES[request.param])
    params = load_params(program.target, REPO / "targets" / "tms_5-2_pentagon.safetensors")
    return request.param, program, params, _reference_state(program, REFERENCE)


def test_losses_and_gradients_match_the_reference(case: tuple[str, Any, Any, Any]) -> None:
    name, program, params, state = case
    grads = jax.jit(make_step_gradients(program))(state, params, jnp.asarray(REFERENCE["x"]))
    for term in ("importance_minimality", "stochastic_recon", "stochastic_recon_layerwise"):
        np.testing.assert_allclose(float(grads.values[term]), REFERENCE[f"{name}/loss/{term}"], rtol=1e-5)
    for key, got in _pdc_arrays(grads.components, grads.ci).items():
        assert _relative_error(got, REFERENCE[f"{name}/grad/{key}"]) < 1e-4, key


def test_one_adamw_step_with_the_tie_matches_the_reference(case: tuple[str, Any, Any, Any]) -> None:
    """The first AdamW step moves each entry by about lr·sign(g) (lr 1e-3 at count 0), and
    a tied entry by the sum of both sites' steps; compared to 1 % of lr per entry."""
    name, program, params, state = case
    new, _ = jax.jit(make_train_step(program))(state, params, jnp.asarray(REFERENCE["x"]))
    before = _pdc_arrays(state.components, state.ci)
    for key, after in _pdc_arrays(new.components, new.ci).items():
        np.testing.assert_allclose(after - before[key], REFERENCE[f"{name}/update/{key}"], rtol=0, atol=1e-5,
                                   err_msg=key)
