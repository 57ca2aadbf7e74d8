"""Swarm estimators of the fields that coupled-trajectory methods need.

Trajectories are fluid elements of the nuclear density, so spatial derivatives at a trajectory
come from its neighbours (theory.md, "Practical estimators"):

* n(x) and d ln n: Gaussian kernel density over the swarm positions, product kernel with one
  bandwidth per degree of freedom (Silverman's rule times ``bandwidth_factor``, or fixed).
* d_j rho, d_j^2 rho: weighted local quadratic regression (linear + quadratic terms) of
  the neighbours' rho expressed in the trajectory's own basis (common frame given by the caller,
  built from cross-geometry state overlaps: gauge covariant, no phase choice).
* g_kj = Re Tr(rho d_k rho d_j rho) (Fubini-Study metric, gauge invariant), and d_i g_kj by a
  weighted local linear regression of the neighbours' g.

All lengths in bohr. Neighbours farther than ``cutoff`` bandwidths (Mahalanobis distance) get
zero weight and are never mapped into the frame (no overlap is computed for them).
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import sparse


def bandwidth(positions: np.ndarray, factor: float = 1.0, fixed=None) -> np.ndarray:
    """Kernel bandwidth per degree of freedom, bohr, (D,).

    Silverman's rule for a product Gaussian kernel, h_j = sigma_j (4 / ((D + 2) T))^{1/(D+4)},
    times ``factor``; ``fixed`` (scalar or (D,)) overrides it. Degrees of freedom with zero spread
    get the largest bandwidth of the others (or 1 bohr).
    """
    t, d = positions.shape
    if fixed is not None:
        return np.broadcast_to(np.asarray(fixed, float), (d,)).copy()
    sigma = positions.std(axis=0, ddof=1) if t > 1 else np.zeros(d)
    h = factor * sigma * (4.0 / ((d + 2) * max(t, 1))) ** (1.0 / (d + 4))
    floor = h.max() if h.max() > 0 else 1.0
    return np.where(h > 0, h, floor)


def kernel_matrix(positions: np.ndarray, h: np.ndarray, cutoff: float = 4.0) -> np.ndarray:
    """W_ab = exp(-|(x_a - x_b)/h|^2 / 2), zero beyond ``cutoff`` bandwidths; (T, T)."""
    z = (positions[:, None, :] - positions[None, :, :]) / h
    r2 = np.einsum("abj,abj->ab", z, z)
    w = np.exp(-0.5 * r2)
    w[r2 > cutoff**2] = 0.0
    return w


def grad_log_density(positions: np.ndarray, w: np.ndarray, h: np.ndarray) -> np.ndarray:
    """d_j ln n at every trajectory from the kernel density estimate, (T, D), 1/bohr."""
    diff = positions[None, :, :] - positions[:, None, :]  # x_b - x_a, indexed [a, b, j]
    return np.einsum("ab,abj->aj", w, diff) / (h**2 * w.sum(axis=1)[:, None])


def quantum_force(a: int, positions, w, h, dlnn, inv_mass, ridge=1e-10) -> np.ndarray:
    """Quantum force of Eq. 68 at trajectory ``a``, (D,) hartree/bohr (hbar = 1):
    F_q,k = (1/4n) sum_i xi_i d_i(n d_i d_k ln n) = 1/4 sum_i xi_i (d_i^2 d_k ln n
    + d_i ln n d_i d_k ln n), with d_i d_k ln n and d_i^2 d_k ln n from a local quadratic
    regression of the kernel estimate ``dlnn`` (T, D) over a's neighbours.

    For a Gaussian swarm of variance s^2 the kernel density has variance s^2 + h^2, so F_q =
    x / (4 M (s^2 + h^2)^2): the spreading force is biased low by (s^2 / (s^2 + h^2))^2.
    """
    nbrs = np.array([b for b in np.flatnonzero(w[a]) if b != a], int)
    if len(nbrs) < 2:
        return np.zeros(positions.shape[1])
    first, second = local_fit(positions[nbrs] - positions[a], dlnn[nbrs] - dlnn[a], w[a, nbrs],
                              h, True, ridge)  # [i, k]: d_i d_k ln n, d_i^2 d_k ln n
    return 0.25 * np.einsum("i,ik->k", inv_mass, second + dlnn[a][:, None] * first)


def local_fit(dx: np.ndarray, dy: np.ndarray, w: np.ndarray, h: np.ndarray, quadratic: bool,
              ridge: float = 1e-10):
    """Weighted least squares dy ~ sum_j c_j dx_j (+ 1/2 sum_ij q_ij dx_i dx_j), no intercept.

    The quadratic model has the full Hessian when there are at least twice as many neighbours as
    coefficients, else its diagonal only (few neighbours in many dimensions).

    Parameters
    ----------
    dx : (K, D) neighbour displacements, bohr; dy : (K, ...) value differences; w : (K,) weights;
    h : (D,) length scale of the columns; ridge : Tikhonov parameter relative to the mean
    diagonal of the normal matrix.

    Returns
    -------
    first : (D, ...) first derivatives; second : (D, ...) diagonal second derivatives (zeros if
    not ``quadratic``).
    """
    k, d = dx.shape
    z = dx / h
    cols = [z]
    if quadratic:
        cols.append(0.5 * z**2)
        iu = np.triu_indices(d, 1)
        if k >= 2 * (2 * d + len(iu[0])):
            cols.append(z[:, iu[0]] * z[:, iu[1]])
    a = np.concatenate(cols, axis=1)  # (K, P)
    y = dy.reshape(k, -1)
    aw = a * w[:, None]
    normal = aw.T @ a
    scale = max(np.trace(normal) / normal.shape[0], 1e-300)
    normal += ridge * scale * np.eye(normal.shape[0])
    coef = np.linalg.solve(normal, aw.T @ y)
    first = (coef[:d] / h[:, None]).reshape((d,) + dy.shape[1:])
    if quadratic:
        second = (coef[d:2 * d] / (h**2)[:, None]).reshape((d,) + dy.shape[1:])
    else:
        second = np.zeros_like(first)
    return first, second


def coherence_wavevector(energies: np.ndarray, velocity: np.ndarray, v_min: float = 1e-4) -> np.ndarray:
    """Local spatial wavevector of the coherences rho_nm across the swarm, (N, N, D), 1/bohr.

    Along the flow a coherence accumulates the phase -(E_n - E_m) t; trajectories that passed a
    point earlier are further ahead, so at fixed time rho_nm varies as exp(i kappa_nm . dx) with
    kappa_nm = -(E_n - E_m) v / |v|^2 (v the trajectory's velocity, bohr per a.u. of time). Only
    energies and velocities enter: gauge invariant, no phase of any state is looked at. Zero when
    |v| < ``v_min`` (turning points).
    """
    v2 = float(velocity @ velocity)
    if v2 < v_min**2:
        return np.zeros(energies.shape * 2 + velocity.shape)
    gap = energies[:, None] - energies[None, :]
    return -gap[:, :, None] * velocity[None, None, :] / v2


ADIABATIC_GAMMA = 0.25  # |v.d| / |dE| above which a coherence is no longer slaved


def slow_part(rho: np.ndarray, energies: np.ndarray, velocity: np.ndarray, dhdx=None,
              gap_min: float = 1e-8) -> np.ndarray:
    """The part of rho that does not turn with the flow, (N, N): populations plus the coherences
    slaved to the states by adiabatic following (first order),
    s_nm = i v.d_nm (rho_mm - rho_nn) / (E_n - E_m), d_nm = <u_n|d u_m> = dhdx_nm / (E_m - E_n).

    First-order following holds only for an adiabatic passage, gamma = |v.d_nm| / |E_n - E_m|
    << 1: s_nm is weighted by 1 / (1 + (gamma / ``ADIABATIC_GAMMA``)^4), so that through a
    non-adiabatic region (gamma ~ 1, where coherence is created, not slaved) it is left out.
    The rest, rho - slow_part, are the freely turning coherences, ~ exp(-i (E_n - E_m) t) along
    the flow, which ``rho_derivatives`` demodulates. s transforms like rho under any re-phasing
    of the states (gauge covariant). Without couplings (``dhdx`` None, e.g. the one-solve ab
    initio force) only the populations.
    """
    slow = np.diag(np.diagonal(rho)).astype(complex)
    if dhdx is None:
        return slow
    gap = energies[:, None] - energies[None, :]  # E_n - E_m
    ok = np.abs(gap) > gap_min
    safe = np.where(ok, gap, 1.0)
    vd = -np.einsum("j,jnm->nm", velocity, np.asarray(dhdx)) / safe  # v.d_nm
    gamma = np.abs(vd / safe)  # adiabaticity |v.d_nm| / |E_n - E_m|
    weight = 1.0 / (1.0 + (gamma / ADIABATIC_GAMMA) ** 4)
    pop = np.real(np.diagonal(rho))
    return slow + np.where(ok, weight * 1j * vd * (pop[None, :] - pop[:, None]) / safe, 0.0)


def rho_derivatives(a: int, positions, w, h, rho_in_frame, ridge=1e-10, quadratic=True, kappa=None):
    """d_j rho and d_j^2 rho at trajectory ``a`` in its own basis, each (D, N, N).

    ``rho_in_frame(a, nbrs)`` returns the neighbours' rho expressed in a's basis, (K, N, N),
    plus a's own rho, (N, N), and optionally the same two for the slow part of rho
    (``slow_part``); it is called only with neighbours of non-zero weight.

    With ``kappa`` (N, N, D) (see ``coherence_wavevector``) the regression is done on the
    demodulated field f = rho exp(-i kappa . dx), which is smooth even when the coherences
    oscillate on a scale shorter than the bandwidth; then d rho = d f + i kappa rho and
    d^2 rho = d^2 f + 2 i kappa d f - kappa^2 rho at the centre. This holds for freely turning
    coherences; slaved ones (adiabatic following, e.g. across berry_2d's crossing) follow the
    states and do not turn with the flow: demodulating them turns a smooth field into a fast
    oscillation. With the slow parts given, only rho - slow is demodulated and the slow part is
    regressed plainly (rho = slow + free, both fields, exactly).
    """
    nbrs = np.array([b for b in np.flatnonzero(w[a]) if b != a], int)
    rho_nbrs, rho_a, *slow = rho_in_frame(a, nbrs)
    if len(nbrs) == 0:
        z = np.zeros((positions.shape[1],) + rho_a.shape, dtype=complex)
        return z, z.copy()
    dx = positions[nbrs] - positions[a]
    if kappa is None:
        return local_fit(dx, rho_nbrs - rho_a, w[a, nbrs], h, quadratic, ridge)
    p1 = p2 = 0.0
    if slow:
        slow_nbrs, slow_a = slow
        p1, p2 = local_fit(dx, slow_nbrs - slow_a, w[a, nbrs], h, quadratic, ridge)
        rho_nbrs, rho_a = rho_nbrs - slow_nbrs, rho_a - slow_a
    phase = np.exp(-1j * np.einsum("nmj,kj->knm", kappa, dx))  # (K, N, N)
    d1, d2 = local_fit(dx, rho_nbrs * phase - rho_a, w[a, nbrs], h, quadratic, ridge)
    kap = np.moveaxis(kappa, 2, 0)  # (D, N, N)
    return p1 + d1 + 1j * kap * rho_a, p2 + d2 + 2j * kap * d1 - kap**2 * rho_a


def metric(rho: np.ndarray, drho: np.ndarray) -> np.ndarray:
    """g_kj = Re Tr(rho d_k rho d_j rho), (D, D), 1/bohr^2 (quantum geometric tensor, real part)."""
    return np.real(np.einsum("ab,kbc,jca->kj", rho, drho, drho))


def berry_curvature(rho: np.ndarray, drho: np.ndarray) -> np.ndarray:
    """B_kj = -2 Im Tr(rho d_k rho d_j rho), (D, D) (Eq. 73, hbar = 1)."""
    return -2.0 * np.imag(np.einsum("ab,kbc,jca->kj", rho, drho, drho))


def metric_gradient(a: int, positions, w, h, g_all, ridge=1e-10) -> np.ndarray:
    """d_i g_kj at trajectory ``a`` by local linear regression of the swarm's g, (D, D, D) [i,k,j]."""
    nbrs = [b for b in np.flatnonzero(w[a]) if b != a]
    d = positions.shape[1]
    if not nbrs:
        return np.zeros((d, d, d))
    dx = positions[nbrs] - positions[a]
    first, _ = local_fit(dx, g_all[nbrs] - g_all[a], w[a, nbrs], h, quadratic=False, ridge=ridge)
    return first


# --------------------------------------------------------------------------------------------
# Batched estimators (the integrator's hot path): every centre of the local swarm at once, with
# dense (L, T) neighbour arrays (weight 0 = not a neighbour). Each centre's numbers are those of
# the per-trajectory functions above (same model, same normal equations; round-off apart).


def fit_kinds(n_neighbours: np.ndarray, dim: int, quadratic: bool) -> np.ndarray:
    """Regression model per centre, (L,) int: 0 linear, 1 linear + diagonal quadratic,
    2 linear + full quadratic (``local_fit``'s rule: the full Hessian when there are at least
    twice as many neighbours as its coefficients)."""
    if not quadratic:
        return np.zeros(len(n_neighbours), int)
    n_full = 2 * (2 * dim + dim * (dim - 1) // 2)
    return np.where(n_neighbours >= n_full, 2, 1)


def _segment_sum_columns(xt: np.ndarray, centre: np.ndarray, n_centres: int) -> np.ndarray:
    """Sums of the pair columns xt (C, K) per centre index (K,) sorted ascending ->
    (n_centres, C), each centre's pairs summed in one contiguous ``reduceat`` segment
    (independent of the other centres)."""
    out = np.zeros((n_centres, xt.shape[0]), xt.dtype)
    if len(centre) == 0:
        return out
    starts = np.flatnonzero(np.r_[True, centre[1:] != centre[:-1]])
    out[centre[starts]] = np.add.reduceat(xt, starts, axis=1).T
    return out


@functools.lru_cache(maxsize=64)
def _triu(n: int, k: int):
    """np.triu_indices(n, k), cached (it costs more than a small fit)."""
    return np.triu_indices(n, k)


def local_fit_pairs(centre: np.ndarray, n_centres: int, dx: np.ndarray, dy: np.ndarray,
                    w: np.ndarray, h: np.ndarray, quadratic: bool, ridge: float = 1e-10):
    """``local_fit`` for many centres at once, from their (centre, neighbour) pairs.

    Parameters
    ----------
    centre : (K,) centre index of every pair, sorted ascending; n_centres : L
    dx : (K, P) neighbour displacement from its centre; dy : (K, ...) value differences;
    w : (K,) weights (> 0); h : (P,) column scales; ridge : Tikhonov parameter relative to the
    mean diagonal of each centre's normal matrix.

    Returns
    -------
    first, second : (L, P, ...) first and diagonal second derivatives (second zero when not
    ``quadratic``; both zero for a centre without pairs); a centre whose normal equations
    cannot be solved gets NaN (the caller's fallback turns it into zero fields).
    """
    k, p = dx.shape
    # pair arrays laid out (columns, pairs): every product and segment sum runs over contiguous
    # memory (a (K, C) layout made the sums over each centre's pairs strided, ~9x slower)
    zt = np.divide(dx.T, h[:, None], out=np.empty((p, k)))  # (P, K) C-contiguous
    y = dy.reshape(k, int(np.prod(dy.shape[1:], dtype=int)))
    dtype = np.result_type(y.dtype, float)
    first = np.zeros((n_centres, p, y.shape[1]), dtype)
    second = np.zeros_like(first)
    count = np.bincount(centre, minlength=n_centres)
    kinds = fit_kinds(count, p, quadratic)
    iu = _triu(p, 1)
    for kind in np.unique(kinds[count > 0]):
        sel = np.flatnonzero((kinds == kind) & (count > 0))
        rows = np.flatnonzero(kinds[centre] == kind) if len(sel) < np.count_nonzero(count) else slice(None)
        zs = zt[:, rows]
        cols = [zs]
        if kind >= 1:
            cols.append(0.5 * zs**2)
        if kind == 2:
            cols.append(zs[iu[0]] * zs[iu[1]])
        a = np.concatenate(cols, axis=0) if len(cols) > 1 else zs  # (Q, Ks)
        aw = a * w[rows]
        cs, q = centre[rows], a.shape[0]
        iu_q = _triu(q, 0)
        # normal matrix (upper triangle): segmented sums of the pair products; right-hand side
        # sum_k aw_ik y_k per centre as a sparse (centre x pair) product, no (K, Q M) array
        sums = _segment_sum_columns(aw[iu_q[0]] * a[iu_q[1]], cs, n_centres)[sel]
        normal = np.empty((len(sel), q, q))
        normal[:, iu_q[0], iu_q[1]] = sums
        normal[:, iu_q[1], iu_q[0]] = sums
        indptr = np.zeros(n_centres + 1, int)
        per_centre = count if isinstance(rows, slice) else np.bincount(cs, minlength=n_centres)
        np.cumsum(per_centre, out=indptr[1:])
        yr = y[rows]
        mat = sparse.csr_matrix((aw[0], np.arange(len(cs)), indptr), shape=(n_centres, len(cs)))
        rhs = np.empty((n_centres, q, yr.shape[1]), np.result_type(yr.dtype, float))
        for i in range(q):  # the same sparsity for every column of aw
            mat.data = aw[i]
            rhs[:, i] = mat @ yr
        rhs = rhs[sel]  # (L, Q, M)
        scale = np.maximum(np.trace(normal, axis1=1, axis2=2) / q, 1e-300)
        normal = normal + ridge * scale[:, None, None] * np.eye(q)
        try:
            coef = np.linalg.solve(normal, rhs)
        except np.linalg.LinAlgError:  # one singular centre: solve them one by one
            coef = np.full(rhs.shape, np.nan, dtype=np.result_type(rhs.dtype, float))
            for j in range(len(sel)):
                try:
                    coef[j] = np.linalg.solve(normal[j], rhs[j])
                except np.linalg.LinAlgError:
                    pass
        first[sel] = coef[:, :p] / h[:, None]
        if kind >= 1:
            second[sel] = coef[:, p:2 * p] / (h**2)[:, None]
    shape = (n_centres, p) + dy.shape[1:]
    return first.reshape(shape), second.reshape(shape)


def coherence_wavevectors(energies: np.ndarray, velocity: np.ndarray, v_min: float = 1e-4) -> np.ndarray:
    """``coherence_wavevector`` for L trajectories: energies (L, N), velocity (L, P) in the
    coordinates of the fields -> (L, N, N, P)."""
    v2 = np.einsum("lj,lj->l", velocity, velocity)
    gap = energies[:, :, None] - energies[:, None, :]
    safe = np.where(v2 < v_min**2, 1.0, v2)
    k = -gap[..., None] * velocity[:, None, None, :] / safe[:, None, None, None]
    k[v2 < v_min**2] = 0.0
    return k


def slow_parts(rho: np.ndarray, energies: np.ndarray, velocity: np.ndarray, dhdx=None,
               gap_min: float = 1e-8) -> np.ndarray:
    """``slow_part`` for L trajectories: rho (L, N, N), energies (L, N), velocity (L, D),
    dhdx (L, D, N, N) or None -> (L, N, N)."""
    n = rho.shape[-1]
    slow = np.zeros(rho.shape, complex)
    idx = np.arange(n)
    slow[:, idx, idx] = np.diagonal(rho, axis1=1, axis2=2)
    if dhdx is None:
        return slow
    gap = energies[:, :, None] - energies[:, None, :]
    ok = np.abs(gap) > gap_min
    safe = np.where(ok, gap, 1.0)
    vd = -np.einsum("lj,ljnm->lnm", velocity, np.asarray(dhdx)) / safe
    gamma = np.abs(vd / safe)
    weight = 1.0 / (1.0 + (gamma / ADIABATIC_GAMMA) ** 4)
    pop = np.real(np.diagonal(rho, axis1=1, axis2=2))
    return slow + np.where(ok, weight * 1j * vd * (pop[:, None, :] - pop[:, :, None]) / safe, 0.0)


def rho_derivatives_pairs(centre, n_centres, dx, w, h, rho_nbrs, rho_c, slow_nbrs=None, slow_c=None,
                          kappa=None, quadratic=True, ridge=1e-10):
    """``rho_derivatives`` for L centres: d_p rho and d_p^2 rho in each centre's basis,
    each (L, P, N, N), from the (centre, neighbour) pairs.

    centre (K,) sorted centre index of each pair; dx (K, P) neighbour displacements; w (K,)
    weights; rho_nbrs (K, N, N) the neighbour's rho in its centre's basis; rho_c (L, N, N);
    slow_nbrs, slow_c the same for ``slow_part`` (or None); kappa (L, N, N, P) co-moving
    wavevectors (``coherence_wavevectors``) or None (plain fit).
    """
    fit = lambda dy: local_fit_pairs(centre, n_centres, dx, dy, w, h, quadratic, ridge)  # noqa: E731
    if kappa is None:
        return fit(rho_nbrs - rho_c[centre])
    phase = _coherence_phases(np.einsum("knmj,kj->knm", kappa[centre], dx))
    kap = np.moveaxis(kappa, 3, 1)  # (L, P, N, N)
    if slow_nbrs is None:
        d1, d2 = fit(rho_nbrs * phase - rho_c[centre])
        p1 = p2 = 0.0
        rc = rho_c[:, None]
    else:  # one fit for the slow part (plain) and the free part (demodulated): same normal matrix
        free_c = rho_c - slow_c
        both = fit(np.stack([slow_nbrs - slow_c[centre],
                             (rho_nbrs - slow_nbrs) * phase - free_c[centre]], axis=1))
        (p1, d1), (p2, d2) = (np.moveaxis(x, 2, 0) for x in both)
        rc = free_c[:, None]
    return p1 + d1 + 1j * kap * rc, p2 + d2 + 2j * kap * d1 - kap**2 * rc


def _coherence_phases(x: np.ndarray) -> np.ndarray:
    """exp(-i x) for (K, N, N) real x antisymmetric in (n, m) (kappa_nm . dx): the upper
    triangle exponentiated, the lower its conjugate, ones on the diagonal (N(N-1)/2 complex
    exponentials per pair instead of N^2; the same numbers, x_mn = -x_nm exactly)."""
    n = x.shape[-1]
    iu = _triu(n, 1)
    out = np.ones(x.shape, complex)
    up = np.exp(-1j * x[:, iu[0], iu[1]])
    out[:, iu[0], iu[1]] = up
    out[:, iu[1], iu[0]] = up.conj()
    return out


def metrics(rho: np.ndarray, drho: np.ndarray) -> np.ndarray:
    """``metric`` for L trajectories: rho (L, N, N), drho (L, D, N, N) -> g (L, D, D)."""
    return np.real(np.einsum("lab,lkbc,ljca->lkj", rho, drho, drho))


def grad_log_density_at(coords: np.ndarray, w_rows: np.ndarray, h: np.ndarray,
                        centres: np.ndarray) -> np.ndarray:
    """``grad_log_density`` at the centres only: w_rows (L, T) kernel rows (self included),
    centres (L,) indices into coords (T, P) -> (L, P)."""
    diff = coords[None, :, :] - coords[centres][:, None, :]
    return np.einsum("lt,ltj->lj", w_rows, diff) / (h**2 * w_rows.sum(axis=1)[:, None])


def quantum_force_pairs(centre, n_centres, dx, w, h, dlnn_c, dlnn_nbrs, inv_metric, ridge=1e-10):
    """``quantum_force`` for L centres in the fields' coordinates, from pairs: centre (K,),
    dx (K, P), w (K,), dlnn_c (L, P) at the centres, dlnn_nbrs (K, P) at the neighbours,
    inv_metric (P,) -> (L, P). Centres with fewer than 2 neighbours get zero."""
    first, second = local_fit_pairs(centre, n_centres, dx, dlnn_nbrs - dlnn_c[centre], w, h, True, ridge)
    f = 0.25 * np.einsum("i,lik->lk", inv_metric, second + dlnn_c[:, :, None] * first)
    f[np.bincount(centre, minlength=n_centres) < 2] = 0.0
    return f
