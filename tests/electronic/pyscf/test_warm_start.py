"""Warm starts: orbital transport, extrapolation weights and subspace extrapolation (gauge
free), warm vs cold start energies."""

import pickle

import numpy as np
import pytest

pyscf = pytest.importorskip("pyscf")

from lih_casscf import X_LIH  # noqa: E402
from qhd_aimd.electronic.pyscf import CasscfBackend  # noqa: E402

pytestmark = pytest.mark.pyscf


def test_transport_orbitals():
    from qhd_aimd.electronic.pyscf import build_mol
    from qhd_aimd.electronic.pyscf.warm_start import _sym_powers, _transport_orbitals
    m0 = build_mol(["Li", "H"], X_LIH, "6-31g")
    m1 = build_mol(["Li", "H"], X_LIH + 0.05, "6-31g")
    s0, s1 = m0.intor_symmetric("int1e_ovlp"), m1.intor_symmetric("int1e_ovlp")
    w, v = np.linalg.eigh(s0)
    c0 = v / np.sqrt(w)  # orthonormal in s0
    half0, mhalf0 = _sym_powers(s0)
    c1 = _transport_orbitals(half0 @ c0, _sym_powers(s1)[1], s1)
    np.testing.assert_allclose(c1.T @ s1 @ c1, np.eye(len(c0)), atol=1e-10)
    np.testing.assert_allclose(_transport_orbitals(half0 @ c0, mhalf0, s0), c0, atol=1e-10)


def test_extrapolation_weights():
    """Lagrange weights in arc length: exact for polynomials of the order used; the order drops
    to the run of recent steps that continue one another, None without any."""
    from qhd_aimd.electronic.pyscf.warm_start import _extrapolation_weights
    d = np.array([0.03, -0.01, 0.02])
    line = [k * d for k in range(4)]  # steps k-3 ... k, then k+1 = 4 d
    hist = np.array(line[2::-1])      # k-1, k-2, k-3 (newest first)
    assert _extrapolation_weights(line[3], None, 4 * d, 3) is None
    assert _extrapolation_weights(line[3], hist, 4 * d, 0) is None
    np.testing.assert_allclose(_extrapolation_weights(line[3], hist, 4 * d, 1), [2, -1])
    np.testing.assert_allclose(_extrapolation_weights(line[3], hist, 4 * d, 3), [4, -6, 4, -1])
    np.testing.assert_allclose(_extrapolation_weights(line[3], hist, 3.5 * d, 1), [1.5, -0.5])
    # unequal steps: weights reproduce any cubic of the path parameter
    s = np.array([0.0, -1.0, -2.2, -3.1])
    x = s[:, None] * d
    w = _extrapolation_weights(x[0], x[1:], 0.7 * d, 3)
    for p in range(4):
        assert abs(w @ s**p - 0.7**p) < 1e-12
    # a reversed step ends the run; a reversal further back lowers the order
    assert _extrapolation_weights(line[3], hist, 2 * d, 3) is None
    bent = hist.copy()
    bent[2] = line[2] + d
    assert len(_extrapolation_weights(line[3], bent, 4 * d, 3)) == 3


def test_extrapolate_orbitals_gauge_free():
    """The prediction depends on the orbital subspaces only: rotating/reordering/flipping the
    previous step's core and active orbitals changes nothing; output is orthonormal; no motion
    predicts the current subspaces."""
    from qhd_aimd.electronic.pyscf.warm_start import _extrapolate_orbitals
    rng = np.random.default_rng(2)
    n, nc, na = 12, 3, 2
    xk = np.linalg.qr(rng.standard_normal((n, n)))[0]
    k = 0.05 * rng.standard_normal((n, n))
    from scipy.linalg import expm
    xprev = (expm(k - k.T) @ xk)[:, :nc + na]
    out = _extrapolate_orbitals(xk, [xprev], [2.0, -1.0], nc, na)
    np.testing.assert_allclose(out.T @ out, np.eye(n), atol=1e-12)
    g = xprev.copy()
    g[:, :nc] = g[:, :nc] @ np.linalg.qr(rng.standard_normal((nc, nc)))[0]
    g[:, nc:] = g[:, nc:][:, ::-1] * np.array([-1.0, 1.0])
    out2 = _extrapolate_orbitals(xk, [g], [2.0, -1.0], nc, na)
    np.testing.assert_allclose(out2, out, atol=1e-12)
    same = _extrapolate_orbitals(xk, [xk[:, :nc + na]], [2.0, -1.0], nc, na)
    for sl in (slice(0, nc), slice(nc, nc + na)):
        np.testing.assert_allclose(same[:, sl] @ same[:, sl].T, xk[:, sl] @ xk[:, sl].T, atol=1e-12)
    # a real prediction: the extrapolated core subspace differs from the current one
    assert np.abs(out[:, :nc] @ out[:, :nc].T - xk[:, :nc] @ xk[:, :nc].T).max() > 1e-3


