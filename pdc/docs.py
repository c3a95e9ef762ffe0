"""Generate `docs/language.md` (from the registry) and `docs/diagnostics.md` (from the
code table and the golden cases). `python -m pdc.docs` rewrites both; a test fails
when the committed files are stale, so the docs cannot drift from the language.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic_core import PydanticUndefined

from pdc.registry import SPEC
from pdc.registry.schema import BlockSchema, Entries, LabelKind
from pdc.registry.types import CallValue, Schedule
from pdc.syntax.codes import ANALYZE_CODES, CODES, ENVIRONMENT_CODES, RUN_CODES
from pdc.syntax.values import describe, field_annotation, union_arms, unwrap

ROOT = Path(__file__).resolve().parents[1]
LANGUAGE_INTRO = """# The pdc spec language

Generated from the registry (`pdc/registry/`) by `python -m pdc.docs`; do not edit by hand.

A spec file holds exactly one `spec NAME { ... }` block. Inside it, blocks are
`name label? { items }` and keys are `name = value`; items are separated by spaces or
new lines, and their order within a block does not matter except where noted (shard
rules and mesh axes are ordered). `#` starts a comment, kept by `pdc fmt`. Defining a
key twice is an error that shows both places.

**Values.** Numbers with optional units: `20`, `1e-3`, `-2`, `10_000`; count suffixes
`20k` (×10³), `1M` (×10⁶), `1G` (×10⁹); fractions `10%`; sizes `80 GiB`, `512 MiB`,
`1 TiB`, `4 GB` (also written attached: `80GiB`; `B` for bytes). Strings `"..."`
(escapes `\\"`, `\\\\`, `\\n`, `\\t`), relative paths resolved from the spec file's
directory. Names: `true`, `false`, `none`, `bf16`, `uniform_k_subset`. Lists `[a, b]`.
Calls, for schedules and a few options: `cosine(1e-3, final = 0.1)`.

**Schedules.** Wherever a key's type is *schedule*, write a number (constant) or:
`constant(v, warmup = 2.5%)`; `linear(start, end)` or `linear(start, final = f)`;
`cosine(start, final = f)` (`final` is a fraction of `start`, default 0 — the curve ends
at `start·final` on the last step); options `warmup` (a fraction of the run like
`2.5%`/`0.025`, or a step count like `500`), `start_frac`, `end_frac` (the part of the run
over which the curve moves, as for p annealing: `linear(2.0, 0.4, end_frac = 0.8)`).

**Site patterns** name weight matrices of the target's module tree: `linear1`,
`layers.0.mlp_in`, `layers[18..23].self_attn.{q_proj, k_proj}` (inclusive ranges,
alternations with an optional shared suffix: `{q, k, v}_proj`), `*` for exactly one
path segment, `**` for one or more. Shard rules use the same patterns over tensor
paths (`components.*.V`, `ci.**`).

**Determinism classes.** *decomposition* blocks (target, data, decompose, ci, loss,
optimize, train) determine the trained weights; *runtime* blocks (mesh, shard, remat,
precision) may change numerics but not the algorithm; *observation* blocks (budget,
checkpoint, log, eval) never change the trained weights. pdc hashes the first two
classes separately and stores both hashes with every run.

