"""Sparse kernel neighbours and the whole-swarm (global) tier of the swarm density estimators.

Local tier (``kernel_pairs``, ``kernel_log_density``): the Gaussian product kernel of ``fields``
truncated at ``cutoff`` bandwidths, as a sparse list of the K neighbour pairs (k-d tree,
``scipy.spatial.cKDTree``, for large swarms in few dimensions) in the coordinates scaled by the
bandwidths; every later sum runs over the K pairs, not over a dense (T, T) kernel matrix. The numbers are those of the dense estimator
(``fields.kernel_matrix`` + ``decoherence.kernel_quantum_momentum``), which zeroes the same
pairs; only the summation order differs (round-off).

Global tier (``gaussian_log_density``, ``global_linear_fit``): when a trajectory has fewer
kernel neighbours than the estimation subspace has dimensions (a polyatomic swarm of a few dozen
trajectories in 12 internal dimensions has essentially none within 4 bandwidths), the swarm
density is modelled as one Gaussian, n ~ exp(-1/2 (c - mu)^T Sigma^-1 (c - mu)), so
d ln n = -Sigma^-1 (c - mu) and d^2 ln n = -diag(Sigma^-1), with Sigma the sample covariance
shrunk towards its mean eigenvalue (Ledoit & Wolf, J. Multivar. Anal. 88, 365 (2004));
smooth fields such as the metric g get their gradient from a ridge linear fit over the whole
swarm. Both are well defined for any T >= 2 and P >= 1 (docs/physics.md, "Swarm estimators
on molecules").

Shapes: T trajectories, P coordinates (the fields' coordinates c of ``coordinates.swarm_frame``).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree


#: above this many trajectories (and in at most ``TREE_MAX_DIM`` dimensions) the pairs come
#: from a k-d tree; below, from row blocks of the distance matrix (faster for small swarms)
TREE_MIN_TRAJECTORIES = 2000
TREE_MAX_DIM = 6
_BLOCK_ENTRIES = 1 << 21


def kernel_pairs(coords: np.ndarray, h: np.ndarray, cutoff: float):
    """Ordered neighbour pairs (a, b), a != b, with |(c_a - c_b) / h| <= cutoff, and their
    kernel weights W_ab = exp(-|(c_a - c_b)/h|^2 / 2).

    coords (T, P); h (P,) bandwidths. Returns (a, b, w), each (K,), sorted by a then b (both
    orders of every pair are listed). Memory O(K) (never a (T, T) array): large swarms in few
    dimensions use ``scipy.spatial.cKDTree``, others row blocks of at most 2^21 distances.
    """
    t, p = coords.shape
    if t < 2 or p == 0:
        e = np.zeros(0, int)
        return e, e.copy(), np.zeros(0)
    z = coords / h
    c2 = cutoff**2
    if t >= TREE_MIN_TRAJECTORIES and p <= TREE_MAX_DIM:
        pairs = cKDTree(z).query_pairs(cutoff * (1 + 1e-12), output_type="ndarray")
        a = np.concatenate([pairs[:, 0], pairs[:, 1]]).astype(int)
        b = np.concatenate([pairs[:, 1], pairs[:, 0]]).astype(int)
        order = np.lexsort((b, a))
        a, b = a[order], b[order]
        d = z[a] - z[b]
        r2 = np.einsum("kj,kj->k", d, d)
    else:  # row blocks of the squared distances; pairs in row-major order (a, then b)
        rows = max(1, _BLOCK_ENTRIES // t)
        parts_a, parts_b, parts_r = [], [], []
        for lo in range(0, t, rows):
            nr = min(rows, t - lo)
            r2b = None
            for j in range(p):
                d = z[lo:lo + nr, j, None] - z[None, :, j]
                d *= d
                if r2b is None:
                    r2b = d
                else:
                    r2b += d
            r2b[np.arange(nr), lo + np.arange(nr)] = np.inf  # no self pairs
            flat = np.flatnonzero(r2b <= c2)
            ia, ib = np.divmod(flat, t)
            parts_a.append(ia + lo)
            parts_b.append(ib)
            parts_r.append(r2b.ravel()[flat])
        if len(parts_a) == 1:  # one block: already the pairs within the cutoff
            return parts_a[0], parts_b[0], np.exp(-0.5 * parts_r[0])
        a, b, r2 = (np.concatenate(x) for x in (parts_a, parts_b, parts_r))
        return a, b, np.exp(-0.5 * r2)
    keep = r2 <= c2  # the dense estimator's rule (the tree's own test rounds differently)
    return a[keep], b[keep], np.exp(-0.5 * r2[keep])


def kernel_log_density(coords: np.ndarray, h: np.ndarray, a: np.ndarray, b: np.ndarray,
                       w: np.ndarray, diff=None):
    """d ln n and its diagonal second derivative at every trajectory from the truncated kernel
    density (self weight 1 plus the pairs ``kernel_pairs``), each (T, P):

    d ln n_a = sum_b W_ab (c_b - c_a) / h^2 / sum_b W_ab,
    d^2 ln n_a = sum_b W_ab ((c_b - c_a)^2 / h^4 - 1 / h^2) / sum_b W_ab - (d ln n_a)^2.

    ``diff`` (K, P): c_b - c_a of the pairs if the caller has them.
    """
    t, p = coords.shape
    if diff is None:
        ct = coords.T
        diff = ct[:, b] - ct[:, a]  # (P, K): columns contiguous over the pairs
    else:
        diff = diff.T
    wd = w * diff
    sums = np.zeros((t, 1 + 2 * p))
    if len(a):
        starts = np.flatnonzero(np.r_[True, a[1:] != a[:-1]])
        cols = np.concatenate([w[None], wd, wd * diff])  # (1 + 2P, K)
        sums[a[starts]] = np.add.reduceat(cols, starts, axis=1).T
    norm = 1.0 + sums[:, 0]
    s1, s2 = sums[:, 1:1 + p], sums[:, 1 + p:]
    g = s1 / (h**2 * norm[:, None])
    g2 = s2 / (h**4 * norm[:, None]) - 1.0 / h**2 - g**2
    return g, g2


def kernel_matrix_with_self(a: np.ndarray, b: np.ndarray, w: np.ndarray, t: int):
    """The truncated kernel with self weight 1 as a (T, T) CSR matrix, from the pairs of
    ``kernel_pairs`` (sorted by a then b): the matrix of
    ``csr_matrix((w, (a, b))) + identity``, built directly (no COO sort, no sparse sum)."""
    per_row = np.bincount(a, minlength=t)
    indptr = np.zeros(t + 1, int)
    np.cumsum(per_row + 1, out=indptr[1:])
    # the self entry of row r goes after that row's pairs with b < r
    before = np.bincount(a, weights=(b < a), minlength=t).astype(int)
    shift = np.arange(len(a)) + a + (b > a)  # each pair moves right by the self entries before it
    data = np.empty(len(a) + t)
    cols = np.empty(len(a) + t, dtype=np.int32 if t < 2**31 - 1 else np.int64)
    data[shift], cols[shift] = w, b
    diag = indptr[:-1] + before
    data[diag], cols[diag] = 1.0, np.arange(t)
    return sparse.csr_matrix((data, cols, indptr), shape=(t, t))


def shrunk_covariance(coords: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf covariance of the rows of ``coords`` (T, P): (1 - s) S + s mu I with S the
    sample covariance (1/T normalisation, as in Ledoit & Wolf 2004), mu = tr S / P and the
    estimated optimal intensity s in [0, 1]; (P, P)."""
    t, p = coords.shape
    x = coords - coords.mean(axis=0)
    s = x.T @ x / t
    mu = np.trace(s) / p
    target = s - mu * np.eye(p)
    d2 = np.sum(target**2)
    if d2 <= 0.0:
        return s
    outer = np.einsum("ti,tj->tij", x, x) - s
    b2 = min(np.sum(outer**2) / t**2, d2)
    shrink = b2 / d2
    return (1.0 - shrink) * s + shrink * mu * np.eye(p)


