"""One-solve Ehrenfest force vs term-by-term derivatives (``ElectronicSpec.force``).

For consecutive points of a short path (thermal momenta, dt = 20 au) the work of one nuclear step
of one trajectory is timed: warm ``compute``, the step ``overlap`` and the force
-Tr(rho dH/dx) with

* ``force(data, rho, mode="one_solve")``: ONE CP-SA-CASSCF Lagrangian solve with a rho-weighted
  source;
* ``force(data, rho, mode="term_by_term")``: N state gradients + N(N-1)/2 NACs (``derivatives``).

rho is a fixed mixed state with complex coherences. Targets: whole-step ratio term/one >= 3 for
N = 3 (methaniminium SA3), |F_one - F_terms| <= 1e-7 Ha/bohr (every system). Ethylene (N = 2)
is reported against the same 3x figure for information (N = 2 has 3 terms, N = 3 has 6).

    python benchmarks/bench_force.py [--quick]   (--quick: 1 point per system instead of 2)
"""

from __future__ import annotations

import sys
import time

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from common import LABELS, Report, casscf_available, molecule, quick_flag, thermal_momenta  # noqa: E402


def rho_for(n):
    """A fixed, valid mixed-state density matrix with complex coherences."""
    rng = np.random.default_rng(11)
    a = rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))
    rho = a @ a.conj().T
    return rho / np.trace(rho).real


def run(rep, name, n_points, dt=20.0):
    be, x0 = molecule(name)
    n = be.n_states
    rho = rho_for(n)
    v = thermal_momenta(be.masses, 1000.0, 5) / be.masses
    prev = be.compute(x0)
    rows, t_one, t_terms, t_base, err = [], 0.0, 0.0, 0.0, 0.0
    for k in range(1, n_points + 1):
        t0 = time.perf_counter()
        data = be.compute(x0 + k * dt * v, reference=prev)
        t1 = time.perf_counter()
        be.overlap(prev, data)
        t2 = time.perf_counter()
        f_one = be.force(data, rho, mode="one_solve")
        t3 = time.perf_counter()
        f_terms = be.force(data, rho, mode="term_by_term")
        t4 = time.perf_counter()
        base = t2 - t0
        e = float(np.abs(f_one - f_terms).max())
        rows.append([k, t1 - t0, t2 - t1, t3 - t2, t4 - t3, (base + t4 - t3) / (base + t3 - t2), e])
        t_base, t_one, t_terms, err = t_base + base, t_one + t3 - t2, t_terms + t4 - t3, max(err, e)
        prev = data
    n_terms = n + n * (n - 1) // 2
    rep.table(["point", "compute s", "overlap s", "F one-solve s", "F term-by-term s",
               "step ratio", "max|dF| Ha/bohr"], rows,
              caption=f"{LABELS[name]} (N={n}: {n} gradients + {n * (n - 1) // 2} NACs = "
                      f"{n_terms} CP solves term by term)")
    force_ratio = t_terms / t_one
    step_ratio = (t_base + t_terms) / (t_base + t_one)
    rep.figure(f"[{name}] force-only ratio term/one", force_ratio, "x")
    rep.figure(f"[{name}] force share of the one-solve step", t_one / (t_base + t_one), "")
    label = f"whole-step ratio term/one [{name}, N={n}]"
    if n >= 3:
        rep.check(label, step_ratio, ">=", 3.0)
    else:
        rep.figure(label + " (info; target is for N=3)", step_ratio, "x")
    rep.check(f"max |F_one - F_terms| [{name}] (Ha/bohr)", err, "<=", 1e-7)


def main():
    quick = quick_flag()
    rep = Report("force", "one-solve Ehrenfest force vs term-by-term gradients + NACs")
    ok, why = casscf_available()
    if not ok:
        return rep.skip(f"CasscfBackend not importable ({why})")
    be, x0 = molecule("lih")
    try:
        d = be.compute(x0)
        be.force(d, rho_for(2), mode="one_solve")
    except Exception as exc:  # noqa: BLE001
        return rep.skip(f"one-solve force not available: {type(exc).__name__}: {exc}")
    n_points = 1 if quick else 2
    run(rep, "ethylene", n_points)
    run(rep, "methaniminium", n_points)
    rep.note(f"{n_points} path point(s) per system (each point: every variant once); "
             "backend settings as benchmarks/common.py SYSTEMS")
    return rep.finish()


if __name__ == "__main__":
    raise SystemExit(main())
