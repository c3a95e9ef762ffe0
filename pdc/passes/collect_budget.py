"""Pass 8 — the memory budget the dry-run will hold the compiled step to."""

from __future__ import annotations

from pdc.ir.graph import IR
from pdc.ir.nodes import BudgetNode

# bytes per device of the known device models (the budget's default device_memory)
DEVICE_MEMORY = {
    "h100_sxm": 84_929_347_584, "h100_pcie": 84_929_347_584, "h200": 151_397_597_184,
    "b200": 191_529_648_128, "a100": 85_899_345_920, "cpu": None,
}

CONSUMES = ("budget.device", "budget.device_memory", "budget.headroom")


def run(ir: IR) -> IR:
    block = ir.spec.block("budget")
    if block is None:
        return ir
    device = block.get("device")
    memory = block.get("device_memory") or (DEVICE_MEMORY.get(device) if device else None)
    ir.add("budget", BudgetNode(device, memory, block.get("headroom")), "mesh")
    return ir
