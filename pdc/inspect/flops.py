"""Matmul FLOPs of one train step: counted on the compiled, optimized module (what runs), or
analytically on the traced program.

`hlo_flops` (the dry-run's count) reads the optimized, SPMD-partitioned module XLA compiled —
one device's program — so what XLA deleted as dead code (a warm-up ascent's unused KL value)
or merged is not counted, and what the step recomputes (remat) is: every `dot` (2 · output
elements · contracted size, split-K and Triton GEMM fusions included), every cuBLAS GEMM
custom call (the same, from its dot dimensions), cuDNN's fused attention by its dense formula
(forward 4 · B · H · Sq · Sk · D, its backward 2.5× that, as if no causal block were
skipped), a while loop's body times its known trip count (nested loops multiply), a
conditional by its costliest branch. A loop whose trip count XLA did not find is counted
once and reported. Elementwise work is not counted.

`jaxpr_flops` counts the traced program instead: every `dot_general`, a `scan` body times
its length, a `cond` by its costliest branch, every other nested jaxpr once. It sees
nothing of XLA's dead-code elimination, so it overcounts a step whose values are partly
unused (the harvest and the tests of small programs use it where no compile exists).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from jax.extend import core as jcore

from pdc.inspect.hlo import split_type

# ---- the optimized module ----------------------------------------------------------------

_HEADER = re.compile(r"^(ENTRY\s+)?%?([\w.\-]+)\s*\((.*)\)\s*->\s*.*\{\s*$")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$")
_ARRAY = re.compile(r"\b(pred|[subf]\d+|bf16|f8\w*|c64|c128|token)\[([\d,]*)\]")
_CALLS = re.compile(r"\b(?:calls|to_apply)=%?([\w.\-]+)")
_BODY = re.compile(r"\bbody=%?([\w.\-]+)")
_BRANCHES = re.compile(r"\bbranch_computations=\{([^}]*)\}")
_TRUE_FALSE = re.compile(r"\b(?:true|false)_computation=%?([\w.\-]+)")
_TARGET = re.compile(r'custom_call_target="([^"]+)"')
_DIMS = re.compile(r"\b(lhs_contracting_dims|lhs_batch_dims|rhs_contracting_dims|rhs_batch_dims)=\{([\d,]*)\}")
_TRIP = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')
_GEMM_TARGETS = ("__cublas$gemm", "__cublas$lt$matmul")
ATTENTION_BACKWARD_FACTOR = 2.5  # the backward's dense matmuls against its forward's (dQ, dK, dV, dP and P again)


@dataclass
class HloFlops:
    """One device's matmul FLOPs of a compiled module, and what the count could not see."""

    flops: float = 0.0
    attention_forward_calls: int = 0  # cuDNN fused-attention forward calls executed (loops multiplied)
    attention_backward_calls: int = 0
    unknown_trip_counts: list[str] = field(default_factory=list)  # while loops counted once

    def add(self, other: HloFlops, times: float = 1.0) -> None:
        self.flops += times * other.flops
        self.attention_forward_calls += int(times * other.attention_forward_calls)
        self.attention_backward_calls += int(times * other.attention_backward_calls)
        self.unknown_trip_counts += [u for u in other.unknown_trip_counts if u not in self.unknown_trip_counts]


@dataclass(frozen=True)
class _Instruction:
    name: str
    opcode: str
    shape: tuple[int, ...] | None  # the (first) array the instruction yields
    operands: tuple[str, ...]
    line: str


def hlo_flops(text: str) -> HloFlops:
    """Matmul FLOPs of one execution of the ENTRY computation of an optimized HLO module's
    text (`compiled.as_text()`), per device for an SPMD-partitioned module."""
    computations, entry = _parse(text)
    if entry is None:
        return HloFlops()
    memo: dict[str, HloFlops] = {}

    def of(name: str) -> HloFlops:
        if name not in memo:
            memo[name] = HloFlops()  # a (malformed) cycle counts as nothing
            memo[name] = _computation_flops(computations.get(name, ()), of)
        return memo[name]

    return of(entry)


