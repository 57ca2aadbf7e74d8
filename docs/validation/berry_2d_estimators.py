"""Why the geometric methods broke the adiabatic Berry passage of berry_2d: demodulation of
slaved coherences.

Usage: python docs/validation/berry_2d_estimators.py > docs/validation/berry_2d_estimators.txt

Default berry_2d case of ``berry_2d.py`` (lower adiabat, x0 = (-5, 0), k = (20, 0), width 1,
t_final 650 a.u., dt 2.5 a.u., seed 1). For an adiabatic passage the conditional density
operator is the projector on the lower adiabat, rho(x) ~ P_0(x), whose derivatives are known
from the model (central finite differences of P_0 in the diabatic frame, step 1e-4 bohr,
expressed in each trajectory's adiabatic basis; gauge invariant).

Three variants of the swarm estimate (``fields.rho_derivatives``, neighbours mapped by
unitarised overlaps, default bandwidth), ``VARIANTS``: no demodulation; every coherence
demodulated with kappa = -(E_n - E_m) v/|v|^2 (the default before this study; kappa = 10 /bohr
here); only the freely turning part demodulated, populations and the coherence slaved to the
states by adiabatic following (``fields.slow_part``) regressed plainly (the default). Across
this adiabatic crossing the coherence is slaved: it follows the basis, not the flow.

1. Along the passage (geometric_ehrenfest, 100 trajectories): the swarm's d_j rho and d_j^2 rho
   vs the analytic ones, averaged over the swarm every 50 a.u.
2. Final upper-state population P1 and total transverse kick dpy with each variant and with the
   analytic ("oracle") d rho, d^2 rho in place of the regression (the metric gradient d g is
   still regressed from the swarm's g). Exact: P1 = 1.5e-7, dpy = -5.0.
"""

import time

import numpy as np

from qhd_aimd.dynamics import fields as fl
from qhd_aimd.dynamics.integrator import Propagator
from qhd_aimd.electronic.models import ModelBackend, get_model
from qhd_aimd.prepare.wavepacket import sample_wavepacket

X0, K, WIDTH, T_FINAL, DT = [-5.0, 0.0], [20.0, 0.0], 1.0, 650.0, 2.5
BACKEND = ModelBackend(get_model("berry_2d"))
SWARM = fl.rho_derivatives


def analytic_derivatives(x, state=0, eps=1e-4):
    """(d_j P, d_j^2 P), each (D, N, N), of the projector on adiabat ``state`` at ``x``, in the
    basis the backend returns at ``x``."""
    def proj(y):
        v = BACKEND.compute(np.asarray(y, float)).handle[:, state]
        return np.outer(v, v.conj())

    vecs = BACKEND.compute(np.asarray(x, float)).handle
    p0 = proj(x)
    d1, d2 = [], []
    for j in range(len(x)):
        e = np.zeros(len(x))
        e[j] = eps
        pp, pm = proj(x + e), proj(x - e)
        d1.append(vecs.conj().T @ ((pp - pm) / (2 * eps)) @ vecs)
        d2.append(vecs.conj().T @ ((pp - 2 * p0 + pm) / eps**2) @ vecs)
    return np.array(d1), np.array(d2)


SLOW = fl.slow_part
VARIANTS = {  # (Propagator options, slow part) of the swarm estimate of d rho, d^2 rho
    "no demodulation": (dict(demodulate=False), SLOW),
    "all coherences demodulated": (dict(demodulate=True), lambda rho, e, v, dhdx=None: SLOW(rho, e, v)),
    "free part demodulated": (dict(demodulate=True), SLOW),
}


def run(method, n_traj, variant="free part demodulated", mode="swarm", log=None):
    stats = []

    def patched(a, positions, w, h, rho_in_frame, *args, **kwargs):
        exact = analytic_derivatives(positions[a])
        if mode == "oracle":
            return exact
        est = SWARM(a, positions, w, h, rho_in_frame, *args, **kwargs)
        stats.append([np.linalg.norm(exact[0]), np.linalg.norm(est[0] - exact[0]),
                      np.linalg.norm(exact[1]), np.linalg.norm(est[1] - exact[1])])
        return est

    options, slow = VARIANTS[variant]
    fl.rho_derivatives, fl.slow_part = patched, slow
    try:
        pos, mom = sample_wavepacket(X0, K, WIDTH, n_traj, 1)
        prop = Propagator(BACKEND, method, DT, 10, **options)
        s = prop.initialize(np.arange(n_traj), pos, mom, np.zeros(n_traj, int))
        for k in range(1, int(round(T_FINAL / DT)) + 1):
            s = prop.step(s)
            if log is not None and k % 20 == 0 and stats:
                a = np.mean(stats, axis=0)
                stats.clear()
                log(f"{k * DT:7.0f} {s.positions[:, 0].mean():7.2f} {a[0]:10.3f} {a[1]:10.3f} "
                    f"{a[2]:10.3f} {a[3]:10.3f}")
    finally:
        fl.rho_derivatives, fl.slow_part = SWARM, SLOW
    p1 = float(np.real(s.rho[:, 1, 1]).mean())
    return p1, float(s.momenta[:, 1].mean() - mom[:, 1].mean())


def main():
    for variant in ("all coherences demodulated", "free part demodulated"):
        print(f"# 1. geometric_ehrenfest, 100 trajectories, {variant}: swarm mean over "
              "trajectories of |analytic|, |swarm - analytic| (Frobenius, all D)")
        print(f"{'t_au':>7s} {'<x>':>7s} {'|d rho|':>10s} {'err':>10s} {'|d2 rho|':>10s} {'err':>10s}")
        run("geometric_ehrenfest", 100, variant, log=lambda line: print(line, flush=True))
        print()
    print("# 2. final P1 and total kick dpy (exact: P1 1.5e-07, dpy -5.00000)")
    print(f"{'method':24s} {'fields':30s} {'P1':>10s} {'dpy':>9s} {'wall_s':>7s}")
    for method in ("geometric_ehrenfest", "geometric_ehrenfest_qc"):
        for variant, mode in [(v, "swarm") for v in VARIANTS] + [("no demodulation", "oracle")]:
            t0 = time.perf_counter()
            p1, dpy = run(method, 100, variant, mode)
            label = "analytic (oracle)" if mode == "oracle" else variant
            print(f"{method:24s} {label:30s} {p1:10.2e} {dpy:9.5f} {time.perf_counter() - t0:7.1f}",
                  flush=True)


if __name__ == "__main__":
    main()
