"""SA-CASSCF backend: analytic derivatives vs finite differences, exact overlaps, one-solve force,
warm starts, convergence failure, gauge covariance. States are never sign-aligned by the backend;
finite-difference tests align signs *in the test* (the FD formula itself is gauge dependent)."""

import pickle

import numpy as np
import pytest

pyscf = pytest.importorskip("pyscf")

from qhd_aimd.electronic.base import ElectronicData  # noqa: E402
from qhd_aimd.electronic.pyscf_casscf import (  # noqa: E402
    CasscfBackend, overlap_bruteforce, state_overlap,
)
from qhd_aimd.errors import ConvergenceError  # noqa: E402
from qhd_aimd.units import AMU_ME  # noqa: E402

pytestmark = pytest.mark.pyscf

X_LIH = np.array([0.0, 0.0, 0.0, 0.0, 0.3, 3.0])  # bent off-axis so that all components matter


def lih(**kw):
    opts = dict(basis="sto-3g", ncas=2, nelecas=2, n_states=2, conv_tol=1e-12, conv_tol_grad=1e-7)
    opts.update(kw)
    return CasscfBackend(["Li", "H"], **opts)


@pytest.fixture(scope="module")
def backend():
    return lih()


@pytest.fixture(scope="module")
def data0(backend):
    return backend.compute(X_LIH)


@pytest.fixture(scope="module")
def derivs(backend, data0):
    return backend.derivatives(data0)


def _aligned(s):
    """Test-side sign alignment of the ket states so that diag(S) > 0 (FD needs a smooth gauge)."""
    return s * np.sign(np.diag(s))[None, :]


def test_masses_labels(backend):
    assert backend.masses.shape == (6,)
    assert backend.masses[0] == pytest.approx(7.016004 * AMU_ME, rel=1e-7)  # 7Li
    assert backend.masses[3] == pytest.approx(1.007825 * AMU_ME, rel=1e-7)
    assert backend.labels == ["Li1.x", "Li1.y", "Li1.z", "H1.x", "H1.y", "H1.z"]


def test_energies_ascending_and_overlap_identity(backend, data0):
    assert data0.energies[0] < data0.energies[1]
    s = backend.overlap(data0, data0)
    np.testing.assert_allclose(s, np.eye(2), atol=1e-10)


def test_overlap_matches_bruteforce(backend, data0):
    rng = np.random.default_rng(3)
    b = backend.compute(X_LIH + 0.08 * rng.standard_normal(6), reference=data0)
    s = state_overlap(data0.handle, b.handle)
    ref = overlap_bruteforce(data0.handle, b.handle)
    np.testing.assert_allclose(s, ref, atol=1e-12)
    assert np.abs(np.abs(s) - np.eye(2)).max() > 1e-4  # a real displacement, not identity
    # <a|b> = <b|a>^T
    np.testing.assert_allclose(state_overlap(b.handle, data0.handle), s.T, atol=1e-12)


def test_core_matters_in_overlap(backend, data0):
    """Dropping the core determinant prefactor/Schur complement changes the overlap."""
    b = backend.compute(X_LIH + np.array([0, 0, 0, 0, 0, 0.1]), reference=data0)
    from pyscf.fci import addons
    h, g = data0.handle, b.handle
    s_ao = pyscf.gto.intor_cross("int1e_ovlp", h.mol(), g.mol())
    act = slice(h.ncore, h.ncore + h.ncas)
    m = h.mo_coeff[:, act].T @ s_ao @ g.mo_coeff[:, act]
    active_only = np.array([[addons.overlap(ci, cj, 2, (1, 1), m) for cj in g.ci] for ci in h.ci])
    exact = state_overlap(h, g)
    np.testing.assert_allclose(exact, overlap_bruteforce(h, g), atol=1e-13)
    # small for LiH (Li 1s core), but far above the exactness of the Schur complement
    assert np.abs(active_only - exact).max() > 1e-8


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


