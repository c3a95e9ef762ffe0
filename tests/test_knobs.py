"""No silent knobs: every key of the language must be read by some pass or lowering
stage, which declares it in its module's `CONSUMES`. Keys whose stage does not exist
yet are listed in PENDING with that stage; the list may only shrink (a key that gains
a reader must leave it), and a new key with no reader fails here."""

from __future__ import annotations

import importlib
import pkgutil

import pdc.lower
import pdc.passes
import pdc.run
from pdc.registry import SPEC

# key → the stage that will read it, for keys added before their stage exists (none today)
PENDING: dict[str, str] = {}


def registry_keys() -> set[str]:
    keys = set()
    for path, schema in SPEC.walk():
        prefix = ".".join(path[1:])
        keys |= {f"{prefix}.{k}" for k in schema.key_names() if k != "fn"}
        if schema.entry_keys is not None:
            keys |= {f"{prefix}.<entry>.{k}" for k in schema.entry_keys.model_fields}
        if schema.entries is not None and schema.entry_keys is None:
            keys.add(f"{prefix}.<{schema.entries.value}>")
    return keys


def declared() -> set[str]:
    found: set[str] = set()
    for package in (pdc.passes, pdc.lower, pdc.run):
        for module in pkgutil.iter_modules(package.__path__):
            found |= set(getattr(importlib.import_module(f"{package.__name__}.{module.name}"), "CONSUMES", ()))
    return found


def test_every_key_has_a_reader() -> None:
    missing = registry_keys() - declared() - set(PENDING)
    assert not missing, f"keys no stage reads (silent knobs): {sorted(missing)}"


def test_pending_keys_really_have_no_reader_yet() -> None:
    assert not set(PENDING) & declared(), "a pending key now has a reader: remove it from PENDING"
    assert set(PENDING) <= registry_keys(), "PENDING names a key the registry does not have"


def test_declarations_name_real_keys() -> None:
    unknown = declared() - registry_keys()
    assert not unknown, f"CONSUMES names keys the registry does not have: {sorted(unknown)}"
