"""Pass 8 — the memory budget the dry-run will hold the compiled step to."""

from __future__ import annotations

from pdc import devices
from pdc.ir.graph import IR
from pdc.ir.nodes import BudgetNode



def run(ir: IR) -> IR:
    block = ir.spec.block("budget")
    if block is None:
        return ir
    device = block.get("device")
    memory = block.get("device_memory") or devices.memory_of(device)
    ir.add("budget", BudgetNode(device, memory, block.get("headroom"), block.get("allow_xla_remat")), "mesh")
    return ir