def _computation_flops(instructions: tuple[_Instruction, ...], of: Any) -> HloFlops:
    shapes = {i.name: i.shape for i in instructions}
    out = HloFlops()
    for ins in instructions:
        if ins.opcode == "dot":
            out.flops += _dot_flops(ins, shapes)
        elif ins.opcode == "custom-call":
            _custom_call(ins, shapes, out)
        elif ins.opcode == "while":
            body = _BODY.search(ins.line)
            trip = _TRIP.search(ins.line)
            if body is None:
                continue
            if trip is None:
                out.unknown_trip_counts.append(ins.name)
            out.add(of(body.group(1)), int(trip.group(1)) if trip else 1)
        elif ins.opcode == "conditional":
            branches = _branches(ins.line)
            if branches:
                out.add(max((of(b) for b in branches), key=lambda f: f.flops))
        elif ins.opcode in ("fusion", "call", "async-start") or ins.opcode.endswith("-start"):
            for called in _CALLS.findall(ins.line):
                out.add(of(called))
    return out


def _branches(line: str) -> list[str]:
    found = _BRANCHES.search(line)
    if found:
        return [b.strip().lstrip("%") for b in found.group(1).split(",") if b.strip()]
    return _TRUE_FALSE.findall(line)


def _dot_flops(ins: _Instruction, shapes: dict[str, tuple[int, ...] | None]) -> float:
    dims = dict(_DIMS.findall(ins.line))
    lhs = shapes.get(ins.operands[0]) if ins.operands else None
    if ins.shape is None or lhs is None:
        return 0.0
    contracting = [int(d) for d in dims.get("lhs_contracting_dims", "").split(",") if d]
    return 2.0 * math.prod(ins.shape) * math.prod(lhs[d] for d in contracting)


def _custom_call(ins: _Instruction, shapes: dict[str, tuple[int, ...] | None], out: HloFlops) -> None:
    target = _TARGET.search(ins.line)
    if target is None:
        return
    name = target.group(1)
    config = _backend_config(ins.line)
    if name.startswith(_GEMM_TARGETS):
        numbers = _find_key(config, "dot_dimension_numbers") or {}
        lhs = shapes.get(ins.operands[0]) if ins.operands else None
        if ins.shape is not None and lhs is not None:
            contracting = [int(d) for d in numbers.get("lhs_contracting_dimensions", [])]
            out.flops += 2.0 * math.prod(ins.shape) * math.prod(lhs[d] for d in contracting)
    elif name.startswith("__cudnn$fmha"):
        backward = "backward" in name.lower()
        forward = _attention_forward_flops(ins, shapes, config, backward)
        out.flops += forward * (ATTENTION_BACKWARD_FACTOR if backward else 1.0)
        if backward:
            out.attention_backward_calls += 1
        else:
            out.attention_forward_calls += 1


def _attention_forward_flops(ins: _Instruction, shapes: dict[str, tuple[int, ...] | None], config: Any,
                             backward: bool) -> float:
    """Dense 4 · B · H · Sq · Sk · D of a fused attention call: two matmuls (Q·Kᵀ, P·V) of
    2 · B · H · Sq · Sk · D each. Q (operand 0) gives B · H · Sq · D; Sk is the free axis of K
    (operand 1) in the call's dot dimension numbers whose right operand is K or V (laid out
    alike): the forward's `bmm1` (Q·Kᵀ), the backward's `bmm2_grad_gemm2` (dO·Vᵀ)."""
    q = shapes.get(ins.operands[0]) if len(ins.operands) > 0 else None
    k = shapes.get(ins.operands[1]) if len(ins.operands) > 1 else None
    numbers = _find_key(config, "bmm2_grad_gemm2_dot_dimension_numbers" if backward else "bmm1_dot_dimension_numbers")
    if q is None or k is None or numbers is None:
        return 0.0
    fixed = {int(d) for d in (*numbers.get("rhs_batch_dimensions", []), *numbers.get("rhs_contracting_dimensions", []))}
    return 4.0 * math.prod(q) * math.prod(k[d] for d in range(len(k)) if d not in fixed)


