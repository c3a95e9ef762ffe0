"""What a loss term is: its spec block (keys model, sub-blocks), its role in the objective,
whether it keeps state between steps, and its lowering."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping

from pdc.registry.schema import BlockSchema, LabelKind
from pdc.registry.types import Keys

# reconstruction: a masked forward against the clean output (needs ≥ 1 in a spec);
# importance: the CI sparsity penalty (exactly 1); faithfulness: W against V·U;
# penalty: any other term added to the total (no rule on how many).
Role = Literal["reconstruction", "importance", "faithfulness", "penalty"]


@dataclass(frozen=True)
class TermValue:
    """What a term's lowering returns: the unweighted `value` (the total adds weight · value),
    a penalty added to the total as it is (`extra_loss`, already weighted; None: none), and metrics."""

    value: Any
    extra_loss: Any = None
    metrics: Mapping[str, Any] = field(default_factory=dict)


# (the term's plan: name, weight, keys; the step's `TermContext`) → its value
Lower = Callable[[Any, Any], "TermValue | Any"]


@dataclass(frozen=True)
class LossTerm:
    name: str
    keys: type[Keys]
    role: Role
    lower: Lower
    children: tuple[BlockSchema, ...] = ()
    state: Literal["sources"] | None = None  # persistent adversarial sources in the train state
    # in-tree terms: the index of the term's random stream and its place in the registry's order
    # (never reused or renumbered: runs must replay); out-of-tree terms follow, in name order
    stream: int | None = None

    @property
    def repeatable(self) -> bool:
        """Whether a spec may hold several named instances of the term (`stochastic_recon all
        { ... }` and `stochastic_recon subset { ... }`): any term but the importance and
        faithfulness terms (one each by definition) and a stateful one (its sources live in
        the train state under the term's name)."""
        return self.role in ("reconstruction", "penalty") and self.state is None

    @property
    def schema(self) -> BlockSchema:
        """The term's block in the spec language (`loss { NAME { ... } }`, or `loss { NAME
        LABEL { ... } }` for a named instance of a repeatable term)."""
        return BlockSchema(self.name, self.keys.__doc__ or "", keys=self.keys, children=self.children,
                           label=LabelKind.INSTANCE if self.repeatable else LabelKind.NONE)
