"""Surface hopping (``fssh``, ``fssh_qc``) on the Tully grid vs the exact split-operator reference.

Usage: python docs/validation/fssh_grid.py [n_trajectories] [variant ...] [model:k ...]
       > docs/validation/fssh_grid.txt

variants: ``fssh`` (EDC, the default), ``fssh_none`` (no decoherence correction), ``fssh_qc``
(EDC + the seed's coupled-trajectory hop rate), ``fssh_qc_none``. Grid: Tully 1 k = 10, 15, 20,
30 and Tully 2 k = 20, 30, 40, 50 from x0 = -10; Tully 3 k = 8, 10, 25, 30 from x0 = -15; width
20/k bohr; dt = min(8, 120/k) a.u. (v dt <= 0.06 bohr); t_final = 1.3 * 2 |x0| M / k; Wigner sample (seed 1), hop seed 1. A case stops early once every trajectory is beyond
|x| = 9 bohr and moving outward (checked every 25 steps).

Per case: exact T/R per adiabatic state (``qhd_aimd.exact``); per variant the fraction of
trajectories transmitted / reflected on each active state, err_TR = sum over channels of
|T - T_exact| + |R - R_exact|, its 2-sigma statistical size (2 sqrt(sum p(1-p)/n)), the gap between
the active-state fractions and the mean rho_nn (internal consistency), hops and frustrated hops
per trajectory, max per-trajectory |dE| (kinetic + active-state energy) and the wall time.
"""

import sys
import time

import numpy as np

from qhd_aimd.config import parse_config
from qhd_aimd.dynamics.hopping import HoppingOptions
from qhd_aimd.dynamics.integrator import Propagator
from qhd_aimd.electronic.models import ModelBackend, get_model
from qhd_aimd.exact import run_exact
from qhd_aimd.prepare.wavepacket import sample_wavepacket

GRID = ([("tully_simple", k, -10.0) for k in (10.0, 15.0, 20.0, 30.0)]
        + [("tully_dual", k, -10.0) for k in (20.0, 30.0, 40.0, 50.0)]
        + [("tully_extended", k, -15.0) for k in (8.0, 10.0, 25.0, 30.0)])
VARIANTS = {"fssh": ("fssh", "edc"), "fssh_none": ("fssh", "none"),
            "fssh_qc": ("fssh_qc", "edc"), "fssh_qc_none": ("fssh_qc", "none")}
X_OUT = 9.0  # bohr: beyond it the derivative couplings of the three models are negligible


def dt_for(k: float) -> float:
    return min(8.0, 120.0 / k)


def run_case(name, k, x0, n_traj, method, decoherence, hop_seed=1):
    """Final (T, R) fractions per active state, mean rho T/R, hops, frustrated, max |dE|, wall."""
    mass = get_model(name).mass
    t_final = 1.3 * 2 * abs(x0) * mass / k
    pos, mom = sample_wavepacket(x0, k, 20.0 / k, n_traj, 1)
    backend = ModelBackend(get_model(name))
    dt = dt_for(k)
    prop = Propagator(backend, method, dt, 10, hopping=HoppingOptions(decoherence=decoherence),
                      seed=hop_seed)
    t0 = time.perf_counter()
    s = prop.initialize(np.arange(n_traj), pos, mom, np.zeros(n_traj, int))
    e0 = sum(s.energies(prop.masses))
    hops = frustrated = 0
    de = 0.0
    for step in range(int(round(t_final / dt))):
        if step % 25 == 0 and np.all((np.abs(s.positions[:, 0]) > X_OUT) & (s.positions[:, 0] * s.momenta[:, 0] > 0)):
            break  # every trajectory has left the coupling region for good: T/R are final
        s = prop.step(s)
        hops += int(((s.hop_to >= 0) & ~s.hop_frustrated).sum())
        frustrated += int(s.hop_frustrated.sum())
        de = max(de, float(np.abs(sum(s.energies(prop.masses)) - e0).max()))
    wall = time.perf_counter() - t0
    right = s.positions[:, 0] > 0
    on = np.stack([s.active_state == n for n in range(2)], axis=1)
    pops = np.real(np.diagonal(s.rho, axis1=1, axis2=2))
    t_, r_ = (on & right[:, None]).mean(0), (on & ~right[:, None]).mean(0)
    te, re = (pops * right[:, None]).mean(0), (pops * ~right[:, None]).mean(0)
    return t_, r_, te, re, hops / n_traj, frustrated / n_traj, de, wall


def main(n_traj=500, variants=("fssh", "fssh_none"), only=None):
    print(f"# {n_traj} trajectories, width 20/k bohr, dt min(8, 120/k) a.u., sampling seed 1, hop seed 1")
    print("model           k   x0  variant        T0     T1     R0     R1   err_TR  2sigma  |frac-rho|"
          "  hops  frustr  max|dE|   wall_s")
    for name, k, x0 in GRID:
        if only and f"{name}:{k:g}" not in only:
            continue
        mass = get_model(name).mass
        cfg = parse_config({"system": {"model": name},
                            "initial": {"position_bohr": x0, "momentum_au": k, "width_bohr": 20.0 / k,
                                        "n_trajectories": 1},
                            "dynamics": {"dt_au": dt_for(k), "t_final_au": 1.3 * 2 * abs(x0) * mass / k}})
        ex = run_exact(cfg)
        ref_t, ref_r = ex.transmission, ex.reflection
        print(f"{name:15s} {k:3.0f} {x0:4.0f}  {'exact':12s} {ref_t[0]:6.3f} {ref_t[1]:6.3f} "
              f"{ref_r[0]:6.3f} {ref_r[1]:6.3f}", flush=True)
        for v in variants:
            t_, r_, te, re, hops, fr, de, wall = run_case(name, k, x0, n_traj, *VARIANTS[v])
            err = np.abs(t_ - ref_t).sum() + np.abs(r_ - ref_r).sum()
            p = np.concatenate([t_, r_])
            sig2 = 2 * np.sqrt(np.sum(p * (1 - p)) / n_traj)
            gap = np.abs(t_ - te).sum() + np.abs(r_ - re).sum()
            print(f"{'':15s} {'':3s} {'':4s}  {v:12s} {t_[0]:6.3f} {t_[1]:6.3f} {r_[0]:6.3f} {r_[1]:6.3f} "
                  f"{err:7.3f} {sig2:7.3f} {gap:9.3f} {hops:6.2f} {fr:6.2f} {de:8.1e} {wall:8.1f}",
                  flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    n = int(args[0]) if args and args[0].isdigit() else 500
    main(n, [a for a in args if a in VARIANTS] or ("fssh", "fssh_none"),
         [a for a in args if ":" in a])
