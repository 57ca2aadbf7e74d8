"""Experiment (not in the package): Wiener shrinkage of the demodulated coherence gradient.

Usage: python docs/validation/shrink_df_experiment.py berry
       python docs/validation/shrink_df_experiment.py [model:k ...] [method ...]

``fields.rho_derivatives`` with the gradient d f of the demodulated free part multiplied by
|df|^2 / (|df|^2 + se^2), se the standard error of the regression coefficient (weighted least
squares, residual variance from the fit), before it enters d rho and the cross term 2 i kappa df
of d^2 rho. ``berry``: the default berry_2d passage (100 trajectories) for both geometric methods;
otherwise ``compare_methods.py 100`` with the given cases and methods. Results in docs/physics.md
("What is left").
"""
import sys

import numpy as np

from qhd_aimd.dynamics import fields as fl

def fit_se(dx, dy, w, h, ridge=1e-10):
    k, d = dx.shape
    z = dx / h
    cols = [z, 0.5 * z**2]
    iu = np.triu_indices(d, 1)
    if k >= 2 * (2 * d + len(iu[0])):
        cols.append(z[:, iu[0]] * z[:, iu[1]])
    a = np.concatenate(cols, axis=1)
    y = dy.reshape(k, -1)
    aw = a * w[:, None]
    normal = aw.T @ a
    normal += ridge * max(np.trace(normal) / normal.shape[0], 1e-300) * np.eye(normal.shape[0])
    inv = np.linalg.inv(normal)
    coef = inv @ (aw.T @ y)
    r = y - a @ coef
    sigma2 = np.einsum("k,km->m", w, np.abs(r) ** 2) / w.sum() * k / max(k - a.shape[1], 1)
    cov = inv @ ((a * w[:, None] ** 2).T @ a) @ inv  # times sigma2
    se2 = np.outer(np.diag(cov)[:d] / h**2, sigma2)  # (D, M)
    first = (coef[:d] / h[:, None])
    second = (coef[d:2 * d] / (h**2)[:, None])
    shape = (d,) + dy.shape[1:]
    return first.reshape(shape), second.reshape(shape), se2.reshape(shape)

def patched(a, positions, w, h, rho_in_frame, ridge=1e-10, quadratic=True, kappa=None):
    if kappa is None or not quadratic:
        return ORIG(a, positions, w, h, rho_in_frame, ridge, quadratic, kappa)
    nbrs = np.array([b for b in np.flatnonzero(w[a]) if b != a], int)
    rho_nbrs, rho_a, *slow = rho_in_frame(a, nbrs)
    if len(nbrs) == 0:
        z = np.zeros((positions.shape[1],) + rho_a.shape, dtype=complex)
        return z, z.copy()
    dx = positions[nbrs] - positions[a]
    p1 = p2 = 0.0
    if slow:
        slow_nbrs, slow_a = slow
        p1, p2 = fl.local_fit(dx, slow_nbrs - slow_a, w[a, nbrs], h, quadratic, ridge)
        rho_nbrs, rho_a = rho_nbrs - slow_nbrs, rho_a - slow_a
    phase = np.exp(-1j * np.einsum("nmj,kj->knm", kappa, dx))
    d1, d2, se2 = fit_se(dx, rho_nbrs * phase - rho_a, w[a, nbrs], h, ridge)
    d1 = d1 * (np.abs(d1) ** 2 / (np.abs(d1) ** 2 + se2 + 1e-300))
    kap = np.moveaxis(kappa, 2, 0)
    return p1 + d1 + 1j * kap * rho_a, p2 + d2 + 2j * kap * d1 - kap**2 * rho_a

ORIG = fl.rho_derivatives
fl.rho_derivatives = patched
import runpy
if sys.argv[1] == "berry":
    from qhd_aimd.dynamics.integrator import Propagator
    from qhd_aimd.electronic.models import ModelBackend, get_model
    from qhd_aimd.prepare.wavepacket import sample_wavepacket
    B = ModelBackend(get_model("berry_2d"))
    pos, mom = sample_wavepacket([-5.0, 0.0], [20.0, 0.0], 1.0, 100, 1)
    for method in ("geometric_ehrenfest", "geometric_ehrenfest_qc"):
        prop = Propagator(B, method, 2.5, 10)
        s = prop.initialize(np.arange(100), pos, mom, np.zeros(100, int))
        for k in range(260):
            s = prop.step(s)
        print(method, "P1 %.2e" % np.real(s.rho[:, 1, 1]).mean(), "dpy %.4f" % (s.momenta[:, 1].mean() - mom[:, 1].mean()), flush=True)
else:
    sys.argv = [sys.argv[0], "100"] + sys.argv[1:]
    runpy.run_path("docs/validation/compare_methods.py", run_name="__main__")
