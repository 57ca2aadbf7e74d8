"""Swarm estimators: kernel density gradient, local regression of rho in a common frame built from
overlaps of randomly re-phased bases, metric and its gradient — against analytic fields."""

import numpy as np
import pytest

from qhd_aimd.dynamics import fields as fl
from qhd_aimd.dynamics.density import to_frame, unitarize
from qhd_aimd.electronic.models import ModelBackend, get_model


def test_log_density_gradient_of_gaussian_swarm():
    """d ln n of a Gaussian swarm: right direction and size (the kernel estimate is biased by
    the bandwidth and noisy: ~20 % mean error at 4000 points in 2-D, see docs/physics.md)."""
    rng = np.random.default_rng(0)
    sigma = np.array([1.0, 0.5])
    x = rng.normal(size=(4000, 2)) * sigma
    h = fl.bandwidth(x, factor=1.5)
    w = fl.kernel_matrix(x, h, cutoff=6.0)
    g = fl.grad_log_density(x, w, h)
    exact = -x / sigma**2
    inner = np.all(np.abs(x / sigma) < 1.5, axis=1)
    rel = np.abs(g[inner] - exact[inner]).mean(axis=0) / np.abs(exact[inner]).mean(axis=0)
    assert np.all(rel < 0.25)
    for j in range(2):
        assert np.corrcoef(g[inner, j], exact[inner, j])[0, 1] > 0.97


def _psi(x, kappa=2.0):
    """Analytic diabatic electronic state field of the 2-D model's space."""
    a = 0.4 + 0.3 * x[..., 0] - 0.2 * x[..., 1]
    return np.stack([np.cos(a), np.sin(a) * np.exp(1j * kappa * (x[..., 0] + 0.5 * x[..., 1]))], -1)


def _rho_d(x):
    p = _psi(x)
    return p[..., :, None] * p[..., None, :].conj()


@pytest.mark.parametrize("kind", ["sign", "complex"])
def test_rho_derivatives_in_overlap_frame_match_analytic(kind):
    """Each trajectory's rho lives in its own randomly phased adiabatic basis; the estimator must
    recover d_j rho and d_j^2 rho in the centre trajectory's basis (no phase choice anywhere)."""
    backend = ModelBackend(get_model("berry_2d"), random_phases=True, phase_kind=kind, seed=2)
    rng = np.random.default_rng(1)
    centre = np.array([0.1, -0.2])
    x = np.vstack([centre, centre + 0.15 * rng.normal(size=(300, 2))])
    elec = [backend.compute(xi) for xi in x]
    rho = [e.handle.conj().T @ _rho_d(xi) @ e.handle for e, xi in zip(elec, x)]  # own bases
    h = np.array([0.08, 0.08])
    w = fl.kernel_matrix(x, h, cutoff=4.0)

    def rho_in_frame(a, nbrs):
        u = unitarize(np.stack([backend.overlap(elec[a], elec[b]) for b in nbrs]))
        return to_frame(np.stack([rho[b] for b in nbrs]), u), rho[a]

    d1, d2 = fl.rho_derivatives(0, x, w, h, rho_in_frame, ridge=1e-12, quadratic=True)
    v = elec[0].handle
    eps = 1e-5
    for j in range(2):
        e = np.zeros(2)
        e[j] = eps
        fd1 = (_rho_d(centre + e) - _rho_d(centre - e)) / (2 * eps)
        fd2 = (_rho_d(centre + e) - 2 * _rho_d(centre) + _rho_d(centre - e)) / eps**2
        assert np.abs(d1[j] - v.conj().T @ fd1 @ v).max() < 0.03 * np.abs(fd1).max()  # O(h^2) bias
        assert np.abs(d2[j] - v.conj().T @ fd2 @ v).max() < 0.05 * np.abs(fd2).max()
    # metric: gauge invariant, equals the analytic Fubini-Study metric of psi
    g = fl.metric(rho[0], d1)
    dpsi = [(_psi(centre + e) - _psi(centre - e)) / 2e-5 for e in np.eye(2) * 1e-5]
    p0 = _psi(centre)
    qgt = np.array([[np.vdot(a, b) - np.vdot(a, p0) * np.vdot(p0, b) for b in dpsi] for a in dpsi])
    assert np.allclose(g, qgt.real, rtol=0.05, atol=1e-3)
    b = fl.berry_curvature(rho[0], d1)  # Eq. 73: B_kj = -2 Im q_kj
    assert abs(qgt[0, 1].imag) > 0.1
    assert np.allclose(b, -2 * qgt.imag, rtol=0.05, atol=1e-2)


