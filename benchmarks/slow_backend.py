"""A model backend that costs like electronic structure: every ``compute`` busy-waits (or sleeps)
a fixed time, so that MPI scaling is measured in the regime of real on-the-fly dynamics
(models are so cheap that communication dominates otherwise)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from qhd_aimd.electronic.models import ModelBackend


def burn(seconds: float, mode: str = "spin") -> None:
    """Occupy ``seconds`` of wall time: 'spin' keeps one core busy (like a solver), 'sleep' not."""
    if seconds <= 0:
        return
    if mode == "sleep":
        time.sleep(seconds)
        return
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@dataclass
class SlowModelBackend(ModelBackend):
    """``ModelBackend`` whose compute (and optionally force / overlap) costs a fixed time."""

    compute_s: float = 0.02
    force_s: float = 0.0
    overlap_s: float = 0.0
    mode: str = "spin"

    def compute(self, positions, reference=None):
        burn(self.compute_s, self.mode)
        return super().compute(positions, reference)

    def force(self, data, rho):
        burn(self.force_s, self.mode)
        return super().force(data, rho)

    def overlap(self, a, b):
        burn(self.overlap_s, self.mode)
        return super().overlap(a, b)

    def overlaps(self, a, others):
        burn(self.overlap_s * len(others), self.mode)
        return super().overlaps(a, others)
