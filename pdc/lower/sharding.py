"""IR shardings → `NamedSharding`s for every leaf of the train state, the frozen target
and the batch, so the jitted step has explicit in/out shardings.

A state leaf is matched to its IR tensor by name: `components.<kind>.V`, the CI network's
`ci.<param>`, the adversary's `sources.<term>.<kind>`. Optimizer and adversary moments
take the sharding of the array they mirror; counters and the step are replicated.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from pdc.ir.graph import IR
from pdc.ir.nodes import MeshNode, ShardingNode

_MOMENTS = ("mu", "nu", "m", "v")


def make_mesh(ir: IR, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """The spec's mesh over `devices` (default: the first devices of this process's
    backend), with Auto axes: shardings are explicit at the step's boundary and GSPMD
    propagates them inside."""
    mesh = next(p for _, p in ir.nodes(MeshNode))
    names = tuple(a for a, _ in mesh.axes)
    shape = tuple(n for _, n in mesh.axes)
    devices = list(devices if devices is not None else jax.devices()[:mesh.devices])
    if len(devices) != mesh.devices:
        raise ValueError(f"the mesh {dict(mesh.axes)} needs {mesh.devices} devices; {len(devices)} are available")
    auto = getattr(getattr(jax.sharding, "AxisType", None), "Auto", None)
    if auto is not None:
        return jax.make_mesh(shape, names, axis_types=(auto,) * len(names), devices=devices)
    return Mesh(np.asarray(devices).reshape(shape), names)


def partition_specs(ir: IR) -> dict[str, PartitionSpec]:
    """IR tensor path → its PartitionSpec."""
    out = {}
    for _, node in ir.nodes(ShardingNode):
        out[node.tensor] = PartitionSpec(*[None if not axes else axes[0] if len(axes) == 1 else axes
                                           for axes in node.dims])
    return out


def _tokens(path: tuple[Any, ...]) -> list[str]:
    out = []
    for entry in path:
        if isinstance(entry, jax.tree_util.DictKey):
            out.append(str(entry.key))
        elif isinstance(entry, jax.tree_util.GetAttrKey):
            out.append(entry.name)
    return [t for t in out if t != "value"]


def tensor_name(group: str, tokens: list[str]) -> str | None:
    """The IR tensor a state leaf belongs to, or None for replicated scalars."""
    if group == "components":
        return "components." + ".".join(tokens)
    if group in ("ci", "ci_buffers"):
        return "ci." + ".".join(tokens)
    if group in ("opt_components", "opt_ci"):
        moments = [i for i, t in enumerate(tokens) if t in _MOMENTS]
        if not moments:
            return None
        rest = tokens[moments[0] + 1:]
        return ("components." if group == "opt_components" else "ci.") + ".".join(rest)
    if group == "adversaries":
        term, field, *rest = tokens
        return f"sources.{term}.{'.'.join(rest)}" if field in ("sources", "m", "v") and rest else None
    return None


def state_shardings(ir: IR, mesh: Mesh, state: Any) -> Any:
    """A NamedSharding for every leaf of a (possibly abstract) TrainState."""
    specs = partition_specs(ir)

    def leaf(path: tuple[Any, ...], _: Any) -> NamedSharding:
        group = path[0].name if isinstance(path[0], jax.tree_util.GetAttrKey) else str(path[0])
        name = tensor_name(group, _tokens(path[1:]))
        if name is not None and name not in specs:
            raise KeyError(f"state leaf {jax.tree_util.keystr(path)} has no IR tensor `{name}`")
        return NamedSharding(mesh, specs[name] if name is not None else PartitionSpec())

    return jax.tree_util.tree_map_with_path(leaf, state)


def params_shardings(ir: IR, mesh: Mesh, params: Any) -> Any:
    specs = partition_specs(ir)

    def leaf(path: tuple[Any, ...], _: Any) -> NamedSharding:
        name = "target." + ".".join(_tokens(path))
        if name not in specs:
            raise KeyError(f"target parameter `{name}` has no IR tensor")
        return NamedSharding(mesh, specs[name])

    return jax.tree_util.tree_map_with_path(leaf, params)


def batch_sharding(ir: IR, mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, partition_specs(ir)["batch"])


def pins_for(ir: IR, mesh: Mesh) -> "Pins":
    """Activation pins from the IR: the batch's mesh axes, the axes of V's C dim, and for
    the vocabulary of a chunk's logits every other mesh axis (tp)."""
    from pdc.decomp.pins import Pins

    shardings = {node.tensor: node.dims for _, node in ir.nodes(ShardingNode)}
    batch = shardings["batch"][0]
    c_axes = next((dims[-1] for name, dims in shardings.items() if name.startswith("components.") and name.endswith(".V")),
                  ())
    vocab = tuple(a for a in mesh.axis_names if a not in batch and mesh.shape[a] > 1)
    return Pins(mesh, tuple(batch), tuple(a for a in c_axes if a not in batch), vocab)
