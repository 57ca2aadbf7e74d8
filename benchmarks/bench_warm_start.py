"""Warm vs cold SA-CASSCF solves along a short trajectory.

At every point x_{k+1} of a straight-line path (thermal momenta at 1000 K, dt = 20 au, i.e. the
displacement of one nuclear step) the backend is called twice:

* warm: ``compute(x_{k+1}, reference=data_k)`` (orbitals + CI vectors of the previous point);
* cold: ``compute(x_{k+1})`` (RHF guess).

Figures: wall-time ratio cold/warm, CASSCF macro iterations (all ``mc.kernel`` calls of one
``compute``, including the retry ladder and the polish rounds), RHF cycles, and the largest
|E_warm - E_cold|. Targets: time ratio >= 2, energies equal to 1e-8 Ha.

    python benchmarks/bench_warm_start.py [--quick]     (--quick: LiH only)
"""

from __future__ import annotations

import sys
import time

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from common import LABELS, Report, casscf_available, molecule, quick_flag, thermal_momenta  # noqa: E402


def instrument(backend):
    """Count CASSCF macro iterations, mc.kernel calls and RHF cycles of every compute().

    Works whatever callback the backend installs itself: ``mc.kernel`` is wrapped so that, at
    call time, the current ``mc.callback`` is chained behind a counter of ``imacro``.
    """
    counts = {"macro": 0, "kernels": 0, "scf": 0}
    make_mc, make_mf = backend._mc, backend._mf

    def _mc(mf):
        mc = make_mc(mf)
        kernel = mc.kernel

        def counted_kernel(*a, **k):
            counts["kernels"] += 1
            inner, seen = mc.callback, [0]

            def cb(env):
                seen[0] = max(seen[0], int(env.get("imacro", 0)))
                if callable(inner):
                    inner(env)

            mc.callback = cb
            try:
                return kernel(*a, **k)
            finally:
                counts["macro"] += seen[0]
                if mc.callback is cb:
                    mc.callback = inner

        mc.kernel = counted_kernel
        return mc

    def _mf(mol):
        mf = make_mf(mol)
        mf.callback = lambda env: counts.__setitem__("scf", counts["scf"] + 1)
        return mf

    backend._mc, backend._mf = _mc, _mf
    return counts


def path(backend, x0, n_points, dt=20.0, temperature=1000.0, seed=3):
    p = thermal_momenta(backend.masses, temperature, seed)
    v = p / backend.masses
    return [x0 + k * dt * v for k in range(n_points)], float(np.abs(dt * v).max())


def run(rep, name, n_points):
    be, x0 = molecule(name)
    counts = instrument(be)
    xs, step_len = path(be, x0, n_points)
    prev = be.compute(xs[0])
    rows, tw, tc, iw, ic, sw, sc, de = [], 0.0, 0.0, 0, 0, 0, 0, 0.0
    for k, x in enumerate(xs[1:], 1):
        for key in counts:
            counts[key] = 0
        t0 = time.perf_counter()
        warm = be.compute(x, reference=prev)
        t_w = time.perf_counter() - t0
        c_w = dict(counts)
        for key in counts:
            counts[key] = 0
        t0 = time.perf_counter()
        cold = be.compute(x)
        t_c = time.perf_counter() - t0
        c_c = dict(counts)
        d = float(np.abs(warm.energies - cold.energies).max())
        rows.append([k, t_w, t_c, c_w["macro"], c_c["macro"], c_w["kernels"], c_c["kernels"],
                     c_c["scf"], d])
        tw, tc, iw, ic, de = tw + t_w, tc + t_c, iw + c_w["macro"], ic + c_c["macro"], max(de, d)
        prev = warm
    rep.table(["point", "warm s", "cold s", "warm macro", "cold macro", "warm kernels",
               "cold kernels", "cold RHF cyc", "|dE| Ha"], rows,
              caption=f"{LABELS[name]}: {n_points - 1} steps, max |dx| per step {step_len:.3f} bohr")
    rep.figure(f"[{name}] warm time per solve", tw / (n_points - 1), "s")
    rep.figure(f"[{name}] cold time per solve", tc / (n_points - 1), "s")
    rep.figure(f"[{name}] macro iterations cold/warm", ic / max(iw, 1), "x")
    rep.check(f"warm-start speed-up cold/warm [{name}]", tc / tw, ">=", 2.0)
    rep.check(f"max |E_warm - E_cold| [{name}] (Ha)", de, "<=", 1e-8)


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
        run(rep, "ethylene", 4)
        run(rep, "methaniminium", 4)
    rep.note("backend settings as benchmarks/common.py SYSTEMS (conv_tol_grad=1e-7); "
             "macro iterations counted with mc.callback over every mc.kernel call of one compute "
             "(retry ladder + polish rounds)")
    return rep.finish()


if __name__ == "__main__":
    raise SystemExit(main())