def test_metric_gradient_of_linear_field():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 2))
    slope = rng.normal(size=(2, 2, 2))  # d_i g_kj
    g_all = np.einsum("ti,ikj->tkj", x, slope) + 1.0
    h = fl.bandwidth(x)
    w = fl.kernel_matrix(x, h)
    assert np.allclose(fl.metric_gradient(5, x, w, h, g_all), slope, atol=1e-8)


def test_isolated_trajectory_has_zero_fields():
    x = np.array([[0.0], [100.0]])
    h = np.array([1.0])
    w = fl.kernel_matrix(x, h)
    assert w[0, 1] == 0.0
    d1, d2 = fl.rho_derivatives(0, x, w, h, lambda a, n: (np.zeros((0, 2, 2)), np.eye(2)), 1e-10)
    assert not d1.any() and not d2.any()


def test_demodulated_regression_resolves_short_wavelength_coherence():
    """A coherence oscillating faster than the bandwidth: the plain quadratic fit fails, the
    demodulated fit with the right wavevector recovers d rho and d^2 rho."""
    kappa0 = 25.0

    def rho_of(x):
        a = 0.6 + 0.2 * x
        psi = np.stack([np.cos(a), np.sin(a) * np.exp(1j * kappa0 * x)], -1)
        return psi[..., :, None] * psi[..., None, :].conj()

    rng = np.random.default_rng(5)
    x = np.concatenate([[0.0], rng.normal(size=150)])[:, None]
    rho = rho_of(x[:, 0])
    h = fl.bandwidth(x)
    w = fl.kernel_matrix(x, h)
    frame = lambda a, nbrs: (rho[nbrs], rho[a])  # noqa: E731 (common basis already)
    kappa = np.zeros((2, 2, 1))
    kappa[1, 0, 0], kappa[0, 1, 0] = kappa0, -kappa0  # rho_10 ~ exp(+i k x), rho_01 ~ exp(-i k x)
    eps = 1e-5
    fd1 = (rho_of(np.array(eps)) - rho_of(np.array(-eps))) / (2 * eps)
    fd2 = (rho_of(np.array(eps)) - 2 * rho_of(np.array(0.0)) + rho_of(np.array(-eps))) / eps**2
    d1, d2 = fl.rho_derivatives(0, x, w, h, frame, 1e-12, True)
    assert np.abs(d2[0] - fd2).max() > 0.5 * np.abs(fd2).max()  # plain fit cannot resolve it
    d1, d2 = fl.rho_derivatives(0, x, w, h, frame, 1e-12, True, kappa=kappa)
    assert np.abs(d1[0] - fd1).max() < 0.02 * np.abs(fd1).max()
    assert np.abs(d2[0] - fd2).max() < 0.02 * np.abs(fd2).max()


def test_only_the_free_part_of_rho_is_demodulated():
    """rho = slow + free (``slow_part``): the demodulated fit acts on the free part only, the slow
    part is fitted plainly. All slow: the plain estimate; no slow part: the demodulated one; a
    sum of a smooth slow coherence and a fast free one: each resolved by its own model."""
    rng = np.random.default_rng(7)
    x = np.concatenate([[0.0], rng.normal(size=150)])[:, None]
    h = fl.bandwidth(x)
    w = fl.kernel_matrix(x, h)
    kappa = np.zeros((2, 2, 1))
    kappa[1, 0, 0], kappa[0, 1, 0] = 25.0, -25.0

    def field(xx, k):  # pure state, coherence ~ exp(i k x)
        a = 0.6 + 0.2 * xx
        psi = np.stack([np.cos(a), np.sin(a) * np.exp(1j * k * xx)], -1)
        return psi[..., :, None] * psi[..., None, :].conj()

    def total(xx):  # a smooth (e.g. slaved) coherence plus a fast free one
        return field(xx, 0.3) + 0.3 * field(xx, 25.0) * (1 - np.eye(2))

    slow = field(x[:, 0], 0.3)
    free = total(x[:, 0]) - slow
    fit = lambda rho, sl: fl.rho_derivatives(  # noqa: E731
        0, x, w, h, lambda a, nb: (rho[nb], rho[a]) + (() if sl is None else (sl[nb], sl[a])),
        1e-12, True, kappa)
    plain = fl.rho_derivatives(0, x, w, h, lambda a, nb: (slow[nb], slow[a]), 1e-12, True)
    assert all(np.allclose(p, q) for p, q in zip(fit(slow, slow), plain))
    assert all(np.allclose(p, q) for p, q in zip(fit(slow, None), fit(slow, 0 * slow)))
    eps = 1e-5
    first = (total(np.array(eps)) - total(np.array(-eps))) / (2 * eps)
    second = (total(np.array(eps)) - 2 * total(np.array(0.0)) + total(np.array(-eps))) / eps**2
    d1, d2 = fit(slow + free, slow)
    assert np.abs(d1[0] - first).max() < 0.03 * np.abs(first).max()
    assert np.abs(d2[0] - second).max() < 0.03 * np.abs(second).max()
    d1, d2 = fit(slow + free, None)  # everything demodulated: the smooth coherence is lost
    assert np.abs(d2[0] - second).max() > 0.3 * np.abs(second).max()