def test_exact_ci_roots(backend, data0):
    """Stored CI vectors are exact, spin-pure eigenvectors of the active Hamiltonian."""
    from pyscf.fci import spin_op
    mc = backend.rebuild(data0)
    h1, ecore = mc.get_h1eff()
    h2 = mc.get_h2eff()
    for c, e in zip(data0.handle.ci, data0.energies):
        hc = pyscf.fci.direct_spin1.contract_2e(
            pyscf.fci.direct_spin1.absorb_h1e(h1, h2, 2, (1, 1), 0.5), c, 2, (1, 1))
        np.testing.assert_allclose(hc, (e - ecore) * c, atol=1e-11)
        assert abs(spin_op.spin_square0(c, 2, (1, 1))[0]) < 1e-12


def test_exact_ci_matches_davidson():
    """The exact small-space CI solver and PySCF's Davidson path (exact_ci_max_det=0, with
    ``_polish``) give the same SA-CASSCF energies; a 3-orbital space checks the spin basis."""
    kw = dict(basis="sto-3g", ncas=3, nelecas=2, n_states=3, conv_tol=1e-10, conv_tol_grad=1e-7)
    exact = CasscfBackend(["Li", "H"], **kw).compute(X_LIH)
    dav = CasscfBackend(["Li", "H"], exact_ci_max_det=0, **kw).compute(X_LIH)
    assert exact.handle.info["path"].endswith("Newton")
    assert "Newton" not in dav.handle.info["path"]
    np.testing.assert_allclose(exact.energies, dav.energies, atol=1e-7)


def test_transport_orbitals():
    from qhd_aimd.electronic.pyscf_casscf import _sym_powers, _transport_orbitals, build_mol
    m0 = build_mol(["Li", "H"], X_LIH, "6-31g")
    m1 = build_mol(["Li", "H"], X_LIH + 0.05, "6-31g")
    s0, s1 = m0.intor_symmetric("int1e_ovlp"), m1.intor_symmetric("int1e_ovlp")
    w, v = np.linalg.eigh(s0)
    c0 = v / np.sqrt(w)  # orthonormal in s0
    half0, mhalf0 = _sym_powers(s0)
    c1 = _transport_orbitals(half0 @ c0, _sym_powers(s1)[1], s1)
    np.testing.assert_allclose(c1.T @ s1 @ c1, np.eye(len(c0)), atol=1e-10)
    np.testing.assert_allclose(_transport_orbitals(half0 @ c0, mhalf0, s0), c0, atol=1e-10)


def test_newton_failure_falls_back_to_one_step(backend, data0):
    """A Newton attempt that cannot converge hands over to PySCF's 1-step rung."""
    b = lih()
    calls = []

    def newton_failing_once(mc, mo, ci, info):
        calls.append(1)
        if len(calls) == 1:
            return False, "forced failure"
        return CasscfBackend._newton(b, mc, mo, ci, info)

    b._newton = newton_failing_once
    x = X_LIH + np.array([0.0, 0.02, 0.0, 0.03, 0.0, -0.05])
    d = b.compute(x, reference=data0)
    assert d.handle.info["path"] == "warm start, 1-step"
    assert d.handle.info["attempts"][0].startswith("warm start, Newton")
    assert d.handle.info["macro_iterations"] > 0
    np.testing.assert_allclose(d.energies, backend.compute(x).energies, atol=1e-9)


def test_translation_keeps_transported_orbitals_converged(backend, data0):
    """A rigid translation carries converged orbitals exactly (AOs move with the atoms)."""
    d = backend.compute(X_LIH + 0.05, reference=data0)
    assert d.handle.info["newton_iterations"] == 0
    np.testing.assert_allclose(d.energies, data0.energies, atol=1e-10)


def test_gradients_vs_finite_differences(backend, data0, derivs):
    grads, _ = derivs
    h = 1e-3
    for k in range(6):
        xp, xm = X_LIH.copy(), X_LIH.copy()
        xp[k] += h
        xm[k] -= h
        ep = backend.compute(xp, reference=data0).energies
        em = backend.compute(xm, reference=data0).energies
        # state energies are only as good as the SA orbitals (|g_orb| ~ 1e-7): ~1e-8 Ha
        np.testing.assert_allclose((ep - em) / (2 * h), grads[:, k], atol=3e-5)
    # translational invariance
    np.testing.assert_allclose(grads.reshape(2, 2, 3).sum(axis=1), 0, atol=1e-8)


