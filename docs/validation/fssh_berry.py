"""Surface hopping on the complex 2-D model berry_2d vs the exact split-operator reference.

Usage: python docs/validation/fssh_berry.py [n_trajectories] > docs/validation/fssh_berry.txt

Same cases, packet and exact numerics as docs/validation/berry_2d.py (default model started on
either adiabat: adiabatic passage; A = 0.02 Ha, B = 3 /bohr: non-adiabatic), fssh with and
without ``hopping.berry_force`` (EDC, coupling-direction rescaling), dt 2.5 a.u., hop seed 1.
Columns: final fraction on each active state; per-state transverse kick dpy_n = mean p_y of the
trajectories on state n minus <p_y>(0) (exact: of P_n Psi); total kick; hops per trajectory.
No phase choice anywhere: the complex states come from the solver with arbitrary e^{i phi}.
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

X0, K, WIDTH, T_FINAL, DT = [-5.0, 0.0], [20.0, 0.0], 1.0, 650.0, 2.5
CASES = [("default", {}, 0), ("default", {}, 1), ("A=0.02,B=3", {"A": 0.02, "B": 3.0}, 0)]


def _row(label, pops, dpy_n, dpy, extra=""):
    per = " ".join(f"{d:9.5f}" if p >= 1e-3 else f"{'-':>9s}" for p, d in zip(pops, dpy_n))
    return f"{'':14s} {label:22s} {pops[0]:8.3f} {pops[1]:8.3f} {per} {dpy:9.5f} {extra}"


def main(n_traj=100):
    print(f"# {n_traj} trajectories, width {WIDTH} bohr, x0 {X0}, k {K}, t_final {T_FINAL} a.u., "
          f"dt {DT} a.u., sampling seed 1, hop seed 1, random e^(i phi) phases at every call")
    print(f"{'case':14s} {'method':22s} {'P0':>8s} {'P1':>8s} {'dpy_0':>9s} {'dpy_1':>9s} {'dpy':>9s}"
          "  hops/traj  wall_s")
    for label, params, state in CASES:
        cfg = parse_config({"system": {"model": "berry_2d", "model_params": params},
                            "initial": {"position_bohr": X0, "momentum_au": K, "width_bohr": WIDTH,
                                        "n_trajectories": n_traj, "state": state, "seed": 1},
                            "dynamics": {"dt_au": 25.0, "t_final_au": T_FINAL}})
        ex = run_exact(cfg)
        py0 = ex.mean_momentum_au[0, 1]
        print(f"{label} (start on {state})")
        print(_row("exact", ex.populations[-1], ex.final_momentum_per_state[:, 1] - py0,
                   ex.mean_momentum_au[-1, 1] - py0), flush=True)
        pos, mom = sample_wavepacket(X0, K, WIDTH, n_traj, 1)
        backend = ModelBackend(get_model("berry_2d", **params), random_phases=True)
        for bf in (False, True):
            prop = Propagator(backend, "fssh", DT, 10, hopping=HoppingOptions(berry_force=bf), seed=1)
            t0 = time.perf_counter()
            s = prop.initialize(np.arange(n_traj), pos, mom, np.full(n_traj, state))
            hops = 0
            for _ in range(int(round(T_FINAL / DT))):
                s = prop.step(s)
                hops += int(((s.hop_to >= 0) & ~s.hop_frustrated).sum())
            wall = time.perf_counter() - t0
            on = [s.active_state == n for n in range(2)]
            pops = np.array([o.mean() for o in on])
            dpy_n = [s.momenta[o, 1].mean() - mom[:, 1].mean() if o.any() else np.nan for o in on]
            print(_row(f"fssh berry_force={bf}", pops, dpy_n, s.momenta[:, 1].mean() - mom[:, 1].mean(),
                       f"{hops / n_traj:9.2f} {wall:7.1f}"), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
