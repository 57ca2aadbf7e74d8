"""Cost of one FSSH step vs one Ehrenfest step of the same molecule (SA-CASSCF, PySCF).

Two trajectories of ethylene SA2-CAS(2,2)/6-31G* starting on S1 with thermal momenta (1000 K)
and slightly displaced geometries, dt = 20 a.u.; the same swarm is propagated for a few steps
with ``ehrenfest`` (force -Tr(rho dH/dx): one rho-weighted CP-SA-CASSCF solve) and with
``fssh`` (force -dE_a/dx = force(data, P_a): one solve; a hop adds one solve for the coupling
vector and one for the new state's force). The first step (cold start) is excluded.

Target: time per trajectory-step fssh / ehrenfest <= 1.

    python benchmarks/bench_fssh_step.py [--quick]
"""

from __future__ import annotations

import sys
import time

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from common import LABELS, Report, casscf_available, molecule, quick_flag, thermal_momenta  # noqa: E402


def main():
    quick = quick_flag()
    rep = Report("fssh_step", "FSSH vs Ehrenfest step cost, " + LABELS["ethylene"])
    ok, why = casscf_available()
    if not ok:
        return rep.skip(why)
    from qhd_aimd.dynamics.integrator import Propagator

    be, x0 = molecule("ethylene")
    n_steps = 3 if quick else 6
    pos, mom = [], []
    for seed in (1, 2):
        p, x = thermal_momenta(be.masses, 1000.0, seed, displace_bohr=0.02, x=x0)
        pos.append(x)
        mom.append(p)
    pos, mom = np.array(pos), np.array(mom)
    per, hops = {}, {}
    for method in ("ehrenfest", "fssh"):
        prop = Propagator(be, method, 20.0, 20, seed=1)
        s = prop.initialize(np.arange(2), pos, mom, [1, 1])
        s = prop.step(s)  # warm-up
        n_hops = 0
        t0 = time.perf_counter()
        for _ in range(n_steps):
            s = prop.step(s)
            if method == "fssh":
                n_hops += int((s.hop_to >= 0).sum())
        per[method] = (time.perf_counter() - t0) / (2 * n_steps)
        hops[method] = n_hops
        rep.figure(f"{method}: s per trajectory-step", per[method], "s")
    rep.figure("fssh: hops attempted during the timed steps", hops["fssh"])
    rep.check("time per trajectory-step fssh / ehrenfest", per["fssh"] / per["ehrenfest"], "<=", 1.0)
    return rep.finish()


if __name__ == "__main__":
    raise SystemExit(main())
