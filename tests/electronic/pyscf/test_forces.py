"""Analytic derivatives vs finite differences, one-solve force vs term by term, shared
derivative integrals. States are never sign-aligned by the backend; finite-difference tests
align signs *in the test* (the FD formula itself is gauge dependent)."""

import numpy as np
import pytest

pyscf = pytest.importorskip("pyscf")

from lih_casscf import X_LIH  # noqa: E402
from qhd_aimd.electronic.pyscf import CasscfBackend  # noqa: E402

pytestmark = pytest.mark.pyscf


def _aligned(s):
    """Test-side sign alignment of the ket states so that diag(S) > 0 (FD needs a smooth gauge)."""
    return s * np.sign(np.diag(s))[None, :]


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


@pytest.mark.slow
def test_ethylene_one_solve_vs_terms():
    from qhd_aimd.prepare.molecule import read_xyz
    from pathlib import Path
    from qhd_aimd.electronic.base import dhdx_from_derivatives, meanfield_force
    syms, x = read_xyz(Path(__file__).parents[3] / "config" / "molecules" / "ethylene.xyz")
    b = CasscfBackend(syms, basis="6-31g", ncas=2, nelecas=2, n_states=2, conv_tol_grad=1e-8)
    x = x + 0.05 * np.random.default_rng(1).standard_normal(x.shape)
    d = b.compute(x)
    g, c = b.derivatives(d)
    rho = np.array([[0.3, 0.4 + 0.1j], [0.4 - 0.1j, 0.7]])
    f = meanfield_force(dhdx_from_derivatives(d.energies, g, c), rho)
    np.testing.assert_allclose(b.force(d, rho), f, atol=1e-7)


def test_shared_derivative_integrals_match_pyscf():
    """Derivative J/K and int2e_ip1 blocks served from the shared tensor equal PySCF's
    integral-direct / per-block ones (random non-symmetric densities); everything is restored
    on exit, also after an exception."""
    from pyscf import gto
    from pyscf.grad import rhf as rhf_grad
    from qhd_aimd.electronic.pyscf.forces import _DerivativeIntegrals
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


def test_state_gradients_equal_those_of_the_full_derivatives(backend, data0, derivs):
    """``state_gradients`` (the coupled methods' adiabatic momenta: no couplings solved) gives
    the gradients of ``derivatives`` to 1e-10, and they are real state gradients (not zero)."""
    g = backend.state_gradients(data0)
    assert g.shape == derivs[0].shape
    np.testing.assert_allclose(g, derivs[0], atol=1e-10)
    assert np.abs(g[1] - g[0]).max() > 1e-3
