"""The `eval` block's keys, read once: shared by eval passes and by the train step, whose
`ci_l0/<site>` metric uses eval's `alive_threshold` so the training curve and the eval record
count the same thing. They are the registry's own checked model, `EvalKeys`, with its
defaults when the spec has no `eval` block."""
from __future__ import annotations

from pdc.registry.observe import EvalKeys
from pdc.syntax.checked import Node


def eval_options(node: Node | None) -> EvalKeys:
    """The checked keys of an `eval` block, or the registry's defaults without one."""
    if node is None:
        return EvalKeys()
    assert isinstance(node.keys, EvalKeys), "a validated eval block carries EvalKeys"
    return node.keys
