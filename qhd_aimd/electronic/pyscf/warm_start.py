"""Warm-start orbitals at a new geometry: transport through the Loewdin-orthogonalised AO basis
and polynomial extrapolation of the core and active orbital subspaces along the path.

Projectors only: no orbital is matched or sign-aligned between steps.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def _lowdin_reorthonormalize(c: np.ndarray, s: np.ndarray) -> np.ndarray:
    """C (C^T S C)^{-1/2}: orbitals of another geometry made orthonormal in the metric S."""
    m = c.T @ s @ c
    w, v = np.linalg.eigh(m)
    return c @ (v * w**-0.5) @ v.T


def _sym_powers(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S^{1/2}, S^{-1/2}) of a symmetric positive definite matrix."""
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(w)) @ v.T, (v / np.sqrt(w)) @ v.T


def _transport_orbitals(x: np.ndarray, mhalf_new: np.ndarray, s_new: np.ndarray) -> np.ndarray:
    """Orbitals given in the Loewdin-orthogonalised AO basis of the old geometry,
    x = S_old^{1/2} C, carried to the new one: C' = S_new^{-1/2} x (orthonormal in S_new because
    x^T x = 1; a final ``_lowdin_reorthonormalize`` only removes round-off). ``mhalf_new`` is
    S_new^{-1/2}.

    Compared with re-orthonormalising C itself in the new metric, C (C^T S_new C)^{-1/2}, this
    keeps the orbitals' expansion in the *orthogonalised* AOs that move with the atoms; along
    MD steps of 0.03-0.1 bohr it gives a 3x smaller initial SA-CASSCF orbital gradient (measured
    on ethylene, ``benchmarks/bench_warm_start.py``).
    """
    return _lowdin_reorthonormalize(mhalf_new @ x, s_new)


def _orthonormal_block(b: np.ndarray) -> Optional[np.ndarray]:
    """B (B^T B)^{-1/2}, or None when B has lost rank (singular value < 0.5)."""
    if b.shape[1] == 0:
        return b
    w, v = np.linalg.eigh(b.T @ b)
    if w.min() < 0.25:
        return None
    return b @ (v / np.sqrt(w)) @ v.T


def _extrapolate_orbitals(xk: np.ndarray, history: Sequence[np.ndarray], weights: Sequence[float],
                          ncore: int, ncas: int) -> Optional[np.ndarray]:
    """Orbitals for the next step from the last few, in Loewdin-orthogonalised AO bases.

    ``xk`` (nao, nmo) orthonormal orbitals of step k, ``history`` the core and active orbitals
    (nao, ncore + ncas) of steps k-1, k-2, ... (newest first), ``weights`` the extrapolation
    weights of steps k, k-1, ... (``_extrapolation_weights``; (1 + t, -t) is linear). The core
    and active *subspaces* are extrapolated through their projectors, P = sum_j w_j P_{k-j},
    and re-made idempotent (eigenvectors with the largest eigenvalues; the active subspace
    inside the complement of the new core one); each block of ``xk`` is then projected on its
    predicted subspace and orthonormalised. Projectors do not depend on how the orbitals of a
    block are rotated, signed or ordered, so no orbital of one step is matched to one of
    another. Returns None when a block loses rank (then the caller uses ``xk`` unchanged).
    """
    nocc = ncore + ncas
    n = xk.shape[0]
    xs = [xk[:, :nocc]] + [np.asarray(h) for h in history]

    def pred(sl):
        return sum(w * (y[:, sl] @ y[:, sl].T) for w, y in zip(weights, xs))

    def top(p, m):
        if m == 0:
            return np.zeros((n, 0))
        w, v = np.linalg.eigh(0.5 * (p + p.T))
        return v[:, -m:]

    uc = top(pred(slice(0, ncore)), ncore)
    qc = np.eye(n) - uc @ uc.T
    ua = top(qc @ pred(slice(ncore, nocc)) @ qc, ncas)
    pc_new, pa_new = uc @ uc.T, ua @ ua.T
    blocks = [_orthonormal_block(pc_new @ xk[:, :ncore]),
              _orthonormal_block(pa_new @ xk[:, ncore:nocc]),
              _orthonormal_block((np.eye(n) - pc_new - pa_new) @ xk[:, nocc:])]
    if any(b is None for b in blocks):
        return None
    return np.hstack(blocks)


def _smooth_step(d_old: np.ndarray, d_new: np.ndarray) -> bool:
    """Whether step ``d_new`` continues ``d_old`` like consecutive MD steps: d_new ~ t d_old
    with 0 < t <= 1.5 and a perpendicular part below half of |d_new|."""
    nn = float(d_old @ d_old)
    if nn < 1e-16 or not np.any(d_new):
        return False
    t = float(d_new @ d_old) / nn
    return 0.0 < t <= 1.5 and np.linalg.norm(d_new - t * d_old) <= 0.5 * np.linalg.norm(d_new)


def _extrapolation_weights(coords: np.ndarray, history: Optional[np.ndarray],
                           new_coords: np.ndarray, order: int) -> Optional[np.ndarray]:
    """Lagrange weights (of steps k, k-1, ...) predicting step k+1 at ``new_coords``.

    ``coords`` geometry of step k, ``history`` geometries of steps k-1, k-2, ... (newest
    first). The path parameter is the arc length through the geometries; the polynomial uses
    the longest run of recent steps that continue one another smoothly (``_smooth_step``), at
    most ``order`` steps back (1: linear, 3: cubic). None when not even one step back is usable
    (then no extrapolation).
    """
    if history is None or order < 1:
        return None
    pts = [np.asarray(new_coords, float).ravel(), np.asarray(coords, float).ravel()]
    pts += [np.asarray(c, float).ravel() for c in history[:order]]
    steps = [pts[i] - pts[i + 1] for i in range(len(pts) - 1)]  # newest first
    m = 0
    while m + 1 < len(steps) and _smooth_step(steps[m + 1], steps[m]):
        m += 1
    if m == 0:
        return None
    lengths = [float(np.linalg.norm(d)) for d in steps]
    nodes = -np.cumsum([0.0] + lengths[1:m + 1])  # parameters of steps k, k-1, ..., k-m
    w = np.ones(m + 1)
    for j in range(m + 1):
        for i in range(m + 1):
            if i != j:
                w[j] *= (lengths[0] - nodes[i]) / (nodes[j] - nodes[i])
    return w


def _stack(newest: np.ndarray, older: Optional[np.ndarray], n: int) -> Optional[np.ndarray]:
    """History stack (newest first) of at most ``n`` entries: ``newest`` on top of ``older``
    (a stack or None); None when ``n`` is 0."""
    if n < 1:
        return None
    parts = [np.asarray(newest)[None]]
    if older is not None:
        parts.append(np.asarray(older)[:n - 1])
    return np.concatenate(parts)
