"""Analytic diatomic-like models as a diatomic backend would give them (curves + step overlaps
with random signs), shared by tests/test_diatomic_curves.py and tests/test_exact_diatomic.py."""

from __future__ import annotations

import numpy as np

from qhd_aimd.diatomic_curves import DiatomicCurves, adaptive_grid


def model_curves(model, r_lo, r_hi, dr=0.1, max_angle=0.02, signs=None, rng=None):
    """Curves of an analytic 2-state model as a backend would give them: energies and step
    overlaps of eigh's eigenvectors, each multiplied by a random sign per point (``rng``)."""
    def pair(rs):
        e, v = np.linalg.eigh(model.h(np.asarray(rs)[:, None]))
        if rng is not None:
            v = v * rng.choice([-1.0, 1.0], size=(len(rs), 1, 2))
        s = np.einsum("kan,kam->knm", v[:-1], v[1:])
        return e, s
    r, e, s, _ = adaptive_grid(pair, r_lo, r_hi, dr, max_angle)
    return DiatomicCurves(r, e, s, float(model.mass))



class Three:
    """Three diabatic curves of a diatomic-like model: a Morse well, a repulsive state and a
    Coulomb-like ionic curve crossing both (five avoided crossings), constant couplings."""

    mass = 2000.0
    dim = 1
    n_states = 3
    name = "three"

    def h(self, x):
        r = np.asarray(x, float)[..., 0]
        v0 = 0.1 * (1 - np.exp(-1.0 * (r - 2.0))) ** 2
        v1 = 0.12 * np.exp(-0.8 * (r - 2.0)) + 0.02
        v2 = 0.14 - 0.4 / r + 0.5 * np.exp(-2.0 * (r - 1.5))
        c01 = 0.004 + 0.0 * r  # constant couplings: every diabatic crossing avoided
        c12 = 0.003 + 0.0 * r
        c02 = 0.002 + 0.0 * r
        out = np.empty(r.shape + (3, 3))
        for (a, b), v in {(0, 0): v0, (1, 1): v1, (2, 2): v2, (0, 1): c01, (1, 2): c12,
                          (0, 2): c02}.items():
            out[..., a, b] = out[..., b, a] = v
        return out

    def dh(self, x, eps=1e-5):
        xp, xm = np.asarray(x, float) + eps, np.asarray(x, float) - eps
        return ((self.h(xp) - self.h(xm)) / (2 * eps))[..., None, :, :]


def three_curves(rng=None, dr=0.05, max_angle=0.02):
    m = Three()

    def pair(rs):
        e, v = np.linalg.eigh(m.h(np.asarray(rs)[:, None]))
        if rng is not None:
            v = v * rng.choice([-1.0, 1.0], size=(len(rs), 1, 3))
        return e, np.einsum("kan,kam->knm", v[:-1], v[1:])
    r, e, s, _ = adaptive_grid(pair, 0.9, 12.0, dr, max_angle)
    return DiatomicCurves(r, e, s, m.mass)
