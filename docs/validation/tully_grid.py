"""Every method on the whole Tully momentum grid against the exact split-operator reference.

Usage:
    python docs/validation/tully_grid.py [--n 100] [--methods m1,m2,...] [--cases simple:10,dual:50,...]
                                         [--dt 4] [key=value ...] > docs/validation/tully_grid.txt

Grid (issue 11): Tully 1 (tully_simple) k = 10, 15, 20, 30; Tully 2 (tully_dual) k = 20, 30, 40, 50;
Tully 3 (tully_extended) k = 8, 10, 25, 30; x0 = -10 (-15 for Tully 3), width 20/k bohr, Wigner
sampling (seed 1, the same swarm for every method), t_final = M (|x0| + 15) / k (the packet's
centre 15 bohr past the origin), dt 4 a.u., 10 electronic sub-steps. ``key=value`` pairs are passed
to ``Propagator`` for the coupled methods (e.g. coherence_gradient=regression
energy_correction=none); without them the package defaults of ``fields``/``dynamics`` are used.

Per case and method: T and R per adiabatic channel at t_final (x > 0 / x < 0), err_TR = sum over
channels of |T - T_exact| + |R - R_exact|, final D_12 (mean |rho_01|^2) and the exact one,
mean|dD| = time average of |D_12(t) - D_12,exact(t)|, energy drift of E_kin + Tr(rho H_el):
dE_swarm = max over time of |<E>(t) - <E>(0)| (swarm mean), dE_traj mean / max = mean / max over
trajectories of max over time |E_i(t) - E_i(0)| (mHa), wall time (s, shared machine).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from qhd_aimd.config import parse_config
from qhd_aimd.dynamics.integrator import Propagator
from qhd_aimd.electronic.models import ModelBackend, get_model
from qhd_aimd.exact import run_exact
from qhd_aimd.prepare.wavepacket import sample_wavepacket

GRID = {"tully_simple": (-10.0, (10, 15, 20, 30)), "tully_dual": (-10.0, (20, 30, 40, 50)),
        "tully_extended": (-15.0, (8, 10, 25, 30))}
SHORT = {"simple": "tully_simple", "dual": "tully_dual", "extended": "tully_extended"}
METHODS = ("ehrenfest", "ehrenfest_qc", "geometric_ehrenfest", "geometric_ehrenfest_qc")
MASS = 2000.0
HEADER = ("model           k   method                   T0     T1     R0     R1  err_TR  D12_fin "
          "D12_ex  mean|dD|  dE_swarm dE_trj_mean dE_trj_max  wall_s")


def cases(selection=None):
    out = []
    for name, (x0, ks) in GRID.items():
        for k in ks:
            tag = f"{name.replace('tully_', '')}:{k}"
            if selection is None or tag in selection:
                out.append((name, float(k), x0))
    return out


def propagator_options(pairs):
    opts = {}
    for p in pairs:
        key, val = p.split("=", 1)
        opts[key] = {"true": True, "false": False}.get(val.lower(), val)
        try:
            opts[key] = float(val) if key in ("bandwidth_factor", "ridge", "cutoff", "closed_kinetic_fraction") else opts[key]
        except ValueError:
            pass
    return opts


def package_options(cfg):
    """Propagator keyword arguments of the package defaults (``fields``, ``dynamics``) in ``cfg``."""
    f = cfg.fields
    return dict(bandwidth_factor=f.bandwidth_factor, bandwidth_bohr=f.bandwidth_bohr, ridge=f.ridge,
                cutoff=f.cutoff_sigma, demodulate=f.demodulate, quantum_force=f.quantum_force,
                coherence_gradient=f.coherence_gradient, quantum_momentum=f.quantum_momentum,
                energy_correction=cfg.dynamics.energy_correction,
                closed_kinetic_fraction=f.closed_kinetic_fraction, power_limit=f.power_limit)


def score(method, s, e, d12, ex, n_steps, wall):
    """One table row: T/R per channel of the final swarm ``s`` vs the exact result ``ex``, D_12,
    energy drift; e (steps + 1, T) E_kin + Tr(rho H) per trajectory, d12 (steps + 1,)."""
    e, d12 = np.asarray(e), np.asarray(d12)
    pops = np.real(np.diagonal(s.rho, axis1=1, axis2=2))
    right = s.positions[:, 0] > 0
    t_, r_ = (pops * right[:, None]).mean(0), (pops * ~right[:, None]).mean(0)
    drift_traj = np.abs(e - e[0]).max(axis=0)
    return {"method": method, "T": t_, "R": r_,
            "err": np.abs(t_ - ex.transmission).sum() + np.abs(r_ - ex.reflection).sum(),
            "d12_fin": d12[-1], "d12_ex": ex.decoherence[n_steps],
            "mean_dD": np.abs(d12 - ex.decoherence[: n_steps + 1]).mean(),
            "dE_swarm": np.abs(e.mean(1) - e[0].mean()).max(),
            "dE_trj_mean": drift_traj.mean(), "dE_trj_max": drift_traj.max(),
            "failures": len(s.failures), "wall": wall}


def run_case(name, k, x0, methods, n_traj, dt, options, exact_cache=None):
    """Rows (dict per method) for one grid case; the exact reference first."""
    width = 20.0 / k
    t_final = dt * round(MASS * (abs(x0) + 15.0) / k / dt)
    cfg = parse_config({"system": {"model": name},
                        "initial": {"position_bohr": x0, "momentum_au": k, "width_bohr": width,
                                    "n_trajectories": n_traj},
                        "dynamics": {"dt_au": dt, "t_final_au": t_final}})
    ex = run_exact(cfg)
    n_steps = cfg.dynamics.n_steps
    rows = [{"method": "exact", "T": ex.transmission, "R": ex.reflection,
             "d12_fin": ex.decoherence[n_steps], "wall": ex.wall_time_s}]
    pos, mom = sample_wavepacket(x0, k, width, n_traj, 1)
    backend = ModelBackend(get_model(name))
    for method in methods:
        t0 = time.perf_counter()
        prop = Propagator(backend, method, dt, 10, **{**package_options(cfg), **options})
        s = prop.initialize(np.arange(n_traj), pos, mom, np.zeros(n_traj, int))
        e = [np.add(*s.energies(prop.masses))]
        d12 = [np.mean(np.abs(s.rho[:, 0, 1]) ** 2)]
        for _ in range(n_steps):
            s = prop.step(s)
            e.append(np.add(*s.energies(prop.masses)))
            d12.append(np.mean(np.abs(s.rho[:, 0, 1]) ** 2))
        rows.append(score(method, s, e, d12, ex, n_steps, time.perf_counter() - t0))
    return rows


def format_row(name, k, r):
    t, rr = r["T"], r["R"]
    head = f"{name:15s} {k:3.0f}  {r['method']:22s} {t[0]:6.3f} {t[1]:6.3f} {rr[0]:6.3f} {rr[1]:6.3f}"
    if r["method"] == "exact":
        return head + f"          {r['d12_fin']:7.4f}"
    return (head + f" {r['err']:7.3f} {r['d12_fin']:7.4f} {r['d12_ex']:7.4f} {r['mean_dD']:8.4f} "
            f"{1e3 * r['dE_swarm']:9.3f} {1e3 * r['dE_trj_mean']:11.3f} {1e3 * r['dE_trj_max']:10.3f} "
            f"{r['wall']:7.1f}" + (f"  ({r['failures']} frozen)" if r["failures"] else ""))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--dt", type=float, default=4.0)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--cases", default=None, help="e.g. simple:10,dual:50,extended:10")
    ap.add_argument("options", nargs="*", help="key=value Propagator options (coupled methods)")
    a = ap.parse_args(argv)
    sel = None
    if a.cases:
        sel = set()
        for c in a.cases.split(","):
            m, k = c.split(":")
            sel.add(f"{SHORT.get(m, m).replace('tully_', '')}:{int(float(k))}")
    opts = propagator_options(a.options)
    print(f"# {a.n} trajectories, width 20/k bohr, dt {a.dt:g} a.u., seed 1, options {opts or 'defaults'}")
    print("# energies in mHa; dE_* = drift of E_kin + Tr(rho H_el)")
    print(HEADER, flush=True)
    for name, k, x0 in cases(sel):
        for r in run_case(name, k, x0, a.methods.split(","), a.n, a.dt, opts):
            print(format_row(name, k, r), flush=True)


if __name__ == "__main__":
    main()
