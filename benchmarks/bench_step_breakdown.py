"""Per-step breakdown of ``Propagator.step`` on a molecule: time inside PySCF (the backend's
``compute``, ``overlap`` and ``force``, wrapped with timers) vs everything else in the step.

Target: our overhead (step wall time minus backend time) <= 2% of the step.

    python benchmarks/bench_step_breakdown.py [--quick]

--quick: LiH only (ethylene SA2-CAS(2,2)/6-31G* skipped).
"""

from __future__ import annotations

import sys
import time

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from common import LABELS, Report, Timer, casscf_available, molecule, quick_flag, thermal_momenta  # noqa: E402


class TimedBackend:
    """Proxy that times every protocol call of the wrapped backend."""

    def __init__(self, inner):
        self.inner = inner
        self.n_states = inner.n_states
        self.masses = inner.masses
        self.labels = getattr(inner, "labels", [])
        self.t = {"compute": Timer(), "overlap": Timer(), "force": Timer()}
        if getattr(inner, "overlaps", None) is not None:  # optional batched capability
            def overlaps(a, others):
                with self.t["overlap"]:
                    return inner.overlaps(a, others)
            self.overlaps = overlaps

    def compute(self, positions, reference=None):
        with self.t["compute"]:
            return self.inner.compute(positions, reference=reference)

    def overlap(self, a, b):
        with self.t["overlap"]:
            return self.inner.overlap(a, b)

    def force(self, data, rho):
        with self.t["force"]:
            return self.inner.force(data, rho)

    def reset(self):
        for t in self.t.values():
            t.total, t.count = 0.0, 0


def run_case(rep, name, method, n_traj, n_steps, dt=20.0, seed=7):
    from qhd_aimd.dynamics.integrator import Propagator

    inner, x0 = molecule(name)
    be = TimedBackend(inner)
    pos, mom = [], []
    for i in range(n_traj):
        p, x = thermal_momenta(inner.masses, 500.0, seed + i, displace_bohr=0.03, x=x0)
        pos.append(x)
        mom.append(p)
    prop = Propagator(be, method, dt, n_substeps=20)
    t0 = time.perf_counter()
    swarm = prop.initialize(np.arange(n_traj), np.array(pos), np.array(mom), np.zeros(n_traj, int))
    t_init = time.perf_counter() - t0
    be.reset()
    step_times = []
    for _ in range(n_steps):
        t0 = time.perf_counter()
        swarm = prop.step(swarm)
        step_times.append(time.perf_counter() - t0)
    total = sum(step_times)
    backend = sum(t.total for t in be.t.values())
    other = total - backend
    tag = f"{LABELS[name]}, {method}, {n_traj} traj x {n_steps} steps"
    rows = [[k, t.count, t.total / n_steps, 100 * t.total / total] for k, t in be.t.items()]
    rows.append(["other (ours)", "-", other / n_steps, 100 * other / total])
    rows.append(["whole step", "-", total / n_steps, 100.0])
    rep.table(["part", "calls", "s/step", "% of step"], rows, caption=tag + f" (initialize {t_init:.2f} s)")
    rep.check(f"overhead share [{name}, {method}]", other / total, "<=", 0.02,
              f"{1e3 * other / n_steps:.2f} ms/step of {total / n_steps:.2f} s/step")
    assert all(swarm.active), swarm.failures
    return other / total


def main():
    quick = quick_flag()
    rep = Report("step_breakdown", "PySCF time vs our overhead in Propagator.step")
    ok, why = casscf_available()
    if not ok:
        return rep.skip(f"CasscfBackend not importable ({why})")
    run_case(rep, "lih", "ehrenfest", n_traj=2, n_steps=4)
    run_case(rep, "lih", "geometric_ehrenfest_qc", n_traj=4, n_steps=2)
    if quick:
        rep.note("--quick: ethylene skipped")
    else:
        run_case(rep, "ethylene", "ehrenfest", n_traj=1, n_steps=2)
    rep.note("force = one-solve CP-SA-CASSCF (ElectronicSpec.force default); dt = 20 au, 20 "
             "electronic sub-steps; thermal (500 K) momenta, 0.03 bohr random displacements")
    return rep.finish()


if __name__ == "__main__":
    raise SystemExit(main())
