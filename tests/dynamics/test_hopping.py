"""Surface-hopping physics as pure functions: gauge invariance of the hop probabilities and of the
rescaling direction, energy conservation at a hop, EDC invariants, Berry force, random stream."""

import numpy as np
import pytest

from qhd_aimd.dynamics import hopping as hp
from qhd_aimd.dynamics.density import purity_error, trace_error, unitarize


def _random_pure(rng, n, t=1):
    psi = rng.normal(size=(t, n)) + 1j * rng.normal(size=(t, n))
    psi /= np.linalg.norm(psi, axis=1, keepdims=True)
    return psi[:, :, None] * psi.conj()[:, None, :]


def _random_step(rng, n=3, t=4):
    """rho at t, the step's T (from a random overlap and energies), the overlap and energies."""
    rho = _random_pure(rng, n, t)
    s = np.eye(n) + 0.3 * (rng.normal(size=(t, n, n)) + 1j * rng.normal(size=(t, n, n)))
    u = unitarize(s)
    e0 = np.sort(rng.normal(size=(t, n)), axis=1) * 0.05
    e1 = e0 + 0.01 * rng.normal(size=(t, n))
    return rho, u, e0, e1


def test_probabilities_are_the_flux_out_of_the_active_state():
    rng = np.random.default_rng(0)
    rho, u, e0, e1 = _random_step(rng)
    t = hp.step_propagator(e0, e1, u, 10.0, 8)
    assert np.allclose(t @ np.swapaxes(t.conj(), -1, -2), np.eye(3))  # unitary
    for a in range(3):
        active = np.full(4, a)
        p = hp.hop_probabilities(rho, t, active)
        new = t @ rho @ np.swapaxes(t.conj(), -1, -2)
        loss = 1.0 - np.real(new[:, a, a]) / np.real(rho[:, a, a])
        raw = p.sum(axis=1)
        # sum over targets = relative population loss of a (when some target flux is negative
        # it is clipped, so the sum can only be larger)
        assert np.all(raw >= np.clip(loss, 0, None) - 1e-12)
        assert np.all(p[:, a] == 0) and np.all(p >= 0)
        assert np.all(raw[loss <= 0] == 0)


def test_two_state_probability_is_fewest_switches():
    """Two states: P_{a->m} = max(0, 1 - rho'_aa / rho_aa) exactly."""
    rng = np.random.default_rng(1)
    rho, u, e0, e1 = _random_step(rng, n=2, t=50)
    t = hp.step_propagator(e0, e1, u, 20.0, 4)
    new = t @ rho @ np.swapaxes(t.conj(), -1, -2)
    for a in (0, 1):
        p = hp.hop_probabilities(rho, t, np.full(50, a))
        expect = np.clip(1.0 - np.real(new[:, a, a]) / np.real(rho[:, a, a]), 0, None)
        assert np.allclose(p[:, 1 - a], expect, atol=1e-12)


@pytest.mark.parametrize("kind", ["sign", "complex"])
def test_probabilities_gauge_invariant(kind):
    """Phases of the states at both ends of the step: S -> D0^* S D1, rho -> D0^* rho D0, the
    energies unchanged; the probabilities do not move (1e-12)."""
    rng = np.random.default_rng(2)
    rho, u, e0, e1 = _random_step(rng)

    def phases():
        if kind == "sign":
            return rng.choice([-1.0, 1.0], size=(4, 3))
        return np.exp(2j * np.pi * rng.random((4, 3)))

    d0, d1 = phases(), phases()
    u2 = d0.conj()[:, :, None] * u * d1[:, None, :]
    rho2 = d0.conj()[:, :, None] * rho * d0[:, None, :]
    t1 = hp.step_propagator(e0, e1, u, 10.0, 8)
    t2 = hp.step_propagator(e0, e1, u2, 10.0, 8)
    for a in range(3):
        act = np.full(4, a)
        assert np.allclose(hp.hop_probabilities(rho, t1, act), hp.hop_probabilities(rho2, t2, act),
                           atol=1e-12)


def test_qc_correction_is_population_rate_of_x():
    """-(2/p_a) Im(X_am rho_ma) summed over m is -(1/p_a) d rho_aa/dt of i drho/dt = [X, rho]; and
    it is gauge invariant."""
    rng = np.random.default_rng(3)
    rho = _random_pure(rng, 3, 2)
    x = rng.normal(size=(2, 3, 3)) + 1j * rng.normal(size=(2, 3, 3))
    x = 0.5 * (x + np.swapaxes(x.conj(), -1, -2))
    dt = 1e-3
    drho = -1j * (x @ rho - rho @ x) * dt
    d = np.exp(1j * rng.random((2, 3)) * 6.0)
    for a in range(3):
        act = np.full(2, a)
        c = hp.qc_correction(rho, x, act, dt)
        assert np.allclose(c.sum(axis=1), -np.real(drho[:, a, a]) / np.real(rho[:, a, a]))
        c2 = hp.qc_correction(d.conj()[:, :, None] * rho * d[:, None, :],
                              d.conj()[:, :, None] * x * d[:, None, :], act, dt)
        assert np.allclose(c, c2)


def test_real_direction_is_phase_independent():
    rng = np.random.default_rng(4)
    h = rng.normal(size=5) + 1j * rng.normal(size=5)
    d1 = hp.real_direction(h)
    for chi in rng.random(4) * 2 * np.pi:
        d2 = hp.real_direction(np.exp(1j * chi) * h)
        assert abs(abs(d1 @ d2) - d1 @ d1) < 1e-12 * (d1 @ d1)
    real = rng.normal(size=5)
    assert np.allclose(hp.real_direction(real), real)
    assert np.allclose(abs(hp.real_direction(-1j * real) @ real), real @ real)


