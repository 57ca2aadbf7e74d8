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
