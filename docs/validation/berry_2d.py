"""Exact split-operator reference vs the four methods of Table II on the complex 2-D model berry_2d.

Usage: python docs/validation/berry_2d.py [n_trajectories] [method ...] [key=value ...]
       > docs/validation/berry_2d.txt

``key=value`` pairs are passed to ``Propagator`` (e.g. coherence_gradient=energy_consistent
energy_correction=rescale, the package's config defaults; without them the Propagator defaults:
regression estimator, no energy correction).

Cases: the default model (A = 0.10 Ha, B = 1.0 /bohr, W = 5.0 /bohr, M = 1000; adiabatic passage)
started on either adiabat, and a non-adiabatic variant (A = 0.02 Ha, B = 3.0 /bohr) started on the
lower one; packet x0 = (-5, 0) bohr, k = (20, 0) a.u., width 1 bohr, t_final = 650 a.u. Exact:
``qhd_aimd.exact`` with its default numerics (dt_max 1 a.u., p_factor 2). Swarms: the same
Wigner-sampled initial conditions (seed 1) for every method, dt = 2.5 a.u., 10 electronic
sub-steps, default swarm estimators.

Columns: final adiabatic populations P0, P1; per-state transverse kick dpy_n = <p_y>_n(t_final) -
<p_y>(0) (exact: kinetic momentum of P_n Psi; swarm: rho_nn-weighted mean over trajectories;
'-' where P_n < 1e-3); the total kick dpy = <p_y>(t_final) - <p_y>(0); the change of the total
<p^2> (the Berry force does no work; energy moves between <p^2> and the states' energies only by
transitions, 2A * 2M = 400 / 80 a.u. per unit population); wall time.
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

X0, K, WIDTH, T_FINAL, DT = [-5.0, 0.0], [20.0, 0.0], 1.0, 650.0, 2.5
CASES = [("default", {}, 0), ("default", {}, 1), ("A=0.02,B=3", {"A": 0.02, "B": 3.0}, 0)]


def _row(label, pops, dpy_n, dpy, dp2, wall):
    per = " ".join(f"{d:9.5f}" if p >= 1e-3 else f"{'-':>9s}" for p, d in zip(pops, dpy_n))
    return (f"{'':22s} {label:22s} {pops[0]:10.3e} {pops[1]:10.3e} {per} {dpy:9.5f} {dp2:9.4f}"
            f" {wall:7.1f}")


def main(n_traj=100, methods=None, options=None):
    options = options or {}
    print(f"# {n_traj} trajectories, width {WIDTH} bohr, x0 {X0}, k {K}, t_final {T_FINAL} a.u., "
          f"swarm dt {DT} a.u., seed 1; exact: dt_max 1 a.u., p_factor 2; options {options or 'none'}")
    print(f"{'case':14s} state  {'method':22s} {'P0':>10s} {'P1':>10s} {'dpy_0':>9s} {'dpy_1':>9s}"
          f" {'dpy':>9s} {'d<p^2>':>9s} {'wall_s':>7s}")
    for label, params, state in CASES:
        cfg = parse_config({"system": {"model": "berry_2d", "model_params": params},
                            "initial": {"position_bohr": X0, "momentum_au": K,
                                        "width_bohr": WIDTH, "n_trajectories": n_traj,
                                        "state": state, "seed": 1},
                            "dynamics": {"dt_au": 25.0, "t_final_au": T_FINAL}})
        ex = run_exact(cfg)
        py0 = ex.mean_momentum_au[0, 1]
        a = params.get("A", 0.1)  # adiabatic energies are -A, +A everywhere: <V>(0) = -+A
        p2_0 = 2 * ex.meta["mass"] * (ex.energy[0] - (-a if state == 0 else a))
        p2_1 = float(ex.populations[-1] @ ex.final_momentum_sq_per_state.sum(axis=1))
        print(f"{label:14s} {state:5d}")
        print(_row("exact", ex.populations[-1], ex.final_momentum_per_state[:, 1] - py0,
                   ex.mean_momentum_au[-1, 1] - py0, p2_1 - p2_0, ex.wall_time_s), flush=True)
        pos, mom = sample_wavepacket(X0, K, WIDTH, n_traj, 1)
        backend = ModelBackend(get_model("berry_2d", **params))
        for method in methods or METHODS:
            t0 = time.perf_counter()
            prop = Propagator(backend, method, DT, 10, **(options if method != "ehrenfest" else {}))
            s = prop.initialize(np.arange(n_traj), pos, mom, np.full(n_traj, state))
            for _ in range(int(round(T_FINAL / DT))):
                s = prop.step(s)
            w = np.real(np.diagonal(s.rho, axis1=1, axis2=2))  # (T, n)
            py_start = mom[:, 1].mean()
            dpy_n = (w * s.momenta[:, 1:2]).sum(0) / np.maximum(w.sum(0), 1e-300) - py_start
            dp2 = np.mean(np.sum(s.momenta**2, 1)) - np.mean(np.sum(mom**2, 1))
            print(_row(method, w.mean(0), dpy_n, s.momenta[:, 1].mean() - py_start, dp2,
                       time.perf_counter() - t0), flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    main(int(args[0]) if args and args[0].isdigit() else 100,
         methods=[a for a in args if a in METHODS],
         options=dict(a.split("=", 1) for a in args if "=" in a))