def test_warm_start_equals_cold_start(backend, data0):
    x = X_LIH + np.array([0.01, -0.02, 0.03, 0.0, 0.01, -0.05])
    warm = backend.compute(x, reference=data0)
    cold = backend.compute(x)
    np.testing.assert_allclose(warm.energies, cold.energies, atol=1e-8)
    s = backend.overlap(warm, cold).real
    np.testing.assert_allclose(np.abs(s), np.eye(2), atol=1e-6)


def test_warm_start_default_tolerances():
    """Package default tolerances (conv_tol 1e-8, conv_tol_grad 1e-6): warm- and cold-started
    state energies agree to 1e-8 Ha (the Newton solver converges the state energies, which are
    not stationary, not only the SA energy); the warm start runs no SCF."""
    b = CasscfBackend(["Li", "H"], basis="6-31g", ncas=2, nelecas=2, n_states=2)
    x0 = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 3.0])
    d0 = b.compute(x0)
    x = x0 + np.array([0.02, -0.01, 0.0, -0.03, 0.01, 0.06])
    warm = b.compute(x, reference=d0)
    cold = b.compute(x)
    np.testing.assert_allclose(warm.energies, cold.energies, atol=1e-8)
    assert warm.handle.info["path"] == "warm start, Newton"
    assert warm.handle.info["scf_cycles"] == 0 and cold.handle.info["scf_cycles"] > 0
    assert warm.handle.info["orbital_gradient"] < 1e-6


def test_translation_keeps_transported_orbitals_converged(backend, data0):
    """A rigid translation carries converged orbitals exactly (AOs move with the atoms)."""
    d = backend.compute(X_LIH + 0.05, reference=data0)
    assert d.handle.info["newton_iterations"] == 0
    np.testing.assert_allclose(d.energies, data0.energies, atol=1e-10)


def test_extrapolated_warm_start():
    """Along a line, the second warm start extrapolates the orbitals: smaller initial gradient
    than plain transport, same energies as a cold start; restart from the pickled handle (which
    carries the history) reproduces it."""
    kw = dict(basis="6-31g", ncas=2, nelecas=2, n_states=2)
    b, plain = CasscfBackend(["Li", "H"], **kw), CasscfBackend(["Li", "H"], extrapolation_order=0, **kw)
    x0 = np.array([0.0, 0.0, 0.0, 0.0, 0.2, 3.0])
    dx = np.array([0.01, 0.0, -0.02, -0.02, 0.01, 0.06])
    d0 = b.compute(x0)
    d1 = b.compute(x0 + dx, reference=d0)
    assert d1.handle.prev_orbitals is not None and not d1.handle.info["extrapolated"]
    d2 = b.compute(x0 + 2 * dx, reference=d1)
    p2 = plain.compute(x0 + 2 * dx, reference=d1)
    assert d2.handle.info["extrapolated"] and not p2.handle.info["extrapolated"]
    assert d2.handle.info["initial_gradient"] < 0.2 * p2.handle.info["initial_gradient"]
    cold = b.compute(x0 + 2 * dx)
    np.testing.assert_allclose(d2.energies, cold.energies, atol=1e-8)
    d2r = b.compute(x0 + 2 * dx, reference=pickle.loads(pickle.dumps(d1)))
    np.testing.assert_allclose(d2r.energies, d2.energies, atol=1e-12)
    assert d2r.handle.info["extrapolated"]


def test_higher_order_extrapolation():
    """Along a curved path the extrapolation order rises with the history (1, 2, 3) and the
    cubic guess starts closer to the solution than the linear one from the same reference."""
    kw = dict(basis="6-31g", ncas=2, nelecas=2, n_states=2)
    cubic, linear = (CasscfBackend(["Li", "H"], extrapolation_order=n, **kw) for n in (3, 1))
    dx = np.array([0.01, 0.0, -0.02, -0.02, 0.01, 0.06])
    q = np.array([0.0, 0.002, 0.001, 0.0, -0.001, 0.004])

    def x(k):
        return np.array([0.0, 0.0, 0.0, 0.0, 0.2, 3.0]) + k * dx + k**2 * q

    d = cubic.compute(x(0))
    for k in range(1, 4):
        d = cubic.compute(x(k), reference=d)
        assert d.handle.info["extrapolated"] == k - 1
        assert len(d.handle.prev_orbitals) == min(k, 3)
    d4, l4 = cubic.compute(x(4), reference=d), linear.compute(x(4), reference=d)
    assert d4.handle.info["extrapolated"] == 3 and l4.handle.info["extrapolated"] == 1
    assert len(l4.handle.prev_orbitals) == 1
    assert d4.handle.info["initial_gradient"] < 0.3 * l4.handle.info["initial_gradient"]
    np.testing.assert_allclose(d4.energies, l4.energies, atol=1e-8)
