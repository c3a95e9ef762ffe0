"""A checked spec flattened to `block.key` paths over its checked values, each with where it
comes from: what `pdc diff` compares. Front end only (no IR): later stages read the IR."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pdc.syntax.checked import Node, Spec
from pdc.syntax.family import is_path, where


def flatten(spec: Spec) -> dict[str, tuple[Any, str]]:
    """`block.key` → (checked value as JSON, where it comes from: file:line, `--set N`, or
    `default`). A file path compares as the file it names from the spec's directory."""
    out: dict[str, tuple[Any, str]] = {}
    base = Path(spec.path).resolve().parent if spec.path not in ("<string>", "<stdin>") else Path.cwd()
    for node in spec.root.children.values():
        _flatten(node, node.name, out, base)
    return out


def _flatten(node: Node, path: str, out: dict[str, tuple[Any, str]], base: Path) -> None:
    if node.label is not None:
        out[f"{path}.(label)"] = (node.label, where(node.header) if node.header else "")
    if node.keys is not None:
        for key, value in node.keys.model_dump(mode="json").items():
            origin = where(node.key_spans[key]) if key in node.explicit and key in node.key_spans else "default"
            if isinstance(value, str) and is_path(node.schema, key):  # the file it names, not the text
                value = os.path.normpath(base / value)
            out[f"{path}.{key}"] = (value, origin)
    for entry in node.entries:
        value = entry.value
        if hasattr(value, "model_dump"):
            for key, v in value.model_dump(mode="json").items():
                origin = where(entry.key_spans[key]) if key in entry.key_spans else "default"
                out[f"{path}.{entry.pattern.text}.{key}"] = (v, origin)
        else:
            out[f"{path}.{entry.pattern.text}"] = (plain(value), where(entry.span))
    for name, child in node.children.items():
        _flatten(child, f"{path}.{name}", out, base)


def plain(value: Any) -> Any:
    """A checked value as JSON-ready data (models dumped, dataclasses and tuples opened)."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "__dataclass_fields__"):
        return {k: plain(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    return value