def test_couplings_vs_finite_difference_of_overlaps(backend, data0, derivs):
    """d_nm = <u_n|d u_m> vs (S(x, x+h) - S(x, x-h)) / 2h, full AO+CSF derivative."""
    _, coup = derivs
    np.testing.assert_allclose(coup, -coup.transpose(1, 0, 2), atol=1e-14)
    h = 2e-3
    for k in range(6):
        xp, xm = X_LIH.copy(), X_LIH.copy()
        xp[k] += h
        xm[k] -= h
        sp = _aligned(backend.overlap(data0, backend.compute(xp, reference=data0)).real)
        sm = _aligned(backend.overlap(data0, backend.compute(xm, reference=data0)).real)
        fd = (sp - sm) / (2 * h)
        np.testing.assert_allclose(fd[0, 1], coup[0, 1, k], atol=3e-4)
        np.testing.assert_allclose(fd[1, 0], coup[1, 0, k], atol=3e-4)
    assert np.abs(coup[0, 1]).max() > 0.05  # a sizeable coupling was tested


@pytest.mark.parametrize("rho", [
    np.array([[0.6, 0.3 + 0.1j], [0.3 - 0.1j, 0.4]]),
    np.array([[1.0, 0.0], [0.0, 0.0]]),
    np.array([[0.2, -0.4], [-0.4, 0.8]]),
])
def test_one_solve_force_equals_term_by_term(backend, data0, derivs, rho):
    from qhd_aimd.electronic.base import dhdx_from_derivatives, meanfield_force
    g, c = derivs
    f_terms = meanfield_force(dhdx_from_derivatives(data0.energies, g, c), rho)
    f_one = backend.force(data0, rho, mode="one_solve")
    np.testing.assert_allclose(f_one, f_terms, atol=1e-7)
    np.testing.assert_allclose(backend.force(data0, rho, mode="term_by_term"), f_terms, atol=1e-12)
    # pure ground state: force is minus the gradient
    if rho[1, 1] == 0:
        np.testing.assert_allclose(f_one, -g[0], atol=1e-7)


def test_gauge_covariance(backend, data0):
    """Flip the sign of state 1 in a handle: overlaps transform as P S, the force with P rho P
    is unchanged."""
    b = backend.compute(X_LIH + np.array([0, 0, 0.05, 0, 0, -0.05]), reference=data0)
    h = data0.handle
    flipped = h.with_ci([h.ci[0], -h.ci[1]])
    d2 = ElectronicData(positions=data0.positions, energies=data0.energies, handle=flipped)
    p = np.diag([1.0, -1.0])
    np.testing.assert_allclose(backend.overlap(d2, b), p @ backend.overlap(data0, b), atol=1e-14)
    rho = np.array([[0.7, 0.2 - 0.3j], [0.2 + 0.3j, 0.3]])
    f = backend.force(data0, rho)
    f2 = backend.force(d2, p @ rho @ p)
    np.testing.assert_allclose(f2, f, atol=1e-10)
    assert np.abs(backend.force(d2, rho) - f).max() > 1e-4  # the flip is not a no-op


def test_pickled_handle_reproducible(backend, data0):
    d2 = pickle.loads(pickle.dumps(data0))
    rho = np.array([[0.5, 0.5], [0.5, 0.5]])
    # (PySCF's OpenMP integral/JK kernels are not bitwise deterministic: ~1e-21 noise)
    np.testing.assert_allclose(backend.force(d2, rho), backend.force(data0, rho), atol=1e-14)
    x = X_LIH + 0.02
    a = backend.compute(x, reference=data0)
    b = backend.compute(x, reference=d2)
    # same warm start from the pickled handle; equal up to PySCF's multithreaded round-off
    np.testing.assert_allclose(a.energies, b.energies, atol=1e-12)
    assert all(np.allclose(p, q, atol=1e-9) for p, q in zip(a.handle.ci, b.handle.ci))


