"""Surface hopping on the complex 2-D model berry_2d vs the exact split-operator reference.

Usage: python docs/validation/fssh_berry.py [n_trajectories] [none] [upper]
       > docs/validation/fssh_berry.txt
       (``none``: ``hopping.decoherence: none`` instead of the default EDC; ``upper``: only the
       default model started on the upper adiabat)

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


def passage_hop_probability(dt, edc, state=1, c_hartree=0.1, n_sub=10):
    """One straight path x = -5 + v t, y = 0 through the default berry_2d (flat adiabats 2A apart:
    no force, so the path is exact for FSSH until a hop), started on ``state``: the FSSH first-hop
    probability 1 - prod_steps (1 - p_step), p_step = max(0, 1 - rho'_aa/rho_aa) (the two-state
    local-diabatization probability), with or without Granucci-Persico EDC on the amplitudes after
    each step (E_kin = k^2/2M). Returns (first-hop probability, max transient population of the
    other adiabat). Diagonalisation by numpy: the phases are arbitrary and never enter."""
    model = get_model("berry_2d")
    v, ekin = K[0] / model.mass, K[0] ** 2 / (2 * model.mass)
    x, other = X0[0], 1 - state
    w, u = np.linalg.eigh(model.h(np.array([x, 0.0])))
    c = u[:, state].astype(complex)
    stay, peak = 1.0, 0.0
    while x < -X0[0]:
        x_new = x + v * dt
        p_old = abs(np.vdot(u[:, state], c)) ** 2
        for j in range(n_sub):
            e, q = np.linalg.eigh(model.h(np.array([x + (j + 0.5) / n_sub * (x_new - x), 0.0])))
            c = q @ (np.exp(-1j * e * dt / n_sub) * (q.conj().T @ c))
        x = x_new
        w, u = np.linalg.eigh(model.h(np.array([x, 0.0])))
        a = u.conj().T @ c
        peak = max(peak, abs(a[other]) ** 2)
        stay *= 1.0 - max(0.0, 1.0 - abs(a[state]) ** 2 / p_old)
        if edc:
            tau = (1.0 + c_hartree / ekin) / abs(w[other] - w[state])
            a[other] *= np.exp(-dt / tau)
            a[state] *= np.sqrt((1.0 - abs(a[other]) ** 2) / abs(a[state]) ** 2)
            c = u @ a
    return 1.0 - stay, peak


def main(n_traj=100, decoherence="edc", only_upper=False):
    print(f"# {n_traj} trajectories, width {WIDTH} bohr, x0 {X0}, k {K}, t_final {T_FINAL} a.u., "
          f"dt {DT} a.u., sampling seed 1, hop seed 1, random e^(i phi) phases at every call, "
          f"decoherence {decoherence}")
    print(f"{'case':14s} {'method':22s} {'P0':>8s} {'P1':>8s} {'dpy_0':>9s} {'dpy_1':>9s} {'dpy':>9s}"
          "  hops/traj  wall_s")
    for label, params, state in CASES:
        if only_upper and (label, state) != ("default", 1):
            continue
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
            prop = Propagator(backend, "fssh", DT, 10, hopping=HoppingOptions(berry_force=bf, decoherence=decoherence), seed=1)
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


    print("# upper-state start, one straight path (passage_hop_probability): FSSH first-hop "
          "probability and the peak transient lower-state population")
    for dt in (DT, 1.0):
        for edc in (False, True):
            p_hop, peak = passage_hop_probability(dt, edc)
            print(f"  dt {dt:4.1f}  {'edc ' if edc else 'none'}  P(hop down) {p_hop:6.3f}  "
                  f"peak transient {peak:6.4f}", flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    main(int(args[0]) if args and args[0].isdigit() else 100, "none" if "none" in args else "edc",
         "upper" in args)