def gaussian_log_density(coords: np.ndarray):
    """Whole-swarm Gaussian density: d ln n = -Sigma^-1 (c - mu), (T, P), and
    d^2 ln n = -diag(Sigma^-1), (P,), with the shrunk covariance ``shrunk_covariance``.
    Needs T >= 2 and a swarm with spread (P >= 1 coordinates of ``swarm_frame``)."""
    cov = shrunk_covariance(coords)
    inv = np.linalg.inv(cov)
    x = coords - coords.mean(axis=0)
    return -x @ inv, -np.diagonal(inv).copy()


def global_linear_fit(coords: np.ndarray, y: np.ndarray, ridge: float = 1e-10) -> np.ndarray:
    """Gradient of ``y`` (T, ...) from one ridge linear fit y ~ y0 + c . B over the whole
    swarm, (P, ...); ridge relative to the mean diagonal of the normal matrix."""
    t, p = coords.shape
    x = coords - coords.mean(axis=0)
    yy = y.reshape(t, -1)
    yy = yy - yy.mean(axis=0)
    normal = x.T @ x
    normal = normal + ridge * max(np.trace(normal) / max(p, 1), 1e-300) * np.eye(p)
    return np.linalg.solve(normal, x.T @ yy).reshape((p,) + y.shape[1:])