def test_convergence_error():
    b = lih(max_cycle=1, conv_tol_grad=1e-12)
    with pytest.raises(ConvergenceError, match="did not converge"):
        b.compute(X_LIH)


def test_from_config():
    from qhd_aimd.config import SystemSpec
    spec = SystemSpec.model_validate({"molecule": {"xyz": "x.xyz"},
                                      "electronic": {"basis": "sto-3g", "active_space": [2, 2],
                                                     "n_states": 2, "force": "term_by_term"}})
    b = CasscfBackend.from_config(spec, ["Li", "H"])
    assert (b.nelecas, b.ncas, b.n_states, b.force_mode, b.ncore) == (2, 2, 2, "term_by_term", 1)


@pytest.mark.slow
def test_ethylene_one_solve_vs_terms():
    from qhd_aimd.prepare.molecule import read_xyz
    from pathlib import Path
    from qhd_aimd.electronic.base import dhdx_from_derivatives, meanfield_force
    syms, x = read_xyz(Path(__file__).parents[2] / "config" / "molecules" / "ethylene.xyz")
    b = CasscfBackend(syms, basis="6-31g", ncas=2, nelecas=2, n_states=2, conv_tol_grad=1e-8)
    x = x + 0.05 * np.random.default_rng(1).standard_normal(x.shape)
    d = b.compute(x)
    g, c = b.derivatives(d)
    rho = np.array([[0.3, 0.4 + 0.1j], [0.4 - 0.1j, 0.7]])
    f = meanfield_force(dhdx_from_derivatives(d.energies, g, c), rho)
    np.testing.assert_allclose(b.force(d, rho), f, atol=1e-7)


def test_extrapolation_weights():
    """Lagrange weights in arc length: exact for polynomials of the order used; the order drops
    to the run of recent steps that continue one another, None without any."""
    from qhd_aimd.electronic.pyscf_casscf import _extrapolation_weights
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
    from qhd_aimd.electronic.pyscf_casscf import _extrapolate_orbitals
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


def test_active_overlap_diagnostic(backend, data0):
    d = backend.compute(X_LIH + np.array([0.0, 0.01, 0.0, 0.02, 0.0, -0.03]), reference=data0)
    assert 0.99 < d.handle.info["active_overlap"] <= 1.0 + 1e-12
    assert "active_overlap" not in data0.handle.info  # cold start: no reference


def test_active_switch_policy(data0):
    """A step whose active orbitals overlap the reference's less than active_overlap_min is an
    active-space switch: recorded with "continue", ActiveSpaceSwitchError with "stop"."""
    from qhd_aimd.errors import ActiveSpaceSwitchError
    x = X_LIH + np.array([0.0, 0.01, 0.0, 0.02, 0.0, -0.03])
    assert not lih().compute(x, reference=data0).handle.info["active_switch"]
    assert lih(active_overlap_min=1.0).compute(x, reference=data0).handle.info["active_switch"]
    with pytest.raises(ActiveSpaceSwitchError, match="active space switched"):
        lih(active_overlap_min=1.0, active_switch="stop").compute(x, reference=data0)
    lih(active_switch="stop").compute(x, reference=data0)  # a smooth step passes


def test_active_switch_from_config():
    from qhd_aimd.config import SystemSpec
    spec = SystemSpec.model_validate({"molecule": {"xyz": "x.xyz"},
                                      "electronic": {"basis": "sto-3g", "active_switch": "stop",
                                                     "active_overlap_min": 0.9}})
    b = CasscfBackend.from_config(spec, ["Li", "H"])
    assert (b.active_switch, b.active_overlap_min) == ("stop", 0.9)


