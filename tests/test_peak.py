"""The peak from XLA's buffer assignment and live ranges, on hand-written dumps whose
answer is computed by hand: held allocations count whole, temp buffers count while alive
(inclusive ranges, as XLA packs them), aliases of one buffer count once, and a later
buffer at the same offset is another buffer."""

from __future__ import annotations

from pdc.inspect import hlo
from pdc.inspect.peak import Owner, parse_allocations, parse_live_ranges, peak

ASSIGNMENT = """BufferAssignment:
allocation 0: size 100, parameter 0, shape |f32[25]| at ShapeIndex {}:
 value: <1 p0 @0> (size=100,offset=0): f32[25]{0}
allocation 1: size 8, output shape is |f32[2]|, maybe-live-out:
 value: <2 out @0> (size=8,offset=0): f32[2]{0}
allocation 2: size 4, thread-local:
 value: <3 x.1 @0> (size=4,offset=0): f32[]
allocation 3: size 96, preallocated-temp:
 value: <4 a @0> (size=64,offset=0): f32[16]{0}
 value: <5 b @0> (size=32,offset=64): f32[8]{0}
 value: <6 loop{1} (phi) @0> (size=32,offset=64): f32[8]{0}
 value: <7 c @0> (size=64,offset=0): f32[16]{0}
 value: <8 d @0> (size=16,offset=64): f32[4]{0}

Total bytes used: 208 (208B)
"""

LIVE = """HloLiveRange (max 9):
  InstructionSequence:
    0:p0
  BufferLiveRange:
    p0{}:0-9
    out{}:8-9
    a{}:1-3
    b{}:2-4
    loop{1}:3-5
    c{}:6-8
    d{}:6-6
  Live ranges at 6 (peak):
"""

MODULE = """
  %p0 = f32[25]{0} parameter(0), metadata={op_name="params['w']"}
  %a = f32[16]{0} fusion(%p0), kind=kLoop, metadata={op_name="jit(step)/loss.stochastic_recon/dot"}
  %b = f32[8]{0} fusion(%a), kind=kLoop, metadata={op_name="jit(step)/ci/add"}
  %c = f32[16]{0} fusion(%p0), kind=kLoop, metadata={op_name="jit(step)/transpose(jvp(loss.faithfulness))/mul"}
  %d = f32[4]{0} fusion(%c), kind=kLoop, metadata={op_name="jit(step)/clean/dot"}
  %out = f32[2]{0} fusion(%d), kind=kLoop, metadata={op_name="jit(step)/optimize.components/add"}
"""


def owner(instruction: hlo.Instruction | None) -> Owner:
    if instruction is None:
        return Owner("step", "no scope", "spec.pd:1")
    if instruction.op_name.startswith("params"):
        return Owner("target", "frozen", "spec.pd:2")
    scope = instruction.scope.split("/")[0]
    return Owner(scope, scope, f"spec.pd:{len(scope)}")


def test_parsing_keeps_every_allocation_and_inclusive_range() -> None:
    allocations = parse_allocations(ASSIGNMENT)
    assert [(a.index, a.size, a.held, a.temp) for a in allocations] == [
        (0, 100, True, False), (1, 8, True, False), (2, 4, False, False), (3, 96, False, True)]
    assert allocations[3].values[2] == ("loop{1}", 32, 64)
    assert allocations[3].values[0] == ("a{}", 64, 0)
    assert parse_live_ranges(LIVE) == {"p0{}": (0, 9), "out{}": (8, 9), "a{}": (1, 3), "b{}": (2, 4),
                                       "loop{1}": (3, 5), "c{}": (6, 8), "d{}": (6, 6)}


def test_the_peak_counts_aliases_once_and_held_allocations_whole() -> None:
    result = peak(ASSIGNMENT, LIVE, hlo.parse(MODULE), owner)
    # positions 2-3: a (64) and b/loop{1} (one buffer, 32) = 96; position 6: c (64) + d (16) = 80
    assert (result.position, result.temp_live, result.temp_allocated) == (2, 96, 96)
    assert result.bytes == 100 + 8 + 96
    groups = {g.owner.group: (g.bytes, g.buffers) for g in result.groups}
    assert groups == {"target": (100, 1), "optimize.components": (8, 1), "loss.stochastic_recon": (64, 1),
                      "ci": (32, 1)}
    assert sum(g.bytes for g in result.groups) == result.bytes
