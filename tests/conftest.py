"""Test set-up shared by every test module.

Multi-device tests run on 8 fake CPU devices; the flag must be set before JAX is first
imported, which is why it lives here (front-end tests never import JAX at all)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO = Path(__file__).resolve().parents[1]
SPECS = sorted((REPO / "specs").glob("*.pd"))
