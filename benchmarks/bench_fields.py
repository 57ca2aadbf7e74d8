"""Cost of the coupled-trajectory swarm fields vs number of trajectories T.

Times one ``Propagator._update_fields`` (method ``geometric_ehrenfest_qc``: kernel density,
d ln n, local quadratic regression of rho with neighbour overlaps, metric and its gradient)
on a serial swarm of T = 50, 100, 200, 400 trajectories of ``tully_simple`` (D = 1) and
``berry_2d`` (D = 2), broken down by wrapping the functions of ``qhd_aimd.dynamics.fields`` and
the backend's ``overlap`` (monkeypatched here at run time; the package is not modified).

Figures: seconds per call, scaling exponent (least-squares fit of log t vs log T), number of
neighbour overlaps per step, and the comparison with a realistic electronic-structure cost per
step: LiH SA2-CAS(2,2)/6-31G compute + one-solve force per trajectory (measured here when PySCF
is available) and the cost of the same number of neighbour overlaps done with PySCF
(``state_overlap``, measured here).

Also (issue 11 item 6) the whole ``Propagator.step`` of every coupled method against the
Ehrenfest step on the same swarm, T = 100 and 400, measured in one run (target ratio <= 2).

    python benchmarks/bench_fields.py [--quick]   (--quick: T up to 200)
    python benchmarks/bench_fields.py --ratio     (only the coupled / Ehrenfest step ratio, with
                                                   the study-default estimators; add --regression
                                                   for the neighbour-regression estimators too)
"""

from __future__ import annotations

import sys
import time

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from common import Report, Timer, casscf_available, molecule, quick_flag  # noqa: E402

PARTS = ("bandwidth", "kernel_matrix", "grad_log_density", "rho_derivatives", "metric",
         "metric_gradient")


def swarm_for(model, n, method="geometric_ehrenfest_qc"):
    from qhd_aimd.dynamics.integrator import Propagator
    from qhd_aimd.electronic.models import ModelBackend, get_model
    from qhd_aimd.prepare.wavepacket import sample_wavepacket

    be = ModelBackend(get_model(model))
    if model == "berry_2d":
        pos, mom = sample_wavepacket([-3.0, 0.0], [20.0, 0.0], [0.7, 0.7], n, 1)
    else:
        pos, mom = sample_wavepacket(-1.0, 15.0, 1.333, n, 1)
    # swarm at t=0 with an uncoupled propagator (no fields), then a few steps so that rho has
    # coherences; the coupled propagator only evaluates the fields on it
    unc = Propagator(be, "ehrenfest", 20.0)
    s = unc.initialize(np.arange(n), pos, mom, np.zeros(n, int))
    for _ in range(3):
        s = unc.step(s)
    return Propagator(be, method, 20.0), s


def instrumented(prop):
    """Wrap fields functions and backend.overlap with timers (restored by the caller)."""
    from qhd_aimd.dynamics import fields as fl

    timers = {k: Timer() for k in PARTS + ("overlap",)}
    saved = {k: getattr(fl, k) for k in PARTS}

    def wrap(fn, t):
        def inner(*a, **k):
            with t:
                return fn(*a, **k)
        return inner

    for k in PARTS:
        setattr(fl, k, wrap(saved[k], timers[k]))
    be = prop.backend
    t_ovl = timers["overlap"]
    ovl = be.overlap
    be.overlap = wrap(ovl, t_ovl)
    batched = getattr(type(be), "overlaps", None)
    if batched is not None:
        def overlaps(a, others):  # count pairs, not calls
            t0 = time.perf_counter()
            out = batched(be, a, others)
            t_ovl.total += time.perf_counter() - t0
            t_ovl.count += len(others)
            return out
        be.overlaps = overlaps

    def restore():
        for k in PARTS:
            setattr(fl, k, saved[k])
        del be.overlap
        if batched is not None:
            del be.overlaps

    return timers, restore


def measure(model, sizes):
    out = []
    for n in sizes:
        prop, s = swarm_for(model, n)
        prop._update_fields(s)  # warm-up (imports, caches)
        timers, restore = instrumented(prop)
        t0 = time.perf_counter()
        prop._update_fields(s)
        total = time.perf_counter() - t0
        restore()
        out.append((n, total, {k: (t.total, t.count) for k, t in timers.items()}))
    return out


def fit_exponent(ns, ts):
    ns, ts = np.asarray(ns, float), np.asarray(ts, float)
    ok = ts > 0
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(ns[ok]), np.log(ts[ok]), 1)[0])


def pyscf_costs():
    """(compute + force per trajectory-step, overlap per call), seconds, LiH SA2-CAS(2,2)/6-31G."""
    be, x0 = molecule("lih")
    a = be.compute(x0)
    rho = np.array([[0.6, 0.2 + 0.1j], [0.2 - 0.1j, 0.4]])
    t0 = time.perf_counter()
    b = be.compute(x0 + 0.01, reference=a)
    t1 = time.perf_counter()
    be.force(b, rho)
    t2 = time.perf_counter()
    for _ in range(20):
        be.overlap(a, b)
    t3 = time.perf_counter()
    return (t2 - t0), (t3 - t2) / 20, (t1 - t0), (t2 - t1)


def default_field_options() -> dict:
    """The swarm-estimator options a study gets by default (``FieldsSpec``, ``DynamicsSpec``)."""
    from qhd_aimd.config import DynamicsSpec, FieldsSpec

    f = FieldsSpec()
    return {"coherence_gradient": f.coherence_gradient, "quantum_momentum": f.quantum_momentum,
            "energy_correction": DynamicsSpec(dt_au=1.0, t_final_au=2.0).energy_correction,
            "demodulate": f.demodulate, "cutoff": f.cutoff_sigma}