def test_slow_part_is_gauge_covariant_and_follows_the_adiabatic_coherence():
    """slow_part = populations + first-order adiabatic-following coherence: transforms like rho
    under re-phasing of the states; on an adiabatic Ehrenfest passage of berry_2d it accounts for
    the coherence (|rho_01 - s_01| small against |rho_01|); without couplings or through a
    non-adiabatic crossing, populations only."""
    from qhd_aimd.dynamics.integrator import Propagator

    model = get_model("berry_2d")
    backend = ModelBackend(model)
    prop = Propagator(backend, "ehrenfest", 2.5, 10)
    s = prop.initialize([0], np.array([[-4.0, 0.3]]), np.array([[20.0, 0.0]]), [0])
    while s.positions[0, 0] < 0.0:
        s = prop.step(s)
    e, rho, vel = s.elec[0], s.rho[0], s.momenta[0] / backend.masses
    slow = fl.slow_part(rho, e.energies, vel, e.dhdx)
    assert abs(rho[0, 1]) > 1e-2
    assert abs(rho[0, 1] - slow[0, 1]) < 0.3 * abs(rho[0, 1])
    assert np.allclose(np.diagonal(slow), np.diagonal(rho))
    assert np.allclose(slow, slow.conj().T)
    phases = np.exp(1j * np.array([0.7, -2.1]))
    g = np.diag(phases)  # |u_n> -> |u_n> e^{i phi_n}: rho -> G^+ rho G, dhdx -> G^+ dhdx G
    moved = fl.slow_part(g.conj().T @ rho @ g, e.energies, vel, g.conj().T @ e.dhdx @ g)
    assert np.allclose(moved, g.conj().T @ slow @ g)
    assert np.allclose(fl.slow_part(rho, e.energies, vel, None), np.diag(np.diagonal(rho)))
    # a non-adiabatic crossing (tully_simple, k = 15: |v.d| / dE ~ 2) creates coherence, it
    # does not slave it: the first-order following term is left out there
    backend = ModelBackend(get_model("tully_simple"))
    prop = Propagator(backend, "ehrenfest", 2.0, 10)
    s = prop.initialize([0], np.array([[-4.0]]), np.array([[15.0]]), [0])
    while s.positions[0, 0] < 0.0:
        s = prop.step(s)
    e, rho, vel = s.elec[0], s.rho[0], s.momenta[0] / backend.masses
    gamma = abs(vel[0] * e.dhdx[0, 0, 1]) / np.ptp(e.energies) ** 2
    assert gamma > 1.0 and abs(rho[0, 1]) > 0.1
    assert abs(fl.slow_part(rho, e.energies, vel, e.dhdx)[0, 1]) < 0.01 * abs(rho[0, 1])


def test_coherence_wavevector_matches_swarm_phase_gradient():
    """After an Ehrenfest passage the coherence phase across the swarm advances with
    kappa_01 = -(E_0 - E_1) v / v^2 (measured in a's frame via overlaps, gauge invariant)."""
    from qhd_aimd.dynamics.integrator import Propagator
    from qhd_aimd.prepare.wavepacket import sample_wavepacket

    backend = ModelBackend(get_model("tully_simple"), random_phases=True, seed=1)
    pos, mom = sample_wavepacket(-6.0, 20.0, 2.0, 200, 2)  # narrow momentum spread
    prop = Propagator(backend, "ehrenfest", 5.0, 10)
    s = prop.initialize(np.arange(200), pos, mom, np.zeros(200, int))
    for _ in range(160):  # centre reaches x ~ +2 bohr, past the crossing
        s = prop.step(s)
    a = int(np.argmin(np.abs(s.positions[:, 0] - np.median(s.positions[:, 0]))))
    near = np.flatnonzero((np.abs(s.positions[:, 0] - s.positions[a, 0]) < 0.05) & (np.arange(200) != a))
    u = unitarize(np.stack([backend.overlap(s.elec[a], s.elec[b]) for b in near]))
    rho_b = to_frame(s.rho[near], u)
    theta = np.angle(rho_b[:, 0, 1] * np.conj(s.rho[a, 0, 1]))
    dx = s.positions[near, 0] - s.positions[a, 0]
    slope = np.sum(theta * dx) / np.sum(dx * dx)
    kappa = fl.coherence_wavevector(s.elec[a].energies, s.momenta[a] / backend.masses)
    assert abs(kappa[0, 1, 0]) > 1.0
    # the estimate neglects the spread of velocities and creation phases (measured ~25 % low);
    # demodulation only has to leave a residual the bandwidth resolves
    assert np.sign(slope) == np.sign(kappa[0, 1, 0])
    assert abs(slope - kappa[0, 1, 0]) < 0.35 * abs(kappa[0, 1, 0])


