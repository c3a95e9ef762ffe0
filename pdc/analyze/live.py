"""The model side of `pdc view`: live CI of typed text (the probe) and the target's next-token
distribution with chosen components ablated. Both run the run's own checkpoint; each is one
`jax.jit` (cached per input shape by JAX), so a second request of the same length is cheap.

Ablation uses the masked forward pdc trains with (`target.forward`, `SiteMask`): every
decomposed site runs `((m − 1)·(x V)) U + x W`, mask 1 everywhere except the ablated
components (0), delta path 1. So an ablated site computes `x (W − Σ_ablated v_c u_c)`: the
component is taken out of the frozen weight and the faithfulness residual `W − V U` stays,
which makes "no components ablated" the clean forward (up to float rounding), not the
component-only reconstruction.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pdc.decomp.components import SiteMask
from pdc.run.evaluate import site_paths
from pdc.run.load import Run


def _next_token(target: Any, components: Any, params: Any, tokens: jax.Array,
                masks: Mapping[str, SiteMask]) -> tuple[jax.Array, jax.Array]:
    """(clean, ablated) next-token probabilities `[vocab]` after the last token of `tokens [1, T]`."""
    clean = target.clean(params, tokens).output[0, -1].astype(jnp.float32)
    ablated = target.forward(params, tokens, components, masks)[0, -1].astype(jnp.float32)
    return jax.nn.softmax(clean), jax.nn.softmax(ablated)


@dataclass
class Live:
    """A loaded run's probe and ablation, safe to call from the server's worker threads
    (one computation at a time: the CPU has no spare cores and JAX compiles once)."""

    run: Run
    _ablate_fn: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def sites(self) -> list[str]:
        return self.run.sites

    def where(self) -> dict[str, tuple[str, int]]:
        """site path → (kind, index in the kind's stack)."""
        return {path: (kind, i) for kind, paths in site_paths(self.run.ir).items() for i, path in enumerate(paths)}

    def components_of(self, site: str) -> int:
        kind, _ = self.where()[site]
        return int(self.run.state.components[kind].V.shape[-1])

    def probe(self, tokens: Sequence[int]) -> dict[str, np.ndarray]:
        """Site → lower CI `[T, C]` of one sequence: exactly `Run.ci` of `[tokens]`."""
        with self._lock:
            return {site: ci[0] for site, ci in self.run.ci(np.asarray([list(tokens)], np.int32)).items()}

    def next_token(self, tokens: Sequence[int], ablate: Mapping[str, Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """(clean, ablated) next-token distributions after `tokens`, with the components
        `ablate[site]` masked out of every position."""
        where = self.where()
        T = len(tokens)
        masks: dict[str, SiteMask] = {}
        for kind, paths in site_paths(self.run.ir).items():
            C = int(self.run.state.components[kind].V.shape[-1])
            mask = np.ones((len(paths), 1, T, C), np.float32)
            for site, chosen in ablate.items():
                site_kind, index = where[site]
                if site_kind == kind:
                    mask[index, :, :, list(chosen)] = 0.0
            masks[kind] = SiteMask(mask=jnp.asarray(mask), delta=jnp.ones((len(paths), 1, T), jnp.float32))
        with self._lock:
            if self._ablate_fn is None:
                self._ablate_fn = jax.jit(functools.partial(_next_token, self.run.program.target))
            clean, ablated = self._ablate_fn(self.run.state.components, self.run.params,
                                             jnp.asarray([list(tokens)], jnp.int32), masks)
            return np.asarray(jax.device_get(clean)), np.asarray(jax.device_get(ablated))


__all__ = ["Live"]