def test_state_orbital_gradients_match_pyscf():
    """Per-state orbital gradients (lean generalised-Fock formula) equal PySCF's: each one
    2x ``mc.get_grad`` with that state's RDMs, their weighted sum the orbital part of
    ``newton_casscf.gen_g_hop``, at orbitals away from convergence."""
    from pyscf.fci import direct_spin1
    from pyscf.mcscf import newton_casscf
    from scipy.linalg import expm
    from qhd_aimd.electronic.pyscf_casscf import _state_orbital_gradients
    b = CasscfBackend(["Li", "H"], basis="6-31g", ncas=3, nelecas=2, n_states=3)
    d = b.compute(X_LIH)
    mol = d.handle.mol()
    mc = b._mc(b._mf(mol))
    k = 0.02 * np.random.default_rng(4).standard_normal((mol.nao, mol.nao))
    mo = mc.mo_coeff = d.handle.mo_coeff @ expm(k - k.T)
    eris = mc.ao2mo(mo)
    _, _, ci = mc.casci(mo, list(d.handle.ci), eris)
    gs = _state_orbital_gradients(mc, mo, ci, eris)
    g = newton_casscf.gen_g_hop(mc, mo, ci, eris)[0][:gs.shape[1]]
    assert np.abs(g).max() > 1e-2  # a real gradient
    np.testing.assert_allclose(np.asarray(b.weights) @ gs, g, atol=1e-12)
    for c, gi in zip(ci, gs):
        ref = mc.get_grad(mo, direct_spin1.make_rdm12(c, mc.ncas, mc.nelecas), eris)
        np.testing.assert_allclose(gi, 2 * ref, atol=1e-12)


def test_shared_derivative_integrals_match_pyscf():
    """Derivative J/K and int2e_ip1 blocks served from the shared tensor equal PySCF's
    integral-direct / per-block ones (random non-symmetric densities); everything is restored
    on exit, also after an exception."""
    from pyscf import gto
    from pyscf.grad import rhf as rhf_grad
    from qhd_aimd.electronic.pyscf_casscf import _DerivativeIntegrals
    mol = gto.M(atom="O 0 0 0; H 0 0.76 0.59; H 0.1 -0.76 0.55", basis="6-31g", verbose=0)
    dms = np.random.default_rng(5).standard_normal((2, mol.nao, mol.nao))
    sl = (1, 4, 0, mol.nbas, 0, mol.nbas, 0, mol.nbas)
    ref = rhf_grad.get_jk(mol, dms), rhf_grad.get_jk(mol, dms[0])
    ref_blk = mol.intor("int2e_ip1", comp=3, aosym="s2kl", shls_slice=sl)
    get_jk0 = rhf_grad.get_jk
    with _DerivativeIntegrals(mol, 100.0):
        assert rhf_grad.get_jk is not get_jk0
        got = rhf_grad.get_jk(mol, dms), rhf_grad.get_jk(mol, dms[0])
        blk = mol.intor("int2e_ip1", comp=3, aosym="s2kl", shls_slice=sl)
    for r, g in zip(ref, got):  # (J, K) for a stack of densities, then for a single one
        for a, b in zip(r, g):
            assert a.shape == b.shape
            np.testing.assert_allclose(b, a, atol=1e-12)
    assert np.abs(ref[0][0]).max() > 0.1
    np.testing.assert_array_equal(blk, ref_blk)
    assert rhf_grad.get_jk is get_jk0 and "intor" not in mol.__dict__
    with pytest.raises(RuntimeError):
        with _DerivativeIntegrals(mol, 100.0):
            raise RuntimeError("boom")
    assert rhf_grad.get_jk is get_jk0 and "intor" not in mol.__dict__
    with _DerivativeIntegrals(mol, 0.0) as off:  # does not fit: PySCF's own path
        assert not off.enabled and rhf_grad.get_jk is get_jk0


def test_force_with_shared_derivative_integrals():
    """Forces and term-by-term derivatives with the shared derivative integrals equal those of
    PySCF's own integral path."""
    kw = dict(basis="6-31g", ncas=2, nelecas=2, n_states=2)
    shared, direct = CasscfBackend(["Li", "H"], **kw), CasscfBackend(
        ["Li", "H"], derivative_integrals_max_mb=0.0, **kw)
    d = shared.compute(X_LIH)
    rho = np.array([[0.7, 0.2 + 0.3j], [0.2 - 0.3j, 0.3]])
    np.testing.assert_allclose(shared.force(d, rho), direct.force(d, rho), atol=1e-10)
    for a, b in zip(shared.derivatives(d), direct.derivatives(d)):
        np.testing.assert_allclose(a, b, atol=1e-10)