**Formatting.** `pdc fmt` sorts keys and sub-blocks into the order of the tables below,
keeps the order of user-named entries, prints a block on one line when it is marked
*compact*, holds at most three items and no comments, and fits in 100 columns, and
aligns the `=` of shard rules.
"""


def literal_text(annotation: Any, value: Any) -> str:
    """A default value written the way a spec would write it."""
    if value is PydanticUndefined:
        return "*required*"
    if value is None:
        return "`none`"
    return f"`{_literal(annotation, value)}`"


def _literal(annotation: Any, value: Any) -> str:
    base, unit = unwrap(annotation)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, CallValue):
        return _call_text(value)
    if isinstance(value, str):
        return value if _is_name(base) else f'"{value}"'
    if isinstance(value, (list, tuple)):
        element = get_args(base)[0] if get_args(base) else Any
        return "[" + ", ".join(_literal(element, v) for v in value) + "]"
    if isinstance(value, float):
        return _number(value, unit.kind if unit else None)
    return str(value)


def _is_name(annotation: Any) -> bool:
    arms = union_arms(annotation) or (annotation,)
    return any(get_origin(unwrap(a)[0]) is not None and "Literal" in str(get_origin(unwrap(a)[0])) for a in arms)


def _number(value: float, unit: str | None) -> str:
    if unit == "fraction" and 0 < value < 1:
        return f"{value * 100:g}%"
    return f"{value:g}" if abs(value) < 1e5 else f"{value:.0e}".replace("e+0", "e").replace("e+", "e")


def _call_text(value: CallValue) -> str:
    if isinstance(value, Schedule) and value.fn == "constant" and not value.warmup:
        return _number(value.start, None)
    fields = type(value).model_fields
    args = [_number(getattr(value, n), None) for n in type(value).positional if getattr(value, n) is not None]
    kwargs = [f"{n} = {_literal(field_annotation(type(value), n), getattr(value, n))}"
              for n, info in fields.items() if n not in type(value).positional and n != "fn"
              and getattr(value, n) != info.default]
    return f"{value.fn}({', '.join(args + kwargs)})"


def _type_text(annotation: Any) -> str:
    arms = union_arms(unwrap(annotation)[0]) or ()
    optional = " (or `none`)" if type(None) in arms else ""
    return describe(annotation).replace("|", "\\|") + optional


def _key_table(schema: BlockSchema) -> list[str]:
    if schema.keys is None:
        return []
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, info in schema.keys.model_fields.items():
        if name == "fn":
            continue
        annotation = field_annotation(schema.keys, name)
        constraints = ", ".join(_constraint(m) for m in info.metadata if _constraint(m))
        meaning = (info.description or "") + (f" ({constraints})" if constraints else "")
        rows.append(f"| `{name}` | {_type_text(annotation)} | {literal_text(annotation, info.default)} | {meaning} |")
    return rows + [""]


def _constraint(meta: Any) -> str:
    for attr, symbol in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
        if hasattr(meta, attr) and type(meta).__name__.lower() == attr:
            return f"{symbol} {getattr(meta, attr)}"
    return ""


def _block_section(path: tuple[str, ...], schema: BlockSchema) -> list[str]:
    title = " › ".join(path[1:]) or "spec"
    lines = [f"## `{title}`", "", " ".join(schema.doc.split()), ""]
    facts = []
    if schema.determinism is not None:
        facts.append(f"class: *{schema.determinism.value}*")
    facts.append("required" if schema.required else "optional")
    if schema.label is LabelKind.VARIANT:
        facts.append("label: " + ", ".join(f"`{v.name}`" for v in schema.variants))
    elif schema.label is LabelKind.NAME:
        facts.append("label: a name")
    elif schema.label is LabelKind.INSTANCE:
        facts.append(f"label: an optional instance name (`{path[-1]} NAME {{ ... }}`; named blocks may repeat)")
    facts.append(f"layout: {schema.layout.value}")
    lines += ["*" + "; ".join(facts) + "*", ""]
    if schema.entries is not None:
        lines += [f"Entries: {_ENTRY_DOC[schema.entries]}", ""]
    if schema.entry_keys is not None:
        lines += _key_table(BlockSchema("entry", "", keys=schema.entry_keys))
    return lines + _key_table(schema)


_ENTRY_DOC = {
    Entries.SITES: "`site-pattern { options }`, one per group of sites (options below).",
    Entries.RULES: "`tensor-pattern = [axis | _ | [axes], ...]` or `tensor-pattern = preset`, ordered.",
    Entries.AXES: "`axis = size`, ordered (the mesh's axis order).",
    Entries.PATTERNS: "`site-pattern = identity` or `site-pattern = dense(k)`.",
}


FAMILIES = """## Spec families: `import`, `param`, `sweep`

Families of near-identical runs are written once (`pdc/syntax/family.py`,
`pdc/syntax/sweep.py`); everything resolves, before validation, to one ordinary spec.

