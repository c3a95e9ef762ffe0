"""Read a compiled (SPMD-partitioned) HLO module: every instruction's per-device output
bytes, opcode and `named_scope` path, so buffers and collectives map to spec blocks."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ARRAY = re.compile(r"\b(pred|s8|s16|s32|s64|u8|u16|u32|u64|f16|bf16|f32|f64|c64|c128|f8\w*)\[([\d,]*)\]")
_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4, "f32": 4,
          "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16}
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_SCOPE = re.compile(r"^(clean|ci|loss\.[\w.]+|optimize\.\w+|decompose\.\w+)$")
COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")
_SKIP = {"parameter", "tuple", "get-tuple-element", "bitcast", "constant", "copy-start", "copy-done", "while",
         "conditional", "call"}


@dataclass(frozen=True)
class Instruction:
    name: str
    opcode: str
    shapes: tuple[tuple[str, tuple[int, ...]], ...]  # (dtype, dims) of each output array
    op_name: str

    @property
    def bytes(self) -> int:
        total = 0
        for dtype, dims in self.shapes:
            n = 1
            for d in dims:
                n *= d
            total += n * _BYTES.get(dtype, 1)
        return total

    @property
    def scope(self) -> str:
        """The pdc scopes it ran under, outermost first (`loss.stochastic_recon/decompose.up_proj`), or `-`."""
        found: list[str] = []
        for part in self.op_name.split("/"):
            inner = re.sub(r"^(?:\w+\()+|\)+$", "", part)
            if _SCOPE.match(inner) and inner not in found:
                found.append(inner)
        return "/".join(found) or "-"

    @property
    def phase(self) -> str:
        """forward / backward / recompute, read from JAX's transformation names."""
        if "remat" in self.op_name or "checkpoint" in self.op_name:
            return "recompute" if "transpose(" in self.op_name else "forward"
        return "backward" if "transpose(" in self.op_name else "forward"

    def shape_text(self) -> str:
        return ", ".join(f"{d}[{','.join(map(str, dims))}]" for d, dims in self.shapes)


def split_type(rest: str) -> tuple[str, str]:
    """`(f32[2], s32[]) all-reduce(...)` → (type text, remainder)."""
    if rest.startswith("("):
        depth = 0
        for i, ch in enumerate(rest):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0:
                return rest[:i + 1], rest[i + 1:].lstrip()
    head, _, tail = rest.partition(" ")
    return head, tail


def parse(text: str) -> list[Instruction]:
    out = []
    for line in text.splitlines():
        left, sep, rest = line.strip().partition(" = ")
        if not sep or left.startswith(("HloModule", "//")):
            continue
        type_text, remainder = split_type(rest)
        opcode = remainder.split("(", 1)[0].strip()
        if not opcode or " " in opcode:
            continue
        shapes = tuple((m.group(1), tuple(int(d) for d in m.group(2).split(",") if d)) for m in _ARRAY.finditer(type_text))
        op_name = _OP_NAME.search(line)
        out.append(Instruction(left.replace("ROOT ", "").lstrip("%"), opcode, shapes, op_name.group(1) if op_name else ""))
    return out


def largest(instructions: list[Instruction], n: int = 10) -> list[Instruction]:
    """The n largest materialised arrays (parameters, tuples, loops and views excluded:
    a loop's tuple only aliases the buffers of its body)."""
    real = [i for i in instructions if i.opcode not in _SKIP and len(i.shapes) == 1]
    return sorted(real, key=lambda i: -i.bytes)[:n]


def collectives(instructions: list[Instruction]) -> list[Instruction]:
    return [i for i in instructions if i.opcode.removesuffix("-start") in COLLECTIVES]
