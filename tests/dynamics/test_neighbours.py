"""Sparse kernel pairs and the whole-swarm tier (qhd_aimd.dynamics.neighbours).

* the sparse truncated kernel (row blocks and k-d tree) gives the dense estimator's pairs,
  weights, d ln n and d^2 ln n (fields.kernel_matrix + decoherence.kernel_quantum_momentum) to
  round-off, in 1, 2 and 12 dimensions;
* the Gaussian tier recovers -Sigma^-1 (x - mu) of a Gaussian swarm, with Ledoit-Wolf shrinkage
  that vanishes for a well-sampled anisotropic swarm and is strong for T ~ P;
* the global linear fit recovers a linear field exactly.
"""

import numpy as np
import pytest

from qhd_aimd.dynamics import decoherence as dc
from qhd_aimd.dynamics import fields as fl
from qhd_aimd.dynamics import neighbours as nb


@pytest.mark.parametrize("t,p,tree,blocks", [(150, 1, False, True), (150, 1, False, False),
                                             (300, 2, False, True), (300, 2, False, False),
                                             (300, 2, True, False), (48, 12, False, True),
                                             (400, 12, True, False)])
def test_sparse_kernel_equals_dense_kernel(t, p, tree, blocks, monkeypatch):
    if tree:
        monkeypatch.setattr(nb, "TREE_MIN_TRAJECTORIES", 2)
        monkeypatch.setattr(nb, "TREE_MAX_DIM", 12)
    if blocks:
        monkeypatch.setattr(nb, "_BLOCK_ENTRIES", 4096)  # several row blocks (else one)
    rng = np.random.default_rng(t + p)
    c = rng.normal(size=(t, p)) * rng.uniform(0.5, 2.0, p)
    h = fl.bandwidth(c, 1.5 if p > 2 else 1.0)
    a, b, w = nb.kernel_pairs(c, h, 4.0)
    dense = fl.kernel_matrix(c, h, 4.0)
    sparse = np.zeros((t, t))
    sparse[a, b] = w
    np.fill_diagonal(sparse, 1.0)
    assert np.all(a != b) and np.all(np.diff(a) >= 0)
    assert np.all((np.diff(b)[np.diff(a) == 0]) > 0)  # sorted by a then b, no duplicates
    np.testing.assert_allclose(sparse, dense, rtol=0, atol=1e-14)
    assert np.count_nonzero(dense) - t == len(a) > 0
    g1, g2 = nb.kernel_log_density(c, h, a, b, w)
    q, alpha = dc.kernel_quantum_momentum(c, dense, h)
    np.testing.assert_allclose(-0.5 * g1, q, rtol=1e-12, atol=1e-12 * np.abs(q).max())
    np.testing.assert_allclose(-0.5 * g2, alpha, rtol=1e-12, atol=1e-12 * np.abs(alpha).max())
    # with the caller's pair differences: the same numbers
    for got, want in zip(nb.kernel_log_density(c, h, a, b, w, c[b] - c[a]), (g1, g2)):
        np.testing.assert_array_equal(got, want)
    wk = nb.kernel_matrix_with_self(a, b, w, t)  # CSR with self weight 1: the dense kernel
    assert wk.has_sorted_indices and wk.nnz == len(a) + t
    np.testing.assert_array_equal(wk.toarray(), sparse)


def test_gaussian_tier_recovers_the_swarm_gaussian():
    rng = np.random.default_rng(2)
    sd = np.array([0.5, 1.0, 2.0])
    mu = np.array([1.0, -2.0, 0.3])
    c = mu + rng.normal(size=(20000, 3)) * sd
    g1, g2 = nb.gaussian_log_density(c)
    np.testing.assert_allclose(g2, -1.0 / sd**2, rtol=0.03)
    ref = -(c - mu) / sd**2
    assert np.abs(g1 - ref).max() < 0.05 * np.abs(ref).max()


def test_shrinkage_is_weak_for_a_large_swarm_and_strong_for_few_samples():
    rng = np.random.default_rng(3)
    sd = np.linspace(0.5, 2.0, 12)
    many = rng.normal(size=(5000, 12)) * sd
    few = rng.normal(size=(14, 12)) * sd
    for c, lo, hi in ((many, 0.0, 0.02), (few, 0.05, 1.0)):
        s = np.cov(c.T, bias=True)
        lw = nb.shrunk_covariance(c)
        mu = np.trace(s) / 12
        shrink = 1.0 - (lw[0, 1] / s[0, 1])
        assert lo <= shrink <= hi
        np.testing.assert_allclose(lw, (1 - shrink) * s + shrink * mu * np.eye(12), atol=1e-12)
        assert np.linalg.eigvalsh(lw).min() > 0  # invertible even with T ~ P


def test_global_linear_fit_is_exact_for_a_linear_field():
    rng = np.random.default_rng(4)
    c = rng.normal(size=(30, 5))
    slope = rng.normal(size=(5, 2, 2))
    y = 0.7 + np.einsum("tp,pkj->tkj", c, slope)
    np.testing.assert_allclose(nb.global_linear_fit(c, y, ridge=0.0), slope, atol=1e-10)
