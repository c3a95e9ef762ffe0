"""The layout is the pipeline (`syntax → ir → passes → lower → inspect → run`): a module
imports only its own stage and earlier ones, and past the passes nothing reads the spec's
blocks — the lowering and the run read the typed IR nodes the passes write. Read from the
source (every import, including those inside functions), so a shortcut fails here, not in
review.

Plugin modules span stages: a target family (`pdc/targets/<family>/`) is its keys and shape
(`__init__.py`: stage `targets`, JAX-free, imported by `pdc check`), its JAX model, loader and
pretraining recipe (every other module of it — `model.py`, and e.g. llama's `hf.py` and
`runtime.py` —: stage `models`, so they may use `pdc.models` and `pdc.decomp` as the models
did, never the lowering or the run) and its figures (`plot.py`: stage `plot`, which may read a
loaded run, as pdc/plot does). A one-file family (`pdc/targets/<family>.py`) would be stage
`targets` throughout, so it could hold no JAX: a family with a model is a package. Each
part is held to the rules of the stage it belongs to. A family is one place: nothing outside
it imports it or writes its name as a string (the dispatch iterates `pdc.targets.FAMILIES`),
so deleting it leaves nothing dangling."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import REPO

PDC = REPO / "pdc"
# stage → the stages it must never import (later ones)
LATER = {
    "syntax": ("ir", "passes", "lower", "inspect", "run", "models", "decomp", "ci", "analyze", "api", "cli"),
    "registry": ("syntax", "ir", "passes", "lower", "inspect", "run", "models", "decomp", "analyze", "api", "cli"),
    "terms": ("syntax", "ir", "passes", "lower", "inspect", "run", "ci", "analyze", "api", "cli"),
    # a CI network spans registry keys → the build_ci pass → the lowering's module, like a term:
    # its keys are read by the registry, its `shapes` and `build` import the IR and JAX when called
    "ci": ("lower", "inspect", "run", "models", "analyze", "api", "cli"),
    "targets": ("ir", "passes", "lower", "inspect", "run", "models", "decomp", "ci", "analyze", "api", "cli"),
    "inputs": ("ir", "passes", "lower", "inspect", "run", "models", "decomp", "ci", "analyze", "api", "cli"),
    "ir": ("passes", "lower", "inspect", "run", "models", "decomp", "ci", "analyze", "api", "cli"),
    "passes": ("lower", "inspect", "run", "models", "decomp", "analyze", "api", "cli"),
    "decomp": ("syntax", "passes", "lower", "inspect", "run", "analyze", "api", "cli"),
    "models": ("passes", "lower", "inspect", "run", "analyze", "api", "cli"),
    "lower": ("inspect", "run", "analyze", "api", "cli"),
    "inspect": ("run", "analyze", "api", "cli"),
    "run": ("analyze", "api", "cli"),
    "analyze": ("api", "cli"),
}
SPEC_READS = re.compile(r"\bspec\.block\(|\.block\(\"|\bspec\.blocks_of\(|\.root\.children\b")


def _modules() -> list[Path]:
    return sorted(PDC.rglob("*.py"))


def _stage(path: Path) -> str:
    rel = path.relative_to(PDC)
    if rel.parts[0] == "targets" and len(rel.parts) == 3:  # pdc/targets/<family>/<module>.py: see the docstring
        return {"__init__": "targets", "plot": "plot"}.get(path.stem, "models")
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found += [(node.lineno, n) for n in names if n.startswith("pdc.")]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("pdc.")]
    return found


def test_no_stage_imports_a_later_one() -> None:
    backward = []
    for path in _modules():
        forbidden = LATER.get(_stage(path), ())
        for line, name in _imports(path):
            if name.split(".")[1] in forbidden:
                backward.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    assert not backward, "backward imports:\n" + "\n".join(backward)


def test_only_the_front_end_and_the_passes_read_spec_blocks() -> None:
    readers = []
    for path in _modules():
        if _stage(path) in ("syntax", "passes"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if SPEC_READS.search(line):
                readers.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not readers, "spec blocks read past the passes (read the IR's typed nodes):\n" + "\n".join(readers)


def test_no_hand_kept_consumes_lists() -> None:
    """Keys are shown consumed by use (tests/test_key_use.py), not by listing them."""
    listed = [str(p.relative_to(REPO)) for p in _modules() if re.search(r"^CONSUMES\b", p.read_text(), re.M)]
    assert not listed, listed


def test_one_grammar_file() -> None:
    grammars = [p.relative_to(REPO) for p in REPO.rglob("*.lark") if ".venv" not in p.parts and "build" not in p.parts]
    assert [str(p) for p in grammars] == ["pdc/syntax/pdc.lark"]


# A name that picks a file's code (a CI network's `ci` label, …) is written as a string in that
# file only (and in tests and docs, outside pdc/): elsewhere the code iterates the registry.
# name → (its file, the pdc/ paths — prefixes — where the same word means something else).
CI_NETWORKS: dict[str, tuple[Path, tuple[str, ...]]] = {
    p.stem: (p, ()) for p in (PDC / "ci").glob("[!_]*.py") if p.stem != "base"}
# `mlp` is also a Llama block's MLP half (targets' site kinds and norms) and the transformer CI's
# MLP width key
CI_NETWORKS["mlp"] = (PDC / "ci" / "mlp.py", ("targets/", "models/", "inputs/", "ci/_shapes.py",
                                              "ci/chunkwise_transformer.py"))


def _named_outside_their_files(table: dict[str, tuple[Path, tuple[str, ...]]]) -> list[str]:
    """Every string constant equal to a name of `table` in a pdc module other than the name's
    own file (and the paths its other meaning lives in)."""
    strays = []
    for path in _modules():
        rel = path.relative_to(PDC).as_posix()
        constants = [n for n in ast.walk(ast.parse(path.read_text()))
                     if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in table]
        for node in constants:
            home, elsewhere = table[node.value]
            if path != home and not rel.startswith(elsewhere):
                strays.append(f"{path.relative_to(REPO)}:{node.lineno} writes {node.value!r}")
    return strays


def test_ci_networks_are_named_in_their_own_files_only() -> None:
    assert len(CI_NETWORKS) >= 6, sorted(CI_NETWORKS)
    strays = _named_outside_their_files(CI_NETWORKS)
    assert not strays, "a CI network named outside pdc/ci/<name>.py (iterate pdc.ci.NETWORKS):\n" + "\n".join(strays)


# ---- a plugin is one place ----------------------------------------------------------------------

# families built on another one's code, as declared in their docstrings (`Variant`s of llama)
BUILT_ON = {"simple_mlp": ("llama",)}


def in_tree_families() -> dict[str, Path]:
    """family name → its file or package, for every in-tree `pdc/targets` module that defines
    `FAMILY` (read from the source: a family added or deleted changes the table)."""
    table = {}
    for path in sorted((PDC / "targets").iterdir()):
        source = path / "__init__.py" if path.is_dir() else path
        if path.name.startswith("_") or source.suffix != ".py" or not source.is_file():
            continue
        match = re.search(r"^NAME = \"(\w+)\"", source.read_text(), re.M)
        if match and re.search(r"^FAMILY = ", source.read_text(), re.M):
            table[match.group(1)] = path
    return table


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string constant in a module except docstrings (those are prose, like docs/)."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant) and isinstance(node.body[0].value.value, str)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def _inside(path: Path, home: Path) -> bool:
    return path == home or home in path.parents


def names_written_outside(table: dict[str, Path]) -> list[str]:
    """`path:line` of every string in pdc/ (docstrings aside) that writes a plugin's name (the
    keys of `table`, name → its file or package) as a word outside that plugin's own file:
    the names a registry should be iterated for instead. Tests and docs may name them."""
    found = []
    words = {name: re.compile(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])") for name in table}
    for path in _modules():
        strings = _strings(ast.parse(path.read_text()))
        for name, home in table.items():
            if _inside(path, home):
                continue
            found += [f"{path.relative_to(REPO)}:{line} writes {value!r}" for line, value in strings
                      if words[name].search(value)]
    return found


def test_no_family_name_is_written_outside_its_family() -> None:
    families = in_tree_families()
    assert {"tms", "resid_mlp", "llama", "simple_mlp"} <= set(families), families
    written = names_written_outside(families)
    assert not written, "target family names written outside the family (iterate pdc.targets.FAMILIES):\n" + \
        "\n".join(written)


def test_nothing_outside_a_family_imports_it() -> None:
    """Only the discovery (`pdc.plugins.extensions`, by package scan) loads a family; a family
    built on another's code says so in `BUILT_ON`."""
    families = in_tree_families()
    outside = []
    for path in _modules():
        for name, home in families.items():
            users = [home] + [families[u] for u, bases in BUILT_ON.items() if name in bases and u in families]
            if any(_inside(path, h) for h in users):
                continue
            module = f"pdc.targets.{name}"
            outside += [f"{path.relative_to(REPO)}:{line} imports {imported}" for line, imported in _imports(path)
                        if imported == module or imported.startswith(module + ".")]
    assert not outside, "a family imported from outside it:\n" + "\n".join(outside)
