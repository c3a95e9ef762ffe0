"""Did-you-mean suggestions for unknown names."""

from __future__ import annotations

import difflib
from typing import Iterable


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The most similar candidate, if any is close enough to be a plausible typo."""
    options = list(candidates)
    folded = {c.lower(): c for c in options}
    if name.lower() in folded:
        return folded[name.lower()]
    matches = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    if matches:
        return matches[0]
    longer = [c for c in options if c.startswith(name)] if len(name) >= 3 else []  # `sparse` → `sparse_features`
    return longer[0] if len(longer) == 1 else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """` — did you mean `x`?` or the empty string."""
    match = closest(name, candidates)
    return f" — did you mean `{match}`?" if match else ""


def one_of(candidates: Iterable[str], limit: int = 12) -> str:
    names = [f"`{c}`" for c in candidates]
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
