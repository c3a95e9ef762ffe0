"""What is alive at the peak: XLA's own buffer assignment and live ranges, grouped by what
each buffer belongs to and the spec line it comes from.

The compiler dumps (`xla_dump_to`) hold, for the optimized module, every allocation with
the values packed into it (`*-buffer-assignment.txt`) and every value's live range over
the flattened schedule (`*-live-range.txt`). Arguments, outputs and constants are held
for the whole step; temp values come and go. The peak is the schedule position where the
temp bytes alive together are largest; the groups are those temps plus the held
allocations, so they sum to the peak exactly. XLA's temp allocation can be a little larger
than the live bytes at the peak (packing), which the report shows as the gap.

Ownership is read from each value's defining instruction: the step's arguments carry
their pytree path (`state.components['up_proj'].V`, `params['embed']`, `batch`), other
instructions the `named_scope` path they were traced under (`loss.stochastic_recon`,
`ci`, `clean`, `optimize.components`, `decompose.up_proj`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pdc.inspect import hlo

_ALLOCATION = re.compile(r"^allocation (\d+): size (\d+)(?:, (.*))?:$")
_VALUE = re.compile(r"^ value: <\d+ ([^ >]+)(?: \(phi\))? @\d+> \(size=(\d+),offset=(\d+)\)")
_LIVE = re.compile(r"^\s+(\S+):(\d+)-(\d+)$")
_HELD = ("parameter", "maybe-live-out", "constant")


@dataclass
class Allocation:
    index: int
    size: int
    kind: str  # the assignment's description: "parameter 3, shape ...", "preallocated-temp", ...
    values: list[tuple[str, int, int]]  # (value name with its shape index, size, offset)

    @property
    def held(self) -> bool:
        """Allocated for the whole step: arguments, outputs and constants."""
        return any(k in self.kind for k in _HELD)

    @property
    def temp(self) -> bool:
        return not self.held and "thread-local" not in self.kind


@dataclass(frozen=True)
class Owner:
    """What a buffer belongs to: a group key, words for people, and the spec line."""

    group: str
    what: str
    spec_line: str


@dataclass
class Group:
    owner: Owner
    bytes: int = 0
    buffers: int = 0


@dataclass
class Peak:
    bytes: int  # held allocations + temp values alive together at the peak
    position: int  # schedule position of the peak (-1 when nothing temp is alive)
    temp_live: int  # temp bytes alive at the peak
    temp_allocated: int  # XLA's temp allocation(s): >= temp_live (packing)
    groups: list[Group]


def _value_key(name: str) -> str:
    """Buffer assignment writes `fusion.3` and `fusion.3{0}`; live ranges always `fusion.3{}`."""
    return name if name.endswith("}") else name + "{}"


def _instruction_of(value: str) -> str:
    return value.split("{", 1)[0]


def parse_allocations(text: str) -> list[Allocation]:
    out: list[Allocation] = []
    for line in text.splitlines():
        if m := _ALLOCATION.match(line):
            out.append(Allocation(int(m.group(1)), int(m.group(2)), m.group(3) or "", []))
        elif (m := _VALUE.match(line)) and out:
            out[-1].values.append((_value_key(m.group(1)), int(m.group(2)), int(m.group(3))))
        elif line.startswith("Total bytes used") or line.startswith("Used values"):
            break
    return out


def parse_live_ranges(text: str) -> dict[str, tuple[int, int]]:
    ranges, inside = {}, False
    for line in text.splitlines():
        if line.strip() == "BufferLiveRange:":
            inside = True
        elif inside and (m := _LIVE.match(line)):
            ranges[m.group(1)] = (int(m.group(2)), int(m.group(3)))
        elif inside and line.strip() and not line.startswith("    "):
            inside = False
    return ranges


Key = tuple[int, int, int]  # (allocation, offset, size): one buffer's bytes in XLA's packing


def _temp_values(allocations: list[Allocation], live: dict[str, tuple[int, int]]) -> list[tuple[Key, str, int, int]]:
    """Every temp value with its buffer key and live interval as [start, end + 1).

    XLA's ranges are inclusive at both ends, as its heap simulator packs them: a value
    and one defined at its last use never share bytes (checked: no two buffers alive at
    the peak overlap in XLA's packing). Values with one key and overlapping intervals are
    aliases of one buffer (a loop's carried value and its phis); one key reused later is
    another buffer."""
    out = []
    for allocation in allocations:
        if not allocation.temp:
            continue
        for name, size, offset in allocation.values:
            if name in live and size > 0:
                start, end = live[name]
                out.append(((allocation.index, offset, size), name, start, end + 1))
    return out


def _peak_position(values: list[tuple[Key, str, int, int]]) -> tuple[int, int]:
    """(position, bytes) where the most temp bytes are alive together: one sweep, each
    buffer counted once however many of its aliases are alive."""
    events = sorted([(start, 1, key) for key, _, start, _ in values] + [(end, -1, key) for key, _, _, end in values],
                    key=lambda e: (e[0], e[1]))  # frees before allocations at one position
    count: dict[Key, int] = defaultdict(int)
    best, best_at, alive = 0, -1, 0
    for position, delta, key in events:
        count[key] += delta
        if delta > 0 and count[key] == 1:
            alive += key[2]
            if alive > best:
                best, best_at = alive, position
        elif delta < 0 and count[key] == 0:
            alive -= key[2]
    return best_at, best


def peak(buffer_assignment: str, live_ranges: str, instructions: list[hlo.Instruction],
         owner_of: Callable[[hlo.Instruction | None], Owner]) -> Peak:
    """The buffers alive at the peak, grouped by `owner_of` their defining instruction."""
    allocations = parse_allocations(buffer_assignment)
    live = parse_live_ranges(live_ranges)
    by_name = {i.name: i for i in instructions}
    groups: dict[Owner, Group] = {}

    def add(value_names: list[str], size: int) -> None:
        owners = [owner_of(by_name.get(_instruction_of(n))) for n in value_names]
        owner = next((o for o in owners if o.group != "step"), owners[0])  # a named alias beats an anonymous one
        group = groups.setdefault(owner, Group(owner))
        group.bytes += size
        group.buffers += 1

    for allocation in allocations:
        if allocation.held and allocation.values:
            add([n for n, _, _ in allocation.values], allocation.size)
    values = _temp_values(allocations, live)
    position, temp_live = _peak_position(values)
    at_peak: dict[Key, list[str]] = defaultdict(list)
    for key, name, start, end in values:
        if start <= position < end:
            at_peak[key].append(name)
    for key, names in at_peak.items():
        add(names, key[2])
    held = sum(a.size for a in allocations if a.held and a.values)
    temp_allocated = sum(a.size for a in allocations if a.temp and a.values)
    ranked = sorted(groups.values(), key=lambda g: -g.bytes)
    return Peak(held + temp_live, position, temp_live, temp_allocated, ranked)


def dumped(directory: Path) -> tuple[str, str, str] | None:
    """(optimized HLO, buffer assignment, live ranges) of the one module dumped into
    `directory`, or None when the compiler wrote no buffer assignment."""
    assignment = sorted(directory.glob("*after_optimizations-buffer-assignment.txt"))
    if not assignment:
        return None
    stem = assignment[-1].name.removesuffix("-buffer-assignment.txt")
    module, ranges = directory / f"{stem}.txt", directory / f"{stem}-live-range.txt"
    if not module.exists() or not ranges.exists():
        return None
    return module.read_text(), assignment[-1].read_text(), ranges.read_text()


__all__ = ["Allocation", "Group", "Owner", "Peak", "dumped", "parse_allocations", "parse_live_ranges", "peak"]
