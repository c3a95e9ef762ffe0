"""Every diagnostic code pdc emits, with a one-line title for the docs index.

Ranges: PD00xx reading files, PD01xx syntax, PD02xx the registry (blocks, keys,
values), PD03xx the IR passes (sites, shapes, sharding), PD05xx the dry-run.
`docs/diagnostics.md` is generated from this table and the golden cases in
`tests/golden/`; a test fails when a code has no golden case.
"""

from __future__ import annotations

CODES: dict[str, str] = {
    "PD0001": "the spec file cannot be read (missing, too large, or not UTF-8)",
    "PD0002": "brackets nested too deep",
    "PD0101": "unexpected character",
    "PD0102": "unexpected token (a missing `=`, value, `,` or key)",
    "PD0103": "unexpected end of file (an unclosed block or list)",
    "PD0104": "unterminated string",
    "PD0105": "malformed site pattern (empty range, empty alternative)",
    "PD0106": "invalid number literal",
    "PD0201": "unknown block (or a key written as a block)",
    "PD0202": "unknown key (or a block written as a key)",
    "PD0203": "a key, block or entry defined twice",
    "PD0204": "a required key is missing",
    "PD0205": "a required block is missing or empty",
    "PD0206": "a value of the wrong type",
    "PD0207": "a value out of range",
    "PD0208": "an unknown name where one of a fixed set is expected",
    "PD0209": "an unknown unit, or a unit that does not apply to the key",
    "PD0210": "an unknown label (target family, data kind, CI network)",
    "PD0211": "a block that needs a label has none",
    "PD0212": "a label on a block that takes none",
    "PD0214": "a malformed call (unknown function or argument, too many arguments)",
    "PD0215": "not exactly one `spec NAME { ... }` block in the file",
    "PD0216": "a site pattern where a plain name is required",
    "PD0217": "a list of the wrong length",
}
