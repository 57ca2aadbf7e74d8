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

def run_with_shrinkage():
    """Patch ``fields``: inside ``rho_derivatives`` with a wavevector the fits are, in order, the
    slow part and the demodulated free part (``slow_part`` is always given with demodulation);
    the second one is replaced by ``fit_se`` with its first derivative shrunk."""
    orig_rho, orig_fit = fl.rho_derivatives, fl.local_fit
    calls = []

    def rho_derivatives(*args, **kwargs):
        calls.clear()
        calls.append(len(args) > 7 and args[7] is not None or kwargs.get("kappa") is not None)
        return orig_rho(*args, **kwargs)

    def local_fit(dx, dy, w, h, quadratic, ridge=1e-10):
        calls.append(None)
        if not (calls[0] and quadratic and len(calls) == 3):
            return orig_fit(dx, dy, w, h, quadratic, ridge)
        d1, d2, se2 = fit_se(dx, dy, w, h, ridge)
        return d1 * (np.abs(d1) ** 2 / (np.abs(d1) ** 2 + se2 + 1e-300)), d2

    fl.rho_derivatives, fl.local_fit = rho_derivatives, local_fit


run_with_shrinkage()
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
