"""Analytic model backends: derivatives vs finite differences, gauge handling of random phases."""

import numpy as np
import pytest

from qhd_aimd.electronic.base import dhdx_from_derivatives, meanfield_force
from qhd_aimd.electronic.models import MODELS, ModelBackend, get_model
from qhd_aimd.errors import ConfigError

POINTS = {"tully_simple": [-0.7, 0.05, 0.4], "tully_dual": [-1.3, 0.2, 2.0],
          "tully_extended": [-1.0, 0.3, 2.5], "berry_2d": [[-0.2, 0.3], [0.05, -1.1], [0.4, 0.8]]}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_diabatic_derivative_matches_finite_difference(name):
    m = get_model(name)
    for x in POINTS[name]:
        x = np.atleast_1d(np.asarray(x, float))
        for k in range(m.dim):
            e = np.zeros(m.dim)
            e[k] = 1e-5
            fd = (m.h(x + e) - m.h(x - e)) / 2e-5
            assert np.abs(fd - m.dh(x)[k]).max() < 1e-8


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("random_phases", [False, True])
def test_ehrenfest_force_is_minus_gradient_of_frozen_state_energy(name, random_phases):
    """-Tr(rho dH/dx) equals -d/dx <Psi|H(x)|Psi> with the electronic state frozen (diabatic frame)."""
    m = get_model(name)
    b = ModelBackend(m, random_phases=random_phases, seed=3)
    rng = np.random.default_rng(0)
    for x in POINTS[name]:
        x = np.atleast_1d(np.asarray(x, float))
        data = b.compute(x)
        c = rng.normal(size=2) + 1j * rng.normal(size=2)
        rho = np.outer(c, c.conj()) / np.vdot(c, c).real
        rho_d = data.handle @ rho @ data.handle.conj().T
        f = meanfield_force(data.dhdx, rho)
        for k in range(m.dim):
            e = np.zeros(m.dim)
            e[k] = 1e-5
            fd = -(np.trace(rho_d @ m.h(x + e)) - np.trace(rho_d @ m.h(x - e))).real / 2e-5
            assert abs(fd - f[k]) < 1e-8


@pytest.mark.parametrize("name", sorted(MODELS))
def test_dhdx_equals_gradients_and_couplings_form(name):
    """dhdx = delta dE + (E_m - E_n) d_nm, with d from finite differences of overlaps in a smooth
    gauge obtained from the model's own diabatic frame (test-only; the dynamics never does this)."""
    m = get_model(name)
    b = ModelBackend(m)
    x = np.atleast_1d(np.asarray(POINTS[name][0], float))
    data = b.compute(x)
    v0 = data.handle
    grads, coup = np.zeros((2, m.dim)), np.zeros((2, 2, m.dim), complex)
    for k in range(m.dim):
        e = np.zeros(m.dim)
        e[k] = 1e-5
        ep, vp = np.linalg.eigh(m.h(x + e))
        em, vm = np.linalg.eigh(m.h(x - e))
        # express +-h eigenvectors in the gauge continuous with v0 (test construction only)
        vp = vp * np.exp(-1j * np.angle(np.diag(v0.conj().T @ vp)))
        vm = vm * np.exp(-1j * np.angle(np.diag(v0.conj().T @ vm)))
        grads[:, k] = (ep - em) / 2e-5
        coup[:, :, k] = v0.conj().T @ (vp - vm) / 2e-5
    dh = dhdx_from_derivatives(data.energies, grads, coup)
    off = ~np.eye(2, dtype=bool)
    assert np.abs(dh[:, off] - data.dhdx[:, off]).max() < 1e-6
    assert np.abs(np.real(np.diagonal(data.dhdx, axis1=1, axis2=2)) - grads.T).max() < 1e-6


@pytest.mark.parametrize("name", sorted(MODELS))
def test_declared_momentum_transfer_is_a_symmetry(name):
    """A coordinate with a declared momentum transfer w enters H only through a linear coupling
    phase: H(x + a e_d) = U H(x) U^dag with U = diag(1, e^{-i a w_1}), |w_1| = w (what makes
    the exact grid's transverse momentum bound strict)."""
    m = get_model(name)
    declared = m.max_momentum_transfer()
    assert len(declared) == m.dim
    for d, w in enumerate(declared):
        if w is None:
            continue
        rates = []
        for x in POINTS[name]:
            x = np.atleast_1d(np.asarray(x, float))
            for a in (0.05, 0.3, -0.6):  # |w a| < pi: the phase is not wrapped
                e = np.zeros(m.dim)
                e[d] = a
                h0, h1 = m.h(x), m.h(x + e)
                assert np.abs(np.diag(h1) - np.diag(h0)).max() < 1e-15
                assert abs(abs(h1[0, 1]) - abs(h0[0, 1])) < 1e-15
                rates.append(np.angle(h1[0, 1] / h0[0, 1]) / a)
        assert np.ptp(rates) < 1e-12  # one linear phase: U is the same at every x
        assert abs(abs(rates[0]) - w) < 1e-12  # the declared bound is the transfer, not more
    if name == "berry_2d":
        assert get_model(name, W=-2.0).max_momentum_transfer() == (None, 2.0)


def test_random_phases_change_states_but_not_overlap_moduli():
    b = ModelBackend(get_model("berry_2d"), random_phases=True, seed=7)
    x1, x2 = np.array([0.1, 0.2]), np.array([0.1, 0.2 + 1e-9])
    a1, a2 = b.compute(x1), b.compute(x2)
    assert np.abs(a1.handle - a2.handle).max() > 1e-3  # really different phases
    s = b.overlap(a1, a2)
    assert np.allclose(np.abs(s), np.eye(2), atol=1e-8)
    # ... yet reproducible: the same geometry gives the same phases (restarts, other ranks)
    assert np.array_equal(b.compute(x1).handle, ModelBackend(b.model, True, seed=7).compute(x1).handle)


def test_unknown_model_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown model"):
        get_model("tully_4")