@pytest.mark.parametrize("de", [0.01, -0.02])
def test_rescale_conserves_energy(de):
    rng = np.random.default_rng(5)
    masses = np.array([2000.0, 1000.0, 3000.0])
    p, h = rng.normal(size=3) * 20, rng.normal(size=3)
    new, ok = hp.rescale_momentum(p, masses, h, de)
    assert ok
    ke = lambda q: 0.5 * np.sum(q * q / masses)  # noqa: E731
    assert abs(ke(new) + de - ke(p)) < 1e-14
    # only the component along h changed, by the smaller root
    dp = new - p
    assert np.allclose(np.cross(dp, h), 0, atol=1e-12)
    assert np.allclose(hp.rescale_momentum(p, masses, -h, de)[0], new)  # sign of h irrelevant


def test_frustrated_keep_and_reverse():
    masses = np.array([2000.0, 2000.0])
    p, h = np.array([2.0, 1.0]), np.array([1.0, 0.0])
    kept, ok = hp.rescale_momentum(p, masses, h, 0.1, "keep")
    assert not ok and np.array_equal(kept, p)
    rev, ok = hp.rescale_momentum(p, masses, h, 0.1, "reverse")
    assert not ok and np.allclose(rev, [-2.0, 1.0])


def test_edc_keeps_purity_and_decoheres_toward_active():
    rng = np.random.default_rng(6)
    rho = _random_pure(rng, 3, 5)
    e = np.tile([0.0, 0.05, 0.1], (5, 1))
    act = np.array([0, 1, 2, 1, 0])
    out = hp.edc(rho, e, act, np.full(5, 0.05), 20.0)
    assert trace_error(out).max() < 1e-12 and purity_error(out).max() < 1e-12
    idx = np.arange(5)
    assert np.all(np.real(out[idx, act, act]) > np.real(rho[idx, act, act]))
    for _ in range(200):
        out = hp.edc(out, e, act, np.full(5, 0.05), 20.0)
    assert np.allclose(np.real(out[idx, act, act]), 1.0, atol=1e-8)
    # no kinetic energy: unchanged
    assert np.array_equal(hp.edc(rho, e, act, np.zeros(5), 20.0), rho)


def test_berry_force_gauge_invariant_and_perpendicular_to_velocity():
    rng = np.random.default_rng(7)
    dh = rng.normal(size=(2, 3, 3)) + 1j * rng.normal(size=(2, 3, 3))
    dh = 0.5 * (dh + np.swapaxes(dh.conj(), -1, -2))
    e = np.array([-0.1, 0.0, 0.2])
    v = rng.normal(size=2)
    f = hp.berry_force(dh, e, 1, v)
    assert abs(f @ v) < 1e-14  # a Lorentz-like force does no work
    d = np.exp(1j * rng.random(3) * 6.0)
    assert np.allclose(hp.berry_force(d.conj()[None, :, None] * dh * d[None, None, :], e, 1, v), f)
    assert np.allclose(hp.berry_force(np.real(dh), e, 1, v), 0)  # real Hamiltonian: none


def test_hop_uniform_is_a_pure_function_of_seed_id_step():
    a = [hp.hop_uniform(1, i, s) for i in range(3) for s in range(3)]
    assert a == [hp.hop_uniform(1, i, s) for i in range(3) for s in range(3)]
    assert len(set(a)) == 9 and all(0 <= r < 1 for r in a)
    assert hp.hop_uniform(2, 0, 0) != hp.hop_uniform(1, 0, 0)


def test_choose_target():
    p = np.array([0.0, 0.2, 0.3])
    assert hp.choose_target(p, 0, 0.1) == 1
    assert hp.choose_target(p, 0, 0.45) == 2
    assert hp.choose_target(p, 0, 0.6) is None


def test_edc_is_granucci_persico_on_the_amplitudes():
    """On a pure rho = c c^dag, ``edc`` is Granucci & Persico's amplitude form (JCP 126, 134114
    (2007), Eqs. 17-18) with tau_m = (1/|E_m - E_a|)(1 + C/E_kin), written out by hand here."""
    rng = np.random.default_rng(11)
    c = rng.normal(size=(4, 3)) + 1j * rng.normal(size=(4, 3))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    rho = c[:, :, None] * c.conj()[:, None, :]
    e = np.array([[0.0, 0.02, 0.07], [0.01, 0.03, 0.2], [-0.1, 0.0, 0.05], [0.0, 0.1, 0.3]])
    act = np.array([0, 1, 2, 1])
    ekin = np.array([0.05, 0.3, 0.01, 1.2])
    dt, cc = 12.0, 0.1
    out = hp.edc(rho, e, act, ekin, dt, cc)
    for i in range(4):
        a = act[i]
        d = c[i].copy()
        for m in range(3):
            if m != a:
                tau = (1.0 + cc / ekin[i]) / abs(e[i, m] - e[i, a])
                d[m] *= np.exp(-dt / tau)
        rest = sum(abs(d[m]) ** 2 for m in range(3) if m != a)
        d[a] *= np.sqrt((1.0 - rest) / abs(c[i, a]) ** 2)
        assert np.allclose(out[i], np.outer(d, d.conj()), atol=1e-13)