**`import "base.pd"`** (top of the file, one per line; the path is relative to the file
that holds the line) merges the imported file's `spec` or `base` block under this file's
own `spec NAME { ... }`, key by key, later wins: a key replaces the key; a block merges
into the block of the same name, and replaces it whole when its label differs (`data
tokens` over `data corpus`); an entry (a site, a shard rule, a mesh axis, a CI pattern)
merges into the entry written the same way, and new ones are appended (shard rules are
ordered: an appended rule comes last). A key cannot be removed, only replaced. Several
imports merge in order. An import is read and parsed, never executed, and must stay inside
the *project root*: the nearest directory at or above the root spec holding `.git`,
`pyproject.toml` or `pdc.toml` (else the root spec's directory). Cycles are PD0601, a path
outside the root PD0603, an unreadable file PD0606. Relative file paths (`weights`,
`path`, `tokenizer`) in an imported file are rewritten to stay correct from the importing
spec's directory. A file with imports and no `spec` block (a sweep file) resolves to the
spec it imports. `import` is a keyword, never a name: no key, label or value may be
called `import` (a key written `import = ...` is PD0102).

**`base NAME { ... }`** in place of `spec` is a partial spec, meant only to be imported:
`pdc check` checks what it holds but forgives missing required keys and blocks;
`pdc compile` and `pdc train` refuse it.

**Parameters.** `param lr { type = float default = 1e-3 doc = "peak learning rate" }`
at the top level declares a typed parameter (`int`, `float`, `bool`, `string`, `name`,
`any`); `$lr` anywhere a value goes (also inside lists and calls) is replaced by its
value. One family shares one namespace: a file binds a parameter declared by itself or by
an import with `params { lr = 3e-3 }` (the importer's binding wins); declaring a name
twice in a family is PD0604 (shadowing), a `$name` or binding without a declaration
PD0602, a value of another type PD0607, a declaration never used a PD0605 warning.

**Provenance.** Every resolved value keeps the place it was written: `file:line` (the
imported file's own line for an inherited key, the binding's line for a parameter) or
`--set N`. `pdc check --plan` lists it under *provenance*, `--format json` as
`provenance`, and `pdc train` records it in `run.json` (`provenance`, `spec_files`);
RUN/spec.pd is the resolved spec, self-contained.

**Sweeps.** `sweep NAME { grid { ... } zip { ... } }` at the top level of a file (one per
file; an imported file's sweep is not inherited) expands to named points. Keys are `--set` paths (`train.seed`,
`decompose.linear1.C`, `loss.importance_minimality.weight`) or `params.NAME`; values are
lists. A `grid` varies its keys independently (every combination, first key slowest), a
`zip` varies them together (equal lengths, else PD0610); several blocks multiply in
order. A point is named after what it sets: `seed1-batch32` (`p0`, `p1`, ... when such
names would collide). `pdc check` checks every point; `pdc compile` dry-runs every point
and prints one table (point, changed keys, decomposition hash, per-device peak, verdict),
compiling each distinct program once — points that differ only in `seed` keys or
observation blocks share a compile (keyed by a hash of the resolved decomposition and
runtime blocks and the budget, seeds removed) — and exits 2 if a point does not fit.
`pdc train SWEEP --point NAME` trains one point into `runs/<spec>-<point>`;
`pdc train SWEEP --slurm` prints a SLURM array script with one task per point.

    import "tms_5-2.pd"

    sweep seeds {
      grid { train.seed = [0, 1, 2, 3, 4, 5, 6, 7] }
    }

**`pdc diff A B`** compares two resolved specs (files, run directories, or git revisions
`HEAD:specs/x.pd` / `git:REV:path`, whose imports are read from the working tree) key by
key over checked values and defaults, with provenance, grouped by determinism class:
*decomposition*, *runtime*, *observation only*. `--compile` adds both dry-runs'
per-device memory and the peak groups that changed; `--format json` for bots. Exit 0
equal, 1 different, 2 when a side does not check.
"""


def language_md() -> str:
    lines = [LANGUAGE_INTRO, FAMILIES]
    for path, schema in SPEC.walk():
        lines += _block_section(path, schema)
    return "\n".join(lines).rstrip() + "\n"


# ---- diagnostics -------------------------------------------------------------------

_HEADER = re.compile(r"^(?P<file>\S+):\d+:\d+: (error|warning)\[(?P<code>PD\d{4})\]: ")


def golden_examples(golden: Path) -> dict[str, tuple[str, str]]:
    """code → (case name, the diagnostic's rendered text) from the first golden case showing it."""
    found: dict[str, tuple[str, str]] = {}
    for expected in sorted(golden.glob("*/expected.txt")):
        for block in _diagnostic_blocks(expected.read_text(errors="replace")):
            match = _HEADER.match(block)
            if match and match.group("code") not in found:
                found[match.group("code")] = (expected.parent.name, block)
    return found


def _diagnostic_blocks(text: str) -> list[str]:
    blocks: list[str] = []
    for line in text.splitlines():
        if _HEADER.match(line):
            blocks.append(line)
        elif blocks and line.startswith("   "):
            blocks[-1] += "\n" + line
    return blocks


def diagnostics_md(golden: Path) -> str:
    examples = golden_examples(golden)
    lines = ["# Diagnostics", "",
             "Generated by `python -m pdc.docs` from `pdc/syntax/codes.py` and the golden cases in",
             "`tests/golden/`; do not edit by hand.", "",
             "Every problem is reported as `path:line:col: error[PDnnnn]: summary`, the offending",
             "span underlined, related places as `note:` lines and fixes as `help:` lines; all",
             "problems of a file are reported in one run, sorted by position. `--format json`",
             "emits the same data (schema `pdc.diagnostics/1`). Exit codes: 0 ok, 1 an input file the",
             "spec names is bad (PD04xx only) or an internal error (a reproducer file is written), 2 spec error.", "", "| code | meaning |", "|---|---|"]
    lines += [f"| [{code}](#{code.lower()}) | {title} |" for code, title in CODES.items()]
    for code, title in CODES.items():
        lines += ["", f"## {code}", "", title[0].upper() + title[1:] + ".", ""]
        if code in examples:
            case, block = examples[code]
            lines += [f"From `tests/golden/{case}/spec.pd`:", "", "```", block, "```"]
        else:
            lines += ["*(no golden example yet)*"]
    lines += ["", "## Run-directory codes (`pdc migrate`)", "",
              "About a run directory and a spec together, so no spec alone shows them (no golden case);",
              "`tests/test_migrate.py` makes each one.", "", "| code | meaning |", "|---|---|"]
    lines += [f"| {code} | {title} |" for code, title in RUN_CODES.items()]
    lines += ["", "## Environment codes", "",
              "About what this machine has installed, not about the spec, so no golden case shows them;",
              "`tests/test_wandb.py` makes each one.", "", "| code | meaning |", "|---|---|"]
    lines += [f"| {code} | {title} |" for code, title in ENVIRONMENT_CODES.items()]
    lines += ["", "## Analysis codes (`pdc harvest`, the harvest store)", "",
              "About a run directory, a token file and a store together, so no spec alone shows them (no golden",
              "case); `tests/test_harvest.py` makes each `pdc harvest` one. A token file that does not fit the",
              "run's target is reported with the token checker's PD042x codes above.", "",
              "| code | meaning |", "|---|---|"]
    lines += [f"| {code} | {title} |" for code, title in ANALYZE_CODES.items()]
    return "\n".join(lines) + "\n"


def write_docs(root: Path = ROOT) -> list[Path]:
    docs = root / "docs"
    docs.mkdir(exist_ok=True)
    targets = {docs / "language.md": language_md(), docs / "diagnostics.md": diagnostics_md(root / "tests" / "golden")}
    for path, text in targets.items():
        path.write_text(text)
    return list(targets)


if __name__ == "__main__":
    for written in write_docs():
        print(f"wrote {written.relative_to(ROOT)}", file=sys.stderr)
