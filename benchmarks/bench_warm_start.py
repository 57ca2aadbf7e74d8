"""Warm vs cold SA-CASSCF solves along a short trajectory.

At every point x_{k+1} of a straight-line path (thermal momenta at 1000 K, dt = 20 au, i.e. the
displacement of one nuclear step; ethylene and methaniminium also at the 0.25 fs = 10.34 au step
of the ethylene studies) the backend is called twice:

* warm: ``compute(x_{k+1}, reference=data_k)`` (orbitals + CI vectors of the previous point;
  from the second step on the backend also extrapolates the orbital subspaces from data_k and
  its predecessor, column "extrap");
* cold: ``compute(x_{k+1})`` (RHF guess).

Each solve is timed ``REPEAT`` times and the fastest kept (the machine is shared). Figures: wall
time per solve and the ratio cold/warm, the solver work read from ``handle.info`` (Newton
iterations, Hessian-vector products, PySCF 1-step macro iterations, RHF cycles, the orbital
gradient of the initial guess), and the largest |E_warm - E_cold| over the states. Targets:
time ratio >= 2, energies equal to 1e-8 Ha.

    python benchmarks/bench_warm_start.py [--quick]     (--quick: LiH only)
"""

from __future__ import annotations

import sys
import time

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from common import LABELS, Report, casscf_available, molecule, quick_flag, thermal_momenta  # noqa: E402

REPEAT = 2


def path(backend, x0, n_points, dt=20.0, temperature=1000.0, seed=3):
    p = thermal_momenta(backend.masses, temperature, seed)
    v = p / backend.masses
    return [x0 + k * dt * v for k in range(n_points)], float(np.abs(dt * v).max())


def timed(fn):
    best, out = np.inf, None
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def work(info):
    """Iterations of one compute: Newton iterations + PySCF 1-step macro iterations."""
    return info["newton_iterations"] + info["macro_iterations"]


def run(rep, name, n_points, dt=20.0):
    be, x0 = molecule(name)
    xs, step_len = path(be, x0, n_points, dt=dt)
    tag = name if dt == 20.0 else f"{name}, dt {dt:g} au"
    prev = be.compute(xs[0])
    rows = []
    tw = tc = de = 0.0
    iw = ic = hw = hc = 0
    fallbacks = 0
    steady = [0.0, 0.0]  # warm and cold time of the steps whose warm start extrapolated
    for k, x in enumerate(xs[1:], 1):
        t_w, warm = timed(lambda: be.compute(x, reference=prev))
        t_c, cold = timed(lambda: be.compute(x))
        w, c = warm.handle.info, cold.handle.info
        d = float(np.abs(warm.energies - cold.energies).max())
        fallbacks += bool(w["attempts"])
        if w.get("extrapolated"):
            steady[0] += t_w
            steady[1] += t_c
        rows.append([k, "x" if w.get("extrapolated") else "", t_w, t_c, t_c / t_w, work(w),
                     work(c), w["hessian_products"],
                     c["hessian_products"], c["scf_cycles"], w["initial_gradient"] or 0.0,
                     c["initial_gradient"] or 0.0, d])
        tw, tc, de = tw + t_w, tc + t_c, max(de, d)
        iw, ic = iw + work(w), ic + work(c)
        hw, hc = hw + w["hessian_products"], hc + c["hessian_products"]
        prev = warm
    n = n_points - 1
    rep.table(["point", "extrap", "warm s", "cold s", "cold/warm", "warm it", "cold it", "warm Hx",
               "cold Hx", "cold RHF cyc", "warm |g0|", "RHF |g0|", "|dE| Ha"], rows,
              caption=f"{LABELS[name]}: {n} steps of {dt:g} au, max |dx| per step {step_len:.3f} bohr "
                      f"(it = Newton + 1-step macro iterations, Hx = Hessian-vector products)")
    rep.figure(f"[{tag}] warm time per solve", tw / n, "s")
    rep.figure(f"[{tag}] cold time per solve", tc / n, "s")
    rep.figure(f"[{tag}] iterations per solve warm / cold", iw / n, f"/ {ic / n:.2f}")
    rep.figure(f"[{tag}] Hessian products per solve warm / cold", hw / n, f"/ {hc / n:.1f}")
    rep.figure(f"[{tag}] warm solves that needed a fallback rung", fallbacks, f"of {n}")
    if steady[0] > 0:
        rep.figure(f"[{tag}] cold/warm over extrapolated steps (2nd step on)",
                   steady[1] / steady[0], "x")
    rep.check(f"warm-start speed-up cold/warm [{tag}]", tc / tw, ">=", 2.0)
    rep.check(f"max |E_warm - E_cold| [{tag}] (Ha)", de, "<=", 1e-8)


def main():
    quick = quick_flag()
    rep = Report("warm_start", "SA-CASSCF warm start (reference=previous step) vs cold start")
    ok, why = casscf_available()
    if not ok:
        return rep.skip(f"CasscfBackend not importable ({why})")
    run(rep, "lih", 7)
    if quick:
        rep.note("--quick: ethylene and methaniminium skipped")
    else:
        run(rep, "ethylene", 11)
        run(rep, "methaniminium", 11)
        # the production step of config/studies/ethylene_s1*.yaml: 0.25 fs = 10.34 au
        run(rep, "ethylene", 11, dt=10.34)
        run(rep, "methaniminium", 11, dt=10.34)
    rep.note("backend settings as benchmarks/common.py SYSTEMS; solver work from "
             "ElectronicData.handle.info; each solve timed twice, fastest kept")
    return rep.finish()


if __name__ == "__main__":
    raise SystemExit(main())
