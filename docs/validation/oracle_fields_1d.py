"""Coupled-trajectory methods on Tully's models with the *exact* fields: method vs estimator error.

Usage: python docs/validation/oracle_fields_1d.py [n_trajectories] [--qhd] [model:k ...]
       > docs/validation/oracle_fields_1d.txt        (without --qhd)
       > docs/validation/oracle_fields_1d_qhd.txt    (with --qhd)

The swarm estimators (kernel density for d ln n, local regression for d rho, d^2 rho and d g)
are replaced by the fields of the exact split-operator solution at the same time: nuclear
density n = |psi|^2, conditional electronic density operator rho(x) = psi psi^+ / n (diabatic
frame), metric g = Re Tr(rho d rho d rho), all differentiated on the exact grid (central
differences) and interpolated linearly to each trajectory, d rho expressed in the trajectory's
adiabatic basis. Everything else (Wigner swarm, seed 1, dt 4 a.u., 10 sub-steps, classical
nuclei, each trajectory's own rho) is as in ``compare_methods.py``. Columns as there: transmission
/ reflection per adiabatic state, err_TR = sum |T - T_exact| + |R - R_exact|, max |p1(t) -
p1_exact(t)|, time-mean |D_12 - D_12,exact|. "swarm" rows: the default estimators;
"exact fields" rows: the oracle. Where n < 1e-6 max(n) the fields are set to zero.

``--qhd``: `geometric_ehrenfest_qc` (the Table II pair that comes from Eq. 66-67 without
approximation) with exact fields, (a) Wigner initial conditions as above or hydrodynamic ones
(positions sampled from |psi|^2, every momentum = k, the phase gradient of the Gaussian), each
(b) without or with the quantum force of Eq. 68, F_q = (1/4n) xi d(n d^2 ln n) (exact n, grid
differences), which the package does not implement (classical nuclei); "full QHD" = hydrodynamic
initial conditions + quantum force.
"""

import sys
import time

import numpy as np

from qhd_aimd.dynamics import fields as fl
from qhd_aimd.dynamics import swarm_fields as sfl
from qhd_aimd.dynamics.integrator import Propagator
from qhd_aimd.dynamics.methods import METHODS
from qhd_aimd.electronic.models import ModelBackend, get_model
from qhd_aimd.exact import make_grid, propagate
from qhd_aimd.prepare.wavepacket import sample_wavepacket

CASES = [("tully_simple", 15.0, -10.0, 3500.0), ("tully_simple", 30.0, -10.0, 1500.0),
         ("tully_dual", 20.0, -10.0, 2500.0), ("tully_dual", 30.0, -10.0, 1500.0),
         ("tully_extended", 10.0, -15.0, 7000.0), ("tully_extended", 30.0, -15.0, 3000.0)]
DT, WIDTH = 4.0, 1.0


class ExactFields:
    """Exact d ln n, d rho, d^2 rho (diabatic frame), d g and the quantum force on the grid at
    every sample."""

    def __init__(self, model, x0, k, t_final):
        self.mass = float(model.mass)
        n_samples = int(round(t_final / DT))
        grid = make_grid(model, [x0], [k], [WIDTH], 0, t_final)
        self.x = grid.axes[0]
        self.frames = []
        self.result = propagate(model, x0, k, WIDTH, 0, DT, n_samples, grid=grid,
                                snapshot=lambda i, psi: self.frames.append(self._fields(psi)))

    def _fields(self, psi):
        dx = self.x[1] - self.x[0]
        n = np.sum(np.abs(psi) ** 2, axis=0)
        ok = n > 1e-6 * n.max()
        safe = np.where(ok, n, 1.0)
        rho = np.einsum("ax,bx->abx", psi, psi.conj()) / safe
        d1 = np.gradient(rho, dx, axis=2)
        d2 = np.gradient(d1, dx, axis=2)
        g = np.real(np.einsum("abx,bcx,cax->x", rho, d1, d1))
        dg = np.gradient(g, dx)
        dlnn = np.gradient(n, dx) / safe
        d2ln = np.gradient(np.gradient(np.log(np.where(ok, n, 1e-6 * n.max())), dx), dx)
        fq = np.gradient(n * d2ln, dx) / safe / (4 * self.mass)
        zero = ~ok
        for f in (d1, d2):
            f[..., zero] = 0.0
        for f in (dg, dlnn, fq):
            f[zero] = 0.0
        return dlnn, d1, d2, dg, fq

    def at(self, step, x, what):
        f = self.frames[step][what]
        if f.ndim == 1:
            return np.interp(x, self.x, f)
        return (np.array([[np.interp(x, self.x, f[a, b].real) for b in range(2)] for a in range(2)])
                + 1j * np.array([[np.interp(x, self.x, f[a, b].imag) for b in range(2)]
                                 for a in range(2)]))


