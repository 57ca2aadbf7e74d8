"""rho_el transport and Liouvillian step: invariants and gauge covariance."""

import numpy as np
import pytest

from qhd_aimd.dynamics.density import (hermiticity_error, liouville_step, purity_error, pure_state,
                                       to_frame, trace_error, transport, unitarize)


def _random_unitary(rng, n, t=()):
    z = rng.normal(size=t + (n, n)) + 1j * rng.normal(size=t + (n, n))
    q, r = np.linalg.qr(z)
    return q


def _random_pure(rng, n, t):
    c = rng.normal(size=(t, n)) + 1j * rng.normal(size=(t, n))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    return np.einsum("ti,tj->tij", c, c.conj())


def test_unitarize_is_polar_factor_and_gauge_covariant():
    rng = np.random.default_rng(1)
    s = rng.normal(size=(3, 3)) + 1j * rng.normal(size=(3, 3))
    u = unitarize(s)
    assert np.allclose(u.conj().T @ u, np.eye(3), atol=1e-13)
    p = u.conj().T @ s  # positive semidefinite Hermitian
    assert np.allclose(p, p.conj().T, atol=1e-12) and np.linalg.eigvalsh(p).min() > -1e-12
    d1 = np.diag(np.exp(1j * rng.uniform(0, 2 * np.pi, 3)))
    d2 = np.diag(np.exp(1j * rng.uniform(0, 2 * np.pi, 3)))
    assert np.allclose(unitarize(d1.conj().T @ s @ d2), d1.conj().T @ u @ d2, atol=1e-12)


def test_liouville_step_conserves_trace_purity_hermiticity():
    rng = np.random.default_rng(2)
    t, n = 50, 3
    rho = _random_pure(rng, n, t)
    e0, e1 = rng.normal(size=(t, n)), rng.normal(size=(t, n))
    u = _random_unitary(rng, n, (t,))
    extra = rng.normal(size=(t, n, n)) + 1j * rng.normal(size=(t, n, n))
    extra = extra + np.swapaxes(extra.conj(), 1, 2)
    for _ in range(200):
        rho = liouville_step(rho, e0, e1, u, 0.7, 5, extra)
    assert trace_error(rho).max() < 1e-10
    assert purity_error(rho).max() < 1e-10
    assert hermiticity_error(rho).max() < 1e-10


def test_liouville_step_is_gauge_covariant():
    """New-basis phases D: result becomes D^dag rho D; old-basis phases cancel."""
    rng = np.random.default_rng(3)
    t, n = 10, 2
    rho = _random_pure(rng, n, t)
    e0, e1 = rng.normal(size=(t, n)), rng.normal(size=(t, n))
    s = rng.normal(size=(t, n, n)) + 1j * rng.normal(size=(t, n, n))
    ref = liouville_step(rho, e0, e1, unitarize(s), 5.0, 10)
    d_old = np.exp(1j * rng.uniform(0, 2 * np.pi, (t, n)))
    d_new = np.exp(1j * rng.uniform(0, 2 * np.pi, (t, n)))
    rho_g = d_old.conj()[:, :, None] * rho * d_old[:, None, :]  # rho in rephased old basis
    s_g = d_old.conj()[:, :, None] * s * d_new[:, None, :]
    out = liouville_step(rho_g, e0, e1, unitarize(s_g), 5.0, 10)
    assert np.allclose(out, d_new.conj()[:, :, None] * ref * d_new[:, None, :], atol=1e-12)


def test_adiabatic_limit_keeps_population():
    """Identity overlap (no coupling): populations stay, coherence only acquires a phase."""
    rho = np.array([[[0.5, 0.5], [0.5, 0.5]]], complex)
    e = np.array([[0.0, 0.1]])
    out = liouville_step(rho, e, e, np.eye(2)[None], 10.0, 4)
    assert np.allclose(np.diagonal(out[0]).real, [0.5, 0.5])
    assert np.isclose(out[0, 0, 1], 0.5 * np.exp(1j * 0.1 * 10.0))


def test_transport_and_frame_are_inverse():
    rng = np.random.default_rng(4)
    u = _random_unitary(rng, 3)
    rho = _random_pure(rng, 3, 1)[0]
    assert np.allclose(to_frame(transport(rho, u), u), rho, atol=1e-13)
    assert np.allclose(pure_state(3, 1), np.diag([0, 1, 0]))


def _offdiag(rho):
    return rho - np.einsum("...ii->...i", rho)[..., None] * np.eye(rho.shape[-1])


@pytest.mark.parametrize("alpha, tol", [(0.1, 2e-3), (0.3, 1e-2)])
def test_field_generator_locked_to_coherence_transfers_no_population(alpha, tol):
    """A field generator proportional to rho's own coherence, X = alpha * offdiag(rho) (what
    -1/2 xi d^2 rho is for a plane-wave coherence), commutes into the off-diagonal only: the
    exact populations are constant. With the coherence turning by dE*dt = 1.6 rad per step the
    generator's action must co-rotate within the step: holding X fixed empties state 0 (-0.6),
    co-rotating X with the full local generator still loses 0.14 (alpha = 0.1)."""
    rho = np.array([[0.6, np.sqrt(0.24)], [np.sqrt(0.24), 0.4]], complex)[None]
    e = np.array([[0.0, 0.4]])
    u = np.eye(2, dtype=complex)[None]
    for _ in range(100):
        rho = liouville_step(rho, e, e, u, 4.0, 10, alpha * _offdiag(rho))
    assert abs(rho[0, 0, 0].real - 0.6) < tol
    assert purity_error(rho)[0] < 1e-12


