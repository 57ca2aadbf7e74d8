"""Compare the four methods of Table II with the exact split-operator reference on Tully's models.

Usage: python docs/validation/compare_methods.py [n_trajectories] [--plain] [--qhd] [model:k ...]
                                                 [method ...]
       > docs/validation/compare_methods.txt

For each (model, momentum): exact transmission/reflection per adiabatic state and the decoherence
indicator D_12(t) from ``qhd_aimd.exact``; for each method the swarm estimates of the same, their
errors (sum over states of |T - T_exact| + |R - R_exact|, max |p_1(t) - p_1,exact(t)|, time-mean
|D_12(t) - D_12,exact(t)|) and the wall time. Same initial swarm (Wigner sampling, seed 1) for all
methods; dt = 4 a.u.; default swarm-estimator options. ``--qhd``: the coupled methods run as full
QHD (``initial.sampling: hydrodynamic``, ``fields.quantum_force: true``), Ehrenfest as before.
"""

import sys
import time

import numpy as np

from qhd_aimd.config import parse_config
from qhd_aimd.dynamics.integrator import Propagator
from qhd_aimd.dynamics.methods import METHODS
from qhd_aimd.electronic.models import ModelBackend, get_model
from qhd_aimd.exact import run_exact
from qhd_aimd.prepare.wavepacket import sample_wavepacket

CASES = [("tully_simple", 15.0, -10.0, 3500.0), ("tully_simple", 30.0, -10.0, 1500.0),
         ("tully_dual", 20.0, -10.0, 2500.0), ("tully_dual", 30.0, -10.0, 1500.0),
         ("tully_extended", 10.0, -15.0, 7000.0), ("tully_extended", 30.0, -15.0, 3000.0)]
DT, WIDTH = 4.0, 1.0


def main(n_traj=100, demodulate=True, only=None, methods=None, qhd=False):
    print(f"# {n_traj} trajectories, width {WIDTH} bohr, dt {DT} a.u., seed 1, demodulate={demodulate}"
          + (", coupled methods as full QHD (hydrodynamic sampling + quantum force)" if qhd else ""))
    print("model           k    method                   T0     T1     R0     R1   err_TR  max|dp1|  mean|dD|   wall_s")
    for name, k, x0, t_final in CASES:
        if only and f"{name}:{k:g}" not in only:
            continue
        cfg = parse_config({"system": {"model": name},
                            "initial": {"position_bohr": x0, "momentum_au": k, "width_bohr": WIDTH,
                                        "n_trajectories": n_traj},
                            "dynamics": {"dt_au": DT, "t_final_au": t_final}})
        ex = run_exact(cfg)
        n_steps = cfg.dynamics.n_steps
        ref_t, ref_r = ex.transmission, ex.reflection
        print(f"{name:15s} {k:4.0f}  {'exact':22s} {ref_t[0]:6.3f} {ref_t[1]:6.3f} {ref_r[0]:6.3f} {ref_r[1]:6.3f}")
        pos, mom = sample_wavepacket(x0, k, WIDTH, n_traj, 1)
        backend = ModelBackend(get_model(name))
        for method in methods or METHODS:
            t0 = time.perf_counter()
            full = qhd and method != "ehrenfest"
            prop = Propagator(backend, method, DT, 10, demodulate=demodulate, quantum_force=full)
            p0 = np.full_like(mom, k) if full else mom  # hydrodynamic: the same positions, p = k
            s = prop.initialize(np.arange(n_traj), pos, p0, np.zeros(n_traj, int))
            p1, d12 = [np.real(s.rho[:, 1, 1]).mean()], [np.mean(np.abs(s.rho[:, 0, 1]) ** 2)]
            for _ in range(n_steps):
                s = prop.step(s)
                p1.append(np.real(s.rho[:, 1, 1]).mean())
                d12.append(np.mean(np.abs(s.rho[:, 0, 1]) ** 2))
            wall = time.perf_counter() - t0
            pops = np.real(np.diagonal(s.rho, axis1=1, axis2=2))
            right = s.positions[:, 0] > 0
            t_, r_ = (pops * right[:, None]).mean(0), (pops * ~right[:, None]).mean(0)
            err = np.abs(t_ - ref_t).sum() + np.abs(r_ - ref_r).sum()
            dp = np.abs(np.array(p1) - ex.populations[: n_steps + 1, 1]).max()
            dd = np.abs(np.array(d12) - ex.decoherence[: n_steps + 1]).mean()
            print(f"{'':15s} {'':4s}  {method:22s} {t_[0]:6.3f} {t_[1]:6.3f} {r_[0]:6.3f} {r_[1]:6.3f} "
                  f"{err:7.3f} {dp:9.3f} {dd:9.4f} {wall:8.1f}", flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    main(int(args[0]) if args else 100, demodulate="--plain" not in args,
         only=[a for a in args[1:] if ":" in a], methods=[a for a in args[1:] if a in METHODS],
         qhd="--qhd" in args)