def run(backend, method, pos, mom, n_steps, oracle=None, quantum_force=False):
    saved = fl.grad_log_density, fl.rho_derivatives, fl.metric_gradient, sfl.extra_forces
    now = {"step": 0}
    if oracle is not None:
        def dlnn(positions, w, h):
            return oracle.at(now["step"], positions[:, 0], 0)[:, None]

        def rho_derivatives(a, positions, w, h, *args, **kwargs):
            x = positions[a, 0]
            v = backend.compute(positions[a]).handle
            return (np.array([v.conj().T @ oracle.at(now["step"], x, 1) @ v]),
                    np.array([v.conj().T @ oracle.at(now["step"], x, 2) @ v]))

        def metric_gradient(a, positions, w, h, g_all, ridge=1e-10):
            return np.full((1, 1, 1), oracle.at(now["step"], positions[a, 0], 3))

        fl.grad_log_density, fl.rho_derivatives, fl.metric_gradient = (
            dlnn, rho_derivatives, metric_gradient)
    if quantum_force:
        def extra_forces(*args):  # all trajectories active here: local = all, in order
            f_geo, f_qc = saved[3](*args)
            return f_geo, f_qc + oracle.at(now["step"], now["x"], 4)[:, None]

        sfl.extra_forces = extra_forces
    try:
        prop = Propagator(backend, method, DT, 10)
        update = prop._update_fields

        def tracked(s):
            now["step"], now["x"] = s.step, s.positions[:, 0]
            update(s)

        prop._update_fields = tracked
        s = prop.initialize(np.arange(len(pos)), pos, mom, np.zeros(len(pos), int))
        p1, d12 = [np.real(s.rho[:, 1, 1]).mean()], [np.mean(np.abs(s.rho[:, 0, 1]) ** 2)]
        for _ in range(n_steps):
            s = prop.step(s)
            p1.append(np.real(s.rho[:, 1, 1]).mean())
            d12.append(np.mean(np.abs(s.rho[:, 0, 1]) ** 2))
    finally:
        fl.grad_log_density, fl.rho_derivatives, fl.metric_gradient, sfl.extra_forces = saved
    return s, np.array(p1), np.array(d12)


def score(s, p1, d12, ex, n_steps):
    pops = np.real(np.diagonal(s.rho, axis1=1, axis2=2))
    right = s.positions[:, 0] > 0
    t_, r_ = (pops * right[:, None]).mean(0), (pops * ~right[:, None]).mean(0)
    err = np.abs(t_ - ex.result.transmission).sum() + np.abs(r_ - ex.result.reflection).sum()
    dp = np.abs(p1 - ex.result.populations[: n_steps + 1, 1]).max()
    dd = np.abs(d12 - ex.result.decoherence[: n_steps + 1]).mean()
    return (f"{t_[0]:6.3f} {t_[1]:6.3f} {r_[0]:6.3f} {r_[1]:6.3f} {err:7.3f} {dp:9.3f} "
            f"{dd:9.4f}")


def cases(n_traj, only, width):
    """Per selected case: print the exact row; yield (k, exact fields, n_steps, Wigner swarm,
    backend)."""
    for name, k, x0, t_final in CASES:
        if only and f"{name}:{k:g}" not in only:
            continue
        model = get_model(name)
        ex = ExactFields(model, x0, k, t_final)
        ref_t, ref_r = ex.result.transmission, ex.result.reflection
        print(f"{name:15s} {k:4.0f}  {'exact':{width}s} {ref_t[0]:6.3f} {ref_t[1]:6.3f} "
              f"{ref_r[0]:6.3f} {ref_r[1]:6.3f}", flush=True)
        yield (k, ex, int(round(t_final / DT)), sample_wavepacket(x0, k, WIDTH, n_traj, 1),
               ModelBackend(model))


def main_qhd(n_traj=100, only=None):
    print(f"# {n_traj} trajectories, width {WIDTH} bohr, dt {DT} a.u., seed 1; "
          "geometric_ehrenfest_qc with exact fields; ehrenfest (Wigner, own fields) for reference")
    print("model           k    initial conditions, force            T0     T1     R0     R1"
          "   err_TR  max|dp1|  mean|dD|   wall_s")
    for k, ex, n_steps, (pos, mom), backend in cases(n_traj, only, 36):
        runs = [("Wigner, ehrenfest", "ehrenfest", mom, None, False),
                ("Wigner, classical", "geometric_ehrenfest_qc", mom, ex, False),
                ("Wigner, + quantum force", "geometric_ehrenfest_qc", mom, ex, True),
                ("hydrodynamic, classical", "geometric_ehrenfest_qc", np.full_like(mom, k), ex,
                 False),
                ("hydrodynamic, + q. force (full QHD)", "geometric_ehrenfest_qc",
                 np.full_like(mom, k), ex, True)]
        for label, method, p0, oracle, qf in runs:
            t0 = time.perf_counter()
            s, p1, d12 = run(backend, method, pos, p0, n_steps, oracle, qf)
            print(f"{'':15s} {'':4s}  {label:36s} {score(s, p1, d12, ex, n_steps)} "
                  f"{time.perf_counter() - t0:8.1f}", flush=True)


def main(n_traj=100, only=None):
    print(f"# {n_traj} trajectories, width {WIDTH} bohr, dt {DT} a.u., seed 1; swarm = default "
          "estimators, exact fields = oracle from the split-operator solution")
    print("model           k    method                   fields          T0     T1     R0     R1"
          "   err_TR  max|dp1|  mean|dD|   wall_s")
    for _, ex, n_steps, (pos, mom), backend in cases(n_traj, only, 35):
        for method in METHODS:
            for label, oracle in (("swarm", None), ("exact fields", ex)):
                if method == "ehrenfest" and oracle is not None:
                    continue
                t0 = time.perf_counter()
                s, p1, d12 = run(backend, method, pos, mom, n_steps, oracle)
                print(f"{'':15s} {'':4s}  {method:22s} {label:12s} "
                      f"{score(s, p1, d12, ex, n_steps)} {time.perf_counter() - t0:8.1f}",
                      flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    (main_qhd if "--qhd" in args else main)(int(args[0]) if args and args[0].isdigit() else 100,
                                             only=[a for a in args if ":" in a])
