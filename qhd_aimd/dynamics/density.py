"""The conditional electronic density operator rho_el: transport, Liouvillian step, invariants.

rho is an (N, N) Hermitian matrix in the adiabatic basis *the solver returned* at the current
geometry. Functions are batched: a leading axis runs over trajectories, shape (T, N, N).

Between two geometries the basis changes by the step overlap S = <u(x_t)|u(x_t+dt)>, made
unitary by the polar decomposition U = S (S^dag S)^{-1/2}; rho is carried as rho <- U^dag rho U.
Within the step the Liouvillian i drho/dt = [H(tau) + X, rho] is integrated in the basis of x_t
(a locally diabatic frame) with H(tau) interpolated linearly between diag(E_t) and
U diag(E_t+dt) U^dag. Every operation is covariant under u_n -> e^{i phi_n} u_n, so no phase
choice is ever made (theory.md, "Gauge invariance in practice").
"""

from __future__ import annotations

import functools
import math

import numpy as np


def unitarize(s: np.ndarray) -> np.ndarray:
    """Closest unitary (polar factor) of overlap matrices s (..., N, N): U = S (S^dag S)^{-1/2}."""
    w, _, vh = np.linalg.svd(s)
    return w @ vh


def transport(rho: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Carry rho (..., N, N) from the old basis to the new one: U^dag rho U."""
    return np.swapaxes(u.conj(), -1, -2) @ rho @ u


def to_frame(rho_b: np.ndarray, u_ab: np.ndarray) -> np.ndarray:
    """Express rho_b, given in basis b, in basis a using U_ab = polar(<u(a)|u(b)>): U rho U^dag."""
    uh = np.swapaxes(u_ab.conj(), -1, -2)
    if rho_b.shape[-1] <= 3:  # many pairs of small matrices: ~2x faster than a stacked matmul
        return _small_matmul(_small_matmul(u_ab, rho_b), uh)
    return u_ab @ rho_b @ uh


def _small_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b for stacks of small (N <= ~3) matrices, as N broadcast products (numpy's stacked
    matmul costs ~0.4 us per 2x2 product)."""
    out = a[..., :, 0, None] * b[..., None, 0, :]
    for j in range(1, a.shape[-1]):
        out += a[..., :, j, None] * b[..., None, j, :]
    return out


def expm_hermitian(h: np.ndarray, dt: float) -> np.ndarray:
    """exp(-i h dt) for Hermitian h (..., N, N), dt in a.u. of time."""
    w, v = np.linalg.eigh(h)
    return (v * np.exp(-1j * w * dt)[..., None, :]) @ np.swapaxes(v.conj(), -1, -2)


def liouville_step(
    rho: np.ndarray,
    energies_old: np.ndarray,
    energies_new: np.ndarray,
    u: np.ndarray,
    dt: float,
    n_substeps: int,
    extra: np.ndarray | None = None,
) -> np.ndarray:
    """Propagate rho over one nuclear step and return it in the *new* adiabatic basis.

    Parameters
    ----------
    rho : (T, N, N) complex, in the old basis
    energies_old, energies_new : (T, N) hartree, adiabatic energies at both ends of the step
    u : (T, N, N) unitarised step overlap <u(old)|u(new)>
    dt : a.u. of time
    n_substeps : exponential mid-point sub-steps
    extra : (T, N, N) Hermitian, hartree; the method's additional generator X - H_el from the
        swarm fields at the start of the step (old basis), held within the step as its
        co-rotating action on the state (``_locked_action``)

    Returns
    -------
    (T, N, N) complex, rho at the end of the step in the new basis.
    """
    h0 = _diag(energies_old)
    h1 = u @ _diag(energies_new) @ np.swapaxes(u.conj(), -1, -2)
    tau = dt / n_substeps
    if extra is None:
        for k in range(n_substeps):
            s = (k + 0.5) / n_substeps
            prop = expm_hermitian((1.0 - s) * h0 + s * h1, tau)
            rho = prop @ rho @ np.swapaxes(prop.conj(), -1, -2)
        return transport(rho, u)
    psi = _state_vector(rho)
    v, r = _locked_action(extra, psi)
    s_k = (np.arange(n_substeps) + 0.5) / n_substeps
    h_k = (1.0 - s_k)[:, None, None, None] * h0 + s_k[:, None, None, None] * h1  # (K, T, N, N)
    # r and psi(0) carried to every sub-step's mid-point, q_k = exp(-i (h0 + h_k)/2 t_k): all
    # sub-steps at once (they do not depend on psi), applied to the two vectors only
    rot = expm_hermitian_apply(0.5 * (h0 + h_k), (s_k * dt)[:, None], np.stack([r, psi], axis=-1))
    # every sub-step's generator at once, a_k = -i tau (h_k + diag(v) + (q_k r)(q_k psi(0))^+),
    # less tr(a_k)/N: exp(a_k) psi up to a scalar factor (removed by the normalisation), the
    # mean energy's phase taken out so that few Taylor terms and no squarings are needed
    n = psi.shape[-1]
    a = rot[..., :, 0, None] * rot[..., None, :, 1].conj()
    a[..., np.arange(n), np.arange(n)] += v
    a = (-1j * tau) * (h_k + a)
    a -= (np.trace(a, axis1=-2, axis2=-1) / n)[..., None, None] * np.eye(n)
    plan = _taylor_plan(a)
    for k in range(n_substeps):
        psi = _expm_apply(a[k], psi, plan=tuple(x[k] for x in plan))
        psi /= np.linalg.norm(psi, axis=-1, keepdims=True)
    rho = psi[..., :, None] * psi.conj()[..., None, :]
    return transport(rho, u)


def expm_hermitian_apply(h: np.ndarray, t: np.ndarray, x: np.ndarray) -> np.ndarray:
    """exp(-i h t) x for Hermitian h (..., N, N) (lower triangle read, as ``eigh``), times t
    (a.u., broadcast against h's leading axes) and vectors x (..., N, M) -> (..., N, M).

    N = 2 in closed form, exp(-i h t) = e^{-i m t} (cos(w t) - i sin(w t)/w (h - m)) with
    m = tr h / 2, w = sqrt(((h_00 - h_11)/2)^2 + |h_10|^2) (no eigendecomposition; ~7x faster
    than a batched 2x2 ``eigh`` applied the same way); else from ``eigh``, without forming the
    matrix."""
    t = np.asarray(t, float)
    if h.shape[-1] == 2:
        a, d, c = h[..., 0, 0].real, h[..., 1, 1].real, h[..., 1, 0]
        m, dl = 0.5 * (a + d), 0.5 * (a - d)
        om = np.sqrt(dl * dl + c.real**2 + c.imag**2)
        cos, sinc = np.cos(om * t), t * np.sinc(om * t / np.pi)  # sin(w t) / w
        ph = np.exp(-1j * m * t)
        e00, e11 = ph * (cos - 1j * sinc * dl), ph * (cos + 1j * sinc * dl)
        e01, e10 = -1j * ph * sinc * c.conj(), -1j * ph * sinc * c
        x0, x1 = x[..., 0, :], x[..., 1, :]
        return np.stack([e00[..., None] * x0 + e01[..., None] * x1,
                         e10[..., None] * x0 + e11[..., None] * x1], axis=-2)
    w, v = np.linalg.eigh(h)
    vh = np.swapaxes(v.conj(), -1, -2)
    return v @ (np.exp(-1j * w * t[..., None])[..., None] * (vh @ x))


def _taylor_plan(a: np.ndarray, order: int = 14, max_squarings: int = 3):
    """``_expm``'s scaling and per-matrix Taylor order (``_scaled_taylor``) for (..., N, N)
    matrices a: (a / 2^s, order (...), 2^s (...)); 2^s is 0 for a matrix that needs more than
    ``max_squarings`` (``_expm_apply`` exponentiates it as a matrix)."""
    a_s, squarings, need = _scaled_taylor(a, order)
    return a_s, need, np.where(squarings > max_squarings, 0, 2**squarings)


def _scaled_taylor(a: np.ndarray, order: int = 14):
    """Per matrix of a (..., N, N): the squarings s (...) with ||a / 2^s||_1 <= 1/2 (NaN/inf
    input: 0), a / 2^s, and the Taylor order (...) whose remainder bound ||a/2^s||^(k+1)/(k+1)!
    is below 1e-17 (at most ``order``; small steps need ~7 terms, not 14). Every choice is the
    matrix's own, so each result is independent of the other matrices of the batch (of how
    trajectories are dealt to ranks)."""
    norm = np.abs(a).sum(axis=-2).max(axis=-1)
    squarings = np.zeros(norm.shape, int)
    if not (norm <= 0.5).all():  # the usual sub-step needs no scaling (NaN goes here)
        with np.errstate(divide="ignore", invalid="ignore"):
            squarings = np.where(norm > 0.5, np.ceil(np.log2(np.maximum(norm, 0.5) / 0.5)), 0)
        squarings = np.where(np.isfinite(squarings), squarings, 0.0).astype(int)
        a = a / (2.0**squarings)[..., None, None]
        norm = np.abs(a).sum(axis=-2).max(axis=-1)
    need = np.minimum(np.searchsorted(_taylor_thresholds(order), norm, side="right") + 1, order)
    return a, squarings, need


def _expm_apply(a: np.ndarray, x: np.ndarray, order: int = 14, plan=None) -> np.ndarray:
    """exp(a) x for (..., N, N) general complex matrices and vectors x (..., N): ``_expm``'s
    scaling and per-matrix Taylor order (``_taylor_plan``, or ``plan`` made by it for a), the
    polynomial applied to the vector (2^s times for s squarings) instead of forming the matrix;
    a matrix that needs more than 3 squarings: ``_expm(a) @ x``. Every choice is made per
    matrix, so each result is independent of the rest of the batch."""
    if not a.size:
        return x.copy()
    a_s, need, reps = _taylor_plan(a, order) if plan is None else plan
    k_all, k_max = int(need.min(initial=0)), int(need.max(initial=0))
    y = x
    for rep in range(int(reps.max(initial=1))):
        out = term = y
        for k in range(1, k_max + 1):
            term = (a_s @ term[..., None])[..., 0] / k
            out = out + (term if k <= k_all else np.where((k <= need)[..., None], term, 0.0))
        y = out if rep == 0 else np.where((rep < reps)[..., None], out, y)
    big = reps == 0
    if big.any():
        y = y.copy()
        y[big] = (_expm(a[big]) @ x[big][..., None])[..., 0]
    return y


def _state_vector(rho: np.ndarray) -> np.ndarray:
    """|psi> with rho = |psi><psi| (principal eigenvector; rho_el is pure, Eq. 66)."""
    _, v = np.linalg.eigh(rho)
    return v[..., :, -1]


def _locked_action(extra: np.ndarray, psi: np.ndarray, floor: float = 1e-3):
    """The action X|psi> of the field generator, split into parts that co-rotate with the state.

    X = ``extra`` is built from rho's spatial derivatives at the start of the step; its
    coherences share the phases of rho's coherences, which turn by (E_n - E_m) dt within the
    step. Holding X fixed while rho turns makes [X, rho] transfer population secularly (for a
    plane-wave coherence, X = a offdiag(rho), everything would be lost). Instead the action on
    each populated component is held as a complex local potential v_n = (X psi)_n / psi_n (a
    phase shift and a growth rate of that component, unchanged by any phase rotation), and the
    remainder r = X psi - v psi (components with |psi_n|^2 below ``floor``) is carried as the
    rank-one source r <psi| rotated with H. Gauge covariant: under psi_n -> e^{i phi_n} psi_n
    v is invariant and r -> P r; the global phase of psi cancels in r <psi|.

    Returns v (..., N) hartree, complex, and r (..., N) hartree.
    """
    y = (extra @ psi[..., None])[..., 0]
    v = y * psi.conj() / (np.abs(psi) ** 2 + floor)
    return v, y - v * psi


@functools.lru_cache(maxsize=4)
def _taylor_thresholds(order: int) -> np.ndarray:
    """x_k = (1e-17 (k + 1)!)^(1/(k+1)), k = 1..order (increasing): a Taylor series of order k
    has the remainder bound ||a||^(k+1)/(k+1)! < 1e-17 for ||a|| < x_k."""
    k = np.arange(1, order + 1)
    return np.exp((np.log(1e-17) + np.array([math.lgamma(j + 2) for j in k])) / (k + 1))


def _expm(a: np.ndarray, order: int = 14) -> np.ndarray:
    """Matrix exponential of (..., N, N) general complex matrices (small N): Taylor series of
    order ``order`` after scaling by 2^-s with ||a / 2^s||_1 <= 1/2, then s squarings
    (truncation error < 1e-16 relative). Batched; scipy.linalg.expm loops in Python over the batch.
    """
    if not a.size:
        return np.broadcast_to(np.eye(a.shape[-1], dtype=complex), a.shape).copy()
    a, squarings, need = _scaled_taylor(a, order)
    out = term = np.broadcast_to(np.eye(a.shape[-1], dtype=complex), a.shape)
    for k in range(1, int(need.max(initial=0)) + 1):
        term = term @ a / k
        out = out + np.where((k <= need)[..., None, None], term, 0.0)
    for k in range(int(squarings.max(initial=0))):
        more = squarings > k
        out = np.where(more[..., None, None], out @ out, out)
    return out


def _diag(e: np.ndarray) -> np.ndarray:
    out = np.zeros(e.shape + (e.shape[-1],), dtype=complex)
    idx = np.arange(e.shape[-1])
    out[..., idx, idx] = e
    return out


def pure_state(n_states: int, state: int) -> np.ndarray:
    """rho = |state><state| in an adiabatic basis of n_states."""
    rho = np.zeros((n_states, n_states), dtype=complex)
    rho[state, state] = 1.0
    return rho


def trace_error(rho: np.ndarray) -> np.ndarray:
    """|Tr rho - 1| per matrix."""
    return np.abs(np.trace(rho, axis1=-2, axis2=-1) - 1.0)


def purity_error(rho: np.ndarray) -> np.ndarray:
    """|Tr rho^2 - 1| per matrix."""
    return np.abs(np.einsum("...ij,...ji->...", rho, rho) - 1.0)


def hermiticity_error(rho: np.ndarray) -> np.ndarray:
    """max |rho - rho^dag| per matrix."""
    return np.abs(rho - np.swapaxes(rho.conj(), -1, -2)).max(axis=(-2, -1))