def _backend_config(line: str) -> Any:
    """The instruction's `backend_config={...}` JSON, or {}."""
    start = line.find("backend_config=")
    if start < 0:
        return {}
    start = line.find("{", start)
    if start < 0:
        return {}
    depth, in_string, escape = 0, False, False
    for i in range(start, len(line)):
        ch = line[i]
        if in_string:
            escape = ch == "\\" and not escape
            if ch == '"' and not escape:
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                try:
                    return json.loads(line[start:i + 1])
                except ValueError:
                    return {}
    return {}


def _find_key(tree: Any, key: str) -> Any:
    """The first value under `key` anywhere in a nested JSON tree."""
    if isinstance(tree, dict):
        if key in tree:
            return tree[key]
        for value in tree.values():
            found = _find_key(value, key)
            if found is not None:
                return found
    elif isinstance(tree, list):
        for value in tree:
            found = _find_key(value, key)
            if found is not None:
                return found
    return None


def _parse(text: str) -> tuple[dict[str, tuple[_Instruction, ...]], str | None]:
    """Computation name → its instructions, and the ENTRY computation's name."""
    computations: dict[str, tuple[_Instruction, ...]] = {}
    entry, name, body = None, None, []
    for line in text.splitlines():
        stripped = line.strip()
        if name is None:
            header = _HEADER.match(stripped)
            if header and not stripped.startswith("HloModule"):
                name, body = header.group(2), []
                if header.group(1):
                    entry = name
            continue
        if stripped == "}":
            computations[name] = tuple(body)
            name = None
            continue
        parsed = _instruction(stripped)
        if parsed is not None:
            body.append(parsed)
    return computations, entry


def _instruction(line: str) -> _Instruction | None:
    match = _INSTRUCTION.match(line)
    if match is None:
        return None
    name, rest = match.groups()
    type_text, remainder = split_type(rest)
    opcode = remainder.split("(", 1)[0].strip()
    if not opcode or " " in opcode:
        return None
    array = _ARRAY.search(type_text)
    shape = tuple(int(d) for d in array.group(2).split(",") if d) if array else None
    return _Instruction(name, opcode, shape, _operands(remainder[len(opcode):]), line)


def _operands(text: str) -> tuple[str, ...]:
    """The operand names of `(a, f32[2]{0} %b, ...)`, with or without their printed types."""
    if not text.startswith("("):
        return ()
    depth, current, parts = 0, [], []
    for ch in text:
        if ch in "([{":
            depth += 1
            if depth == 1 and ch == "(":
                continue
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                parts.append("".join(current))
                break
        if depth == 1 and ch == ",":
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    names = []
    for part in parts:
        tokens = re.sub(r"/\*.*?\*/", "", part).split()
        if tokens:
            names.append(tokens[-1].lstrip("%"))
    return tuple(names)


# ---- the traced program ------------------------------------------------------------------


def jaxpr_flops(jaxpr: Any) -> float:
    """Matmul FLOPs of `jaxpr` (a Jaxpr or ClosedJaxpr), nested jaxprs included."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    return float(sum(_eqn_flops(eqn) for eqn in jaxpr.eqns))


def _eqn_flops(eqn: Any) -> float:
    name = eqn.primitive.name
    if name == "dot_general":
        return _jaxpr_dot_flops(eqn)
    if name == "scan":
        return eqn.params["length"] * jaxpr_flops(eqn.params["jaxpr"])
    if name == "cond":
        return max(jaxpr_flops(branch) for branch in eqn.params["branches"])
    return sum(jaxpr_flops(sub) for sub in _sub_jaxprs(eqn.params))


def _sub_jaxprs(params: dict[str, Any]) -> list[Any]:
    out = []
    for value in params.values():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(item, (jcore.Jaxpr, jcore.ClosedJaxpr)):
                out.append(item)
    return out


def _jaxpr_dot_flops(eqn: Any) -> float:
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    lhs = eqn.invars[0].aval.shape
    out = eqn.outvars[0].aval.shape  # batch × lhs free × rhs free
    return 2.0 * math.prod(out) * math.prod(lhs[d] for d in lhs_contract)


__all__ = ["ATTENTION_BACKWARD_FACTOR", "HloFlops", "hlo_flops", "jaxpr_flops"]
