"""What every family reading an HF `config.json` shares (JAX-free, no family's names): finding
the file (`config`, else beside `weights`), reading it, its numbers checked, and the model's
dimensions resolved from it or from the spec's inline keys — a key written beside a
config.json must agree with it (PD0330). A family passes its own spec-key → config-field
table; its architecture checks (what pdc cannot run of it) stay its own."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from pdc.targets.base import TargetConfigError

UNRUNNABLE = "PD0406"  # a config.json pdc reads but cannot run: an input problem (exit 1), not a spec error
CONFLICT = "PD0330"  # a dimension written in the spec (or by --set) that its config.json contradicts


@dataclass(frozen=True)
class ConfigFile:
    """The HF config.json a target reads: named by `config`, or found beside `weights`
    (where every HF checkpoint keeps it)."""

    path: Path
    shown: str  # as the spec names it, for messages
    found: str  # "named by `config`" or "found beside `weights`"


def config_file(keys: Any, spec_dir: Path) -> ConfigFile | None:
    """`config` when given; else `config.json` in the `weights` directory (or beside a
    `weights` file) when it exists; else None (the dimensions are written inline). `keys`
    has the optional `config` and `weights` paths every HF family declares."""
    if keys.config is not None:
        return ConfigFile(spec_dir / keys.config, keys.config, "named by `config`")
    if keys.weights is None:
        return None
    weights = spec_dir / keys.weights
    folder = weights if weights.is_dir() else weights.parent
    if not (folder / "config.json").is_file():
        return None
    shown = Path(keys.weights) if weights.is_dir() else Path(keys.weights).parent
    return ConfigFile(folder / "config.json", str(shown / "config.json"), "found beside `weights`")


def read_config(path: Path, shown: str) -> dict[str, Any]:
    """An HF config.json as a dict, or a `TargetConfigError` saying what the file holds."""
    try:
        config = json.loads(path.read_text())
    except OSError as error:
        raise TargetConfigError(f"cannot read `{shown}`: {error.strerror or error}", "config") from None
    except ValueError as error:
        raise TargetConfigError(f"`{shown}` is not valid JSON: {error}", "config") from None
    if not isinstance(config, dict):
        raise TargetConfigError(f"`{shown}` is not a JSON object", "config")
    return config


def short(value: Any) -> str:
    """A config value for a message, cut to 60 characters."""
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def positive_number(value: Any, name: str, shown: str) -> float:
    """A forward setting read from config.json (`name` in `shown`), or PD0406 naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise TargetConfigError(f"`{name}` in `{shown}` must be a positive number, found {short(value)}", "config",
                                code=UNRUNNABLE)
    return float(value)


def _from_config(config: Mapping[str, Any], shown: str, fields: Mapping[str, str],
                 required: Sequence[str]) -> tuple[dict[str, int], dict[str, str]]:
    """The dimensions config.json gives (a null field counts as absent), each a positive
    integer, the `required` ones present."""
    values, origin = {}, {}
    for key, field in fields.items():
        value = config.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TargetConfigError(f"`{field}` in `{shown}` must be a positive integer, found {value!r}", "config")
        values[key], origin[key] = value, f"{field} in {shown}"
    missing = [fields[k] for k in required if k not in values]
    if missing:
        raise TargetConfigError(f"`{shown}` has no `{missing[0]}`", "config")
    return values, origin


def resolve_dims(keys: Any, config: ConfigFile | None, raw: Mapping[str, Any], fields: Mapping[str, str],
                 required: Sequence[str]) -> tuple[dict[str, int], dict[str, str]]:
    """The dimensions (spec key → value) and where each came from: config.json's (`raw`,
    read from `config`) with the keys written inline over them — one that contradicts it is
    PD0330 at the key, since pdc cannot run a model whose shapes contradict its checkpoint's
    description — or, without a config.json, the inline keys, all of `required` given."""
    inline = {k: getattr(keys, k) for k in fields if getattr(keys, k) is not None}
    if config is None:
        missing = [k for k in required if getattr(keys, k) is None]
        if missing:
            raise TargetConfigError(f"no `config` and no `{missing[0]}`: the model's dimensions are unknown", "",
                                    "give `config = \"path/config.json\"` (or a `weights` directory holding one) "
                                    "or all of " + ", ".join(f"`{k}`" for k in required))
        return inline, {k: f"`{k}` in the spec" for k in inline}
    values, origin = _from_config(raw, config.shown, fields, required)
    for key, value in inline.items():
        if key in values and values[key] != value:
            raise TargetConfigError(
                f"`{key} = {value}` contradicts `{fields[key]} = {values[key]}` in `{config.shown}`", key,
                f"the config.json ({config.found}) describes the checkpoint; remove `{key}`, or name the "
                "model's own config.json", code=CONFLICT)
        values[key], origin[key] = value, f"`{key}` in the spec"
    return values, origin