def step_ratio(rep, models=("tully_simple", "berry_2d"), sizes=(100, 400), n_steps=5,
               estimator="default", n_blocks=6):
    """Wall time of one Propagator.step per method / Ehrenfest's, same swarm, same run.

    ``estimator``: "default" (the study defaults, ``default_field_options``: adiabatic-momentum
    coherence gradient, pair-centred quantum momentum, energy rescaling) or "regression" (the
    Propagator's own defaults: regression of the neighbours' rho with neighbour overlaps)."""
    import copy

    from qhd_aimd.dynamics.integrator import Propagator

    methods = ("ehrenfest", "geometric_ehrenfest", "ehrenfest_qc", "geometric_ehrenfest_qc")
    opts = default_field_options() if estimator == "default" else {}
    for model in models:
        rows = []
        for n in sizes:
            base, s0 = swarm_for(model, n)
            props, states = {}, {}
            for m in methods:
                props[m] = Propagator(base.backend, m, 4.0 if model != "berry_2d" else 2.5, 20, **opts)
                states[m] = copy.deepcopy(s0)
                props[m]._update_fields(states[m])
                states[m] = props[m].step(states[m])  # warm-up
            best = {m: [] for m in methods}
            # blocks of the methods interleaved (a load change on the shared machine hits all of
            # them), best of n_blocks blocks per method
            for _rep in range(n_blocks):
                for m in methods:
                    t0 = time.perf_counter()
                    for _k in range(n_steps):
                        states[m] = props[m].step(states[m])
                    best[m].append((time.perf_counter() - t0) / n_steps)
            per = {m: min(best[m]) for m in methods}
            rows.append([n] + [per[m] for m in methods] + [per[m] / per["ehrenfest"] for m in methods[1:]])
            for m in methods[1:]:
                rep.check(f"[{model}, {estimator}] T={n} {m} step / ehrenfest step", per[m] / per["ehrenfest"],
                          "<=", 2.0)
        rep.table(["T"] + [f"{m} s/step" for m in methods] + [f"{m} / ehr" for m in methods[1:]], rows,
                  caption=f"{model}, {estimator} estimators: Propagator.step wall time "
                          f"(best of {n_blocks} interleaved blocks of {n_steps} steps), serial")


def main():
    if "--ratio" in sys.argv:
        rep = Report("fields_ratio", "coupled / Ehrenfest step time on the models")
        step_ratio(rep)
        if "--regression" in sys.argv:
            step_ratio(rep, estimator="regression")
        return rep.finish()
    quick = quick_flag()
    rep = Report("fields", "coupled-trajectory swarm fields vs number of trajectories")
    sizes = [50, 100, 200] if quick else [50, 100, 200, 400]
    ok, _ = casscf_available()
    es = pyscf_costs() if ok else None
    if es:
        rep.figure("LiH SA2 compute + one-solve force per trajectory-step", es[0], "s")
        rep.figure("LiH SA2 state_overlap per call (PySCF)", es[1], "s")
    for model in ("tully_simple", "berry_2d"):
        res = measure(model, sizes)
        rows = []
        for n, total, parts in res:
            n_ovl = parts["overlap"][1]
            row = [n, total, total / n, parts["rho_derivatives"][0], parts["overlap"][0], n_ovl,
                   n_ovl / n, parts["kernel_matrix"][0] + parts["grad_log_density"][0],
                   parts["metric_gradient"][0]]
            if es:
                # per-step cost of the same fields on a LiH swarm: our part + PySCF overlaps,
                # relative to the electronic structure of the whole swarm (T computes + forces)
                row.append((total - parts["overlap"][0] + n_ovl * es[1]) / (n * es[0]))
            rows.append(row)
        header = ["T", "fields s", "s/traj", "rho_deriv s", "overlap s", "n pairs", "pairs/traj",
                  "kde s", "dg s"]
        if es:
            header.append("LiH: fields/ES")
        rep.table(header, rows, caption=f"{model}: one _update_fields, geometric_ehrenfest_qc, serial")
        ns = np.array([r[0] for r in res], float)
        ts = np.array([r[1] for r in res])
        rep.figure(f"[{model}] scaling exponent of _update_fields (fit t ~ T^a)", fit_exponent(ns, ts), "")
        rep.figure(f"[{model}] scaling exponent of neighbour-overlap count",
                   fit_exponent(ns, np.array([r[2]["overlap"][1] for r in res], float)), "")
        n, total, parts = res[-1]
        if es:
            rep.figure(f"[{model}] fields per traj / (LiH compute+force) at T={n}", total / n / es[0], "")
            rep.check(f"[{model}] model-backend fields cost / LiH ES cost at T={n}",
                      total / (n * es[0]), "<=", 0.05,
                      "our per-step swarm-field overhead vs the electronic structure it serves")
            n_ovl = parts["overlap"][1]
            rep.figure(f"[{model}] PySCF neighbour overlaps / LiH ES at T={n} (projection)",
                       n_ovl * es[1] / (n * es[0]), "")
    rep.note("fields are serial here; under MPI rho_derivatives/metric_gradient and their "
             "overlaps are split over ranks, kernel_matrix/grad_log_density are replicated")
    return rep.finish()


if __name__ == "__main__":
    raise SystemExit(main())
