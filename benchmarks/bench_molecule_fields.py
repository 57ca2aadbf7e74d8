"""Swarm fields + neighbour overlaps vs electronic structure on a molecular swarm (issue 11 item 6).

Runs a few ``Propagator.step`` of a coupled method, serially, on the first T samples of a
prepared ``initial_conditions.h5`` and splits every step into: the backend's ``compute`` and
``force`` (electronic structure), the step ``overlap``, the neighbour overlaps (``overlaps``
called by the swarm fields) and everything else (ours: fields, Liouvillian, bookkeeping).

    python benchmarks/bench_molecule_fields.py STUDY.yaml INITIAL_CONDITIONS.h5 [T] [STEPS] [METHOD]

Target: fields + neighbour overlaps <= 25 % of the electronic structure.
"""

from __future__ import annotations

import sys
import time

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from common import Report, Timer  # noqa: E402


class TimedMolecule:
    """Proxy timing the backend protocol; keeps ``symbols`` (a molecule for the fields)."""

    def __init__(self, inner):
        self.inner, self.symbols = inner, inner.symbols
        self.n_states, self.masses = inner.n_states, inner.masses
        self.labels = getattr(inner, "labels", [])
        self.t = {k: Timer() for k in ("compute", "force", "step overlap", "neighbour overlaps")}

    def compute(self, positions, reference=None):
        with self.t["compute"]:
            return self.inner.compute(positions, reference=reference)

    def force(self, data, rho):
        with self.t["force"]:
            return self.inner.force(data, rho)

    def overlap(self, a, b):
        with self.t["step overlap"]:
            return self.inner.overlap(a, b)

    def overlaps(self, a, others):
        t0 = time.perf_counter()
        out = np.stack([self.inner.overlap(a, b) for b in others])
        tm = self.t["neighbour overlaps"]
        tm.total += time.perf_counter() - t0
        tm.count += len(others)
        return out


def main():
    from qhd_aimd.config import load_config
    from qhd_aimd.dynamics.integrator import Propagator
    from qhd_aimd.electronic import make_backend
    from qhd_aimd.prepare.molecule import load_initial_conditions

    args = sys.argv[1:]
    cfg, ic = load_config(args[0]), load_initial_conditions(args[1])
    n = int(args[2]) if len(args) > 2 else 12
    steps = int(args[3]) if len(args) > 3 else 2
    method = args[4] if len(args) > 4 else "geometric_ehrenfest_qc"
    rep = Report("molecule_fields", f"fields + overlaps vs electronic structure, {method}, T={n}")
    be = TimedMolecule(make_backend(cfg, list(ic["symbols"])))
    prop = Propagator(be, method, cfg.dynamics.dt, cfg.dynamics.n_substeps)
    s = prop.initialize(np.arange(n), ic["positions_bohr"][:n], ic["momenta_au"][:n], ic["states"][:n])
    for t in be.t.values():
        t.total, t.count = 0.0, 0
    t0 = time.perf_counter()
    for _ in range(steps):
        s = prop.step(s)
    total = time.perf_counter() - t0
    es = be.t["compute"].total + be.t["force"].total
    nb = be.t["neighbour overlaps"].total
    ours = total - es - be.t["step overlap"].total - nb
    rows = [[k, t.count, t.total / steps, 100 * t.total / total] for k, t in be.t.items()]
    rows.append(["ours (fields, Liouvillian, ...)", "-", ours / steps, 100 * ours / total])
    rep.table(["part", "calls", "s/step", "% of step"], rows, caption=f"{n} trajectories, {steps} steps, serial")
    rep.figure("fallback trajectories at the last step", int(s.fields_fallback.sum()))
    rep.figure("neighbour pairs per step", be.t["neighbour overlaps"].count / steps)
    rep.check("(fields + neighbour overlaps) / electronic structure", (ours + nb) / es, "<=", 0.25)
    return rep.finish()


if __name__ == "__main__":
    raise SystemExit(main())
