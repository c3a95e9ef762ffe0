"""The `eval` block's keys, read once: shared by eval passes and by the train step, whose
`ci_l0/<site>` metric uses eval's `alive_threshold` so the training curve and the eval record
count the same thing. They are the registry's own checked model, `EvalKeys`, with its
defaults when the spec has no `eval` block."""
from __future__ import annotations

from pdc.ir.graph import IR
from pdc.registry.observe import EvalKeys


def eval_options(ir: IR) -> EvalKeys:
    """The checked keys of the `eval` block, or the registry's defaults without one."""
    keys = ir.options("eval")
    assert isinstance(keys, EvalKeys), "the options pass gives every IR an eval node"
    return keys