def test_quantum_force_of_gaussian_swarm():
    """Eq. 68 for a Gaussian swarm of std s: F_q = x / (4 M s_eff^4), s_eff^2 = s^2 + h^2 (the
    kernel density is the Gaussian smoothed by the kernel). A third derivative of ln n from a
    swarm is noisy per trajectory at the Silverman bandwidth (correlation with the exact force
    ~0.3 for 2000 points; 0.96 at twice the bandwidth), but right on average over the swarm,
    which is what moves its width (test_quantum_force_spreads_...): regression slope of the
    estimate on the exact force over |x| < 2 s within 20 %, and sharp at twice the bandwidth."""
    rng = np.random.default_rng(4)
    s, mass = 1.0, 2000.0
    x = rng.normal(size=(2000, 1)) * s
    h = fl.bandwidth(x)
    w = fl.kernel_matrix(x, h, cutoff=4.0)
    dlnn = fl.grad_log_density(x, w, h)
    fq = np.array([fl.quantum_force(a, x, w, h, dlnn, np.array([1 / mass]))
                   for a in range(len(x))])[:, 0]
    expected = x[:, 0] / (4 * mass * (s**2 + h[0] ** 2) ** 2)
    inner = np.abs(x[:, 0]) < 2 * s
    assert 0.8 < np.polyfit(expected[inner], fq[inner], 1)[0] < 1.2
    h2 = 2 * h
    w2 = fl.kernel_matrix(x, h2, cutoff=4.0)
    dlnn2 = fl.grad_log_density(x, w2, h2)
    fq2 = np.array([fl.quantum_force(a, x, w2, h2, dlnn2, np.array([1 / mass]))
                    for a in range(len(x))])[:, 0]
    expected2 = x[:, 0] / (4 * mass * (s**2 + h2[0] ** 2) ** 2)
    assert np.corrcoef(fq2[inner], expected2[inner])[0, 1] > 0.95
    assert 0.9 < np.polyfit(expected2[inner], fq2[inner], 1)[0] < 1.1


@pytest.mark.parametrize("p, quadratic, cplx", [(1, True, True), (2, False, False), (2, True, True),
                                                (3, True, False)])
def test_batched_local_fit_equals_per_centre_fit(p, quadratic, cplx):
    """local_fit_pairs (all centres at once, segmented sums + sparse right-hand sides) gives
    every centre the numbers of local_fit on its own pairs: centres with 0, few (diagonal
    quadratic) and many (full quadratic) neighbours in one batch, real and complex values.
    (Centres with fewer neighbours than coefficients are ridge-regularised and ill-conditioned,
    ~1e-6 between any two summation orders; not compared.)"""
    rng = np.random.default_rng(10 + p)
    n_full = 2 * (2 * p + p * (p - 1) // 2)
    n_nb = [0, n_full - 1, 2 * p + 1, 40, n_full, 25]
    centre = np.repeat(np.arange(len(n_nb)), n_nb)
    k = len(centre)
    dx = rng.normal(size=(k, p))
    w = rng.uniform(0.1, 1.0, k)
    h = rng.uniform(0.5, 2.0, p)
    dy = rng.normal(size=(k, 2, 2)) + (1j * rng.normal(size=(k, 2, 2)) if cplx else 0.0)
    first, second = fl.local_fit_pairs(centre, len(n_nb), dx, dy, w, h, quadratic)
    for c, n in enumerate(n_nb):
        if n == 0:
            assert not first[c].any() and not second[c].any()
            continue
        rows = centre == c
        f1, f2 = fl.local_fit(dx[rows], dy[rows], w[rows], h, quadratic)
        scale = max(np.abs(f1).max(), np.abs(f2).max())
        assert np.abs(first[c] - f1).max() < 1e-12 * scale
        assert np.abs(second[c] - f2).max() < 1e-12 * scale


def test_coherence_phases_equal_the_full_exponential():
    """The demodulation phases from the upper triangle (conjugated below) are exp(-i kappa.dx)
    bit for bit (kappa_mn = -kappa_nm exactly)."""
    rng = np.random.default_rng(2)
    for n in (2, 3):
        kappa = fl.coherence_wavevectors(rng.normal(size=(40, n)), rng.normal(size=(40, 2)))
        x = np.einsum("knmj,kj->knm", kappa, rng.normal(size=(40, 2)))
        np.testing.assert_array_equal(fl._coherence_phases(x), np.exp(-1j * x))