@pytest.mark.parametrize("scale", [0.01, 1.0, 30.0])
def test_batched_expm_matches_scipy(scale):
    import scipy.linalg

    from qhd_aimd.dynamics.density import _expm

    rng = np.random.default_rng(3)
    a = scale * (rng.normal(size=(20, 3, 3)) + 1j * rng.normal(size=(20, 3, 3)))
    ref = scipy.linalg.expm(a)
    assert np.abs(_expm(a) - ref).max() < 1e-12 * np.abs(ref).max()


@pytest.mark.parametrize("n", [2, 3])
def test_hermitian_propagator_on_vectors_matches_scipy(n):
    """exp(-i h t) x without forming the matrix (closed form for N = 2, eigh otherwise) equals
    scipy's expm, including degenerate h (omega = 0), t = 0 and large diagonal energies."""
    import scipy.linalg

    from qhd_aimd.dynamics.density import expm_hermitian_apply

    rng = np.random.default_rng(5)
    z = rng.normal(size=(12, n, n)) + 1j * rng.normal(size=(12, n, n))
    h = 0.05 * (z + np.swapaxes(z.conj(), 1, 2))
    h[0] = 0.3 * np.eye(n)  # degenerate
    h[1] += -78.0 * np.eye(n)  # molecular absolute energies
    t = rng.uniform(0.0, 20.0, 12)
    t[2] = 0.0
    x = rng.normal(size=(12, n, 2)) + 1j * rng.normal(size=(12, n, 2))
    ref = np.stack([scipy.linalg.expm(-1j * h[k] * t[k]) @ x[k] for k in range(12)])
    assert np.abs(expm_hermitian_apply(h, t, x) - ref).max() < 1e-12 * np.abs(x).max()


@pytest.mark.parametrize("scale", [0.01, 1.0, 3.0, 30.0])
def test_expm_on_vectors_matches_matrix_expm(scale):
    """_expm_apply (the Taylor polynomial applied to the vector, 2^s times) equals
    _expm(a) @ x; at scale 30 most matrices need more squarings than it repeats and take the
    matrix path (per matrix, whatever the rest of the batch)."""
    from qhd_aimd.dynamics.density import _expm, _expm_apply

    rng = np.random.default_rng(4)
    a = scale * (rng.normal(size=(20, 3, 3)) + 1j * rng.normal(size=(20, 3, 3)))
    a[0] *= 1e-3  # a mixed batch: every matrix its own order and squarings
    x = rng.normal(size=(20, 3)) + 1j * rng.normal(size=(20, 3))
    ref = (_expm(a) @ x[..., None])[..., 0]
    got = _expm_apply(a, x)
    assert np.abs(got - ref).max() < 1e-12 * np.abs(ref).max()
    for k in range(len(a)):  # each matrix's result is independent of the batch (MPI ranks)
        np.testing.assert_array_equal(_expm_apply(a[k:k + 1], x[k:k + 1])[0], got[k])


def _liouville_reference(rho, e_old, e_new, u, dt, n_sub, extra):
    """The field-generator step written out densely, one trajectory and one sub-step at a
    time with scipy's expm (the original formulation of ``liouville_step``)."""
    import scipy.linalg

    out = []
    for t in range(len(rho)):
        h0 = np.diag(e_old[t]).astype(complex)
        h1 = u[t] @ np.diag(e_new[t]) @ u[t].conj().T
        psi0 = psi = np.linalg.eigh(rho[t])[1][:, -1]
        y = extra[t] @ psi
        v = y * psi.conj() / (np.abs(psi) ** 2 + 1e-3)
        r = y - v * psi
        tau = dt / n_sub
        for k in range(n_sub):
            s = (k + 0.5) / n_sub
            h = (1 - s) * h0 + s * h1
            q = scipy.linalg.expm(-1j * 0.5 * (h0 + h) * (k + 0.5) * tau)
            w = np.diag(v) + np.outer(q @ r, (q @ psi0).conj())
            psi = scipy.linalg.expm(-1j * tau * (h + w)) @ psi
            psi /= np.linalg.norm(psi)
        out.append(u[t].conj().T @ np.outer(psi, psi.conj()) @ u[t])
    return np.array(out)


@pytest.mark.parametrize("n, e0, dt", [(2, 0.0, 4.0), (2, -78.0, 20.0), (3, 0.0, 10.0),
                                       (3, -78.0, 10.0)])
def test_liouville_step_with_generator_matches_dense_reference(n, e0, dt):
    rng = np.random.default_rng(6)
    t = 8
    rho = _random_pure(rng, n, t)
    e_old = e0 + 0.1 * rng.normal(size=(t, n))
    e_new = e_old + 0.01 * rng.normal(size=(t, n))
    u = unitarize(np.eye(n) + 0.05 * (rng.normal(size=(t, n, n)) + 1j * rng.normal(size=(t, n, n))))
    x = 0.02 * (rng.normal(size=(t, n, n)) + 1j * rng.normal(size=(t, n, n)))
    x = x + np.swapaxes(x.conj(), 1, 2)
    ref = _liouville_reference(rho, e_old, e_new, u, dt, 20, x)
    # absolute energies of -78 Ha turn the phases by ~1e3 rad per step: both sides lose ~1e-13
    tol = 1e-14 if e0 == 0.0 else 2e-13
    assert np.abs(liouville_step(rho, e_old, e_new, u, dt, 20, x) - ref).max() < tol