def test_for_overlaps_copy(backend, data0):
    """What coupled methods exchange: same overlaps as the full data, a fraction of the bytes,
    refused as a warm-start reference or for derivatives."""
    d1 = backend.compute(X_LIH + np.array([0.0, 0.01, 0.0, 0.02, 0.0, -0.03]), reference=data0)
    lean = d1.for_overlaps()
    assert lean.handle.mo_coeff.shape[1] == d1.handle.ncore + d1.handle.ncas
    assert len(pickle.dumps(lean)) < 0.7 * len(pickle.dumps(d1))  # LiH: 11 AOs, 3 occupied
    np.testing.assert_array_equal(backend.overlap(data0, lean), backend.overlap(data0, d1))
    np.testing.assert_array_equal(backend.overlap(lean, lean), backend.overlap(d1, d1))
    with pytest.raises(ValueError, match="for_overlaps"):
        backend.compute(X_LIH, reference=lean)
    with pytest.raises(ValueError, match="for_overlaps"):
        backend.force(lean, np.diag([1.0, 0.0]))


def test_state_gradients_equal_those_of_the_full_derivatives(backend, data0, derivs):
    """``state_gradients`` (the coupled methods' adiabatic momenta: no couplings solved) gives
    the gradients of ``derivatives`` to 1e-10, and they are real state gradients (not zero)."""
    g = backend.state_gradients(data0)
    assert g.shape == derivs[0].shape
    np.testing.assert_allclose(g, derivs[0], atol=1e-10)
    assert np.abs(g[1] - g[0]).max() > 1e-3


def _pi_weight(handle):
    """Weight of the px/py AOs (bond along z) in each active orbital (S-metric, Mulliken)."""
    mol = handle.mol()
    s = mol.intor("int1e_ovlp")
    perp = [i for i, lab in enumerate(mol.ao_labels()) if "px" in lab or "py" in lab]
    act = handle.mo_coeff[:, handle.ncore:handle.ncore + handle.ncas]
    return np.array([c[perp] @ (s @ c)[perp] for c in act.T])


def test_active_orbitals_select_the_sigma_pair():
    """LiF SA2-CAS(2,2)/6-31G at r_e: PySCF's default guess (HOMO/LUMO) puts an F 2p-pi orbital
    in the active space (Sigma/Pi pair); electronic.active_orbitals [4, 7] (1-based: F 2p-sigma,
    Li 2s) gives the ionic/covalent pair of 1Sigma+ states: both active orbitals sigma, and a
    warm start from that solution keeps them."""
    x = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 2.955])
    kw = dict(symbols=["Li", "F"], basis="6-31g", ncas=2, nelecas=2, n_states=2)
    default = CasscfBackend(**kw).compute(x)
    assert _pi_weight(default.handle).max() > 0.99
    be = CasscfBackend(**kw, active_orbitals=[4, 7])
    d = be.compute(x)
    assert _pi_weight(d.handle).max() < 1e-10
    # measured: the Sigma-Sigma pair's upper state is 0.43 eV above the Sigma-Pi pair's
    assert d.energies[1] - default.energies[1] > 0.01
    warm = be.compute(x + np.array([0, 0, 0, 0, 0, 0.05]), reference=d)
    assert _pi_weight(warm.handle).max() < 1e-10


@pytest.mark.parametrize("orbitals,msg", [([4], "need 2 distinct"), ([4, 4], "need 2 distinct"),
                                          ([0, 7], "1..11"), ([4, 99], "1..11")])
def test_active_orbitals_validated_against_the_basis(orbitals, msg):
    from qhd_aimd.errors import ConfigError

    with pytest.raises(ConfigError, match=f"electronic.active_orbitals.*{msg}"):
        CasscfBackend(symbols=["Li", "H"], basis="6-31g", ncas=2, nelecas=2,
                      active_orbitals=orbitals)
