"""SA-CASSCF solve: ordering, Newton fallback ladder, convergence error, per-state orbital
gradients, active-space switch diagnostic and policy, selected active orbitals."""

import numpy as np
import pytest

pyscf = pytest.importorskip("pyscf")

from lih_casscf import X_LIH, lih  # noqa: E402
from qhd_aimd.electronic.pyscf import CasscfBackend  # noqa: E402
from qhd_aimd.errors import ConvergenceError  # noqa: E402

pytestmark = pytest.mark.pyscf


def test_energies_ascending_and_overlap_identity(backend, data0):
    assert data0.energies[0] < data0.energies[1]
    s = backend.overlap(data0, data0)
    np.testing.assert_allclose(s, np.eye(2), atol=1e-10)


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


def test_convergence_error():
    b = lih(max_cycle=1, conv_tol_grad=1e-12)
    with pytest.raises(ConvergenceError, match="did not converge"):
        b.compute(X_LIH)


def test_state_orbital_gradients_match_pyscf():
    """Per-state orbital gradients (lean generalised-Fock formula) equal PySCF's: each one
    2x ``mc.get_grad`` with that state's RDMs, their weighted sum the orbital part of
    ``newton_casscf.gen_g_hop``, at orbitals away from convergence."""
    from pyscf.fci import direct_spin1
    from pyscf.mcscf import newton_casscf
    from scipy.linalg import expm
    from qhd_aimd.electronic.pyscf.solver import _state_orbital_gradients
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


def test_sigma_symmetry_keeps_sigma_states():
    """electronic.symmetry: sigma on LiH SA3-CAS(2,4)/6-31G: without it the third averaged state
    is a Pi state (the SA solution rolls sigma active orbitals into pi); with it every active
    orbital stays sigma (pi weight < 1e-10, cold and warm starts), the energies equal PySCF's
    symmetry-adapted SA-CASSCF of three A1 (Sigma+) roots, the Ehrenfest force on the third
    state matches a finite difference, and a bent geometry is refused."""
    from pyscf import gto, mcscf, scf

    from qhd_aimd.errors import ConfigError

    x = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 3.0])
    kw = dict(symbols=["Li", "H"], basis="6-31g", ncas=4, nelecas=2, n_states=3)
    plain = CasscfBackend(**kw).compute(x)
    be = CasscfBackend(**kw, symmetry="sigma")
    d = be.compute(x)
    assert _pi_weight(d.handle).max() < 1e-10
    assert _pi_weight(plain.handle).max() > 0.5  # measured: a pi orbital is active
    mol = gto.M(atom="Li 0 0 0; H 0 0 3.0", unit="Bohr", basis="6-31g", symmetry=True, verbose=0)
    mf = scf.RHF(mol).run()
    mc = mcscf.CASSCF(mf, 4, 2)
    mc.fcisolver.wfnsym = "A1"
    mc = mc.state_average_([1 / 3] * 3)
    mc.fix_spin_(ss=0)
    mc.kernel(mcscf.sort_mo_by_irrep(mc, mf.mo_coeff, {"A1": 4}))
    np.testing.assert_allclose(d.energies, np.sort(mc.e_states), atol=2e-7)
    assert abs(plain.energies[2] - d.energies[2]) > 1e-3  # the Pi state is not the 3rd Sigma+
    dz = np.array([0, 0, 0, 0, 0, 1e-3])
    warm = be.compute(x + 50 * dz, reference=d)
    assert _pi_weight(warm.handle).max() < 1e-10
    rho = np.zeros((3, 3), complex)
    rho[2, 2] = 1.0
    f = np.real(be.force(warm, rho))
    ep, em = (be.compute(x + 50 * dz + s * dz, reference=warm).energies[2] for s in (1, -1))
    assert abs(f[5] + (ep - em) / 2e-3) < 1e-6 and np.abs(f[[0, 1, 3, 4]]).max() < 1e-8
    with pytest.raises(ConfigError, match="linear"):
        CasscfBackend(symbols=["H", "H", "H"], basis="sto-3g", ncas=2, nelecas=2, n_states=2,
                      charge=1, symmetry="sigma").compute(
            np.array([0, 0, 0, 1.6, 0, 0, 0.8, 1.4, 0.0]))


def _sigma_weights(mol, c):
    from qhd_aimd.electronic.pyscf.molecule import _sigma_projector
    return np.einsum("ai,ab,bi->i", c, mol.intor_symmetric("int1e_ovlp"),
                     _sigma_projector(mol) @ c)


def test_sigma_symmetry_from_symmetry_broken_start_orbitals():
    """electronic.symmetry: sigma, LiH SA3-CAS(2,4)/6-31G at 3 bohr, warm-started from its own
    converged orbitals with the last active (sigma) orbital rotated by 0.1 rad into a pi virtual
    (as orbital extrapolation across a sigma/pi virtual crossing, or round-off mixing of
    near-degenerate virtuals, can produce): the classes are fixed once per solve from
    symmetry-adapted start orbitals, so the solve returns the unbroken solution (energies to
    1e-10, every orbital sigma or pi to 1e-10). Before: the classes were re-read from the
    current orbitals at every call, the broken orbital kept its pi admixture (weight 0.0122) and
    the energies were off by 8.3e-5 Ha (measured); in the LiH 6-31++G** rescan at dr 0.05 an
    orbital changed class mid-solve (56 orbital variables vs a mask of 53). Rotated by 1.2 rad
    (the active orbital is then mostly pi) the warm start is refused and the solver's cold start
    gives the same energies; before, the third state became a Pi state."""
    import dataclasses

    x = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 3.0])
    be = CasscfBackend(symbols=["Li", "H"], basis="6-31g", ncas=4, nelecas=2, n_states=3,
                       symmetry="sigma")
    d = be.compute(x)
    h = d.handle
    mol = h.mol()
    w = _sigma_weights(mol, h.mo_coeff)
    assert np.abs(w * (1 - w)).max() < 1e-10
    nocc = h.ncore + h.ncas
    i, j = nocc - 1, nocc + int(np.argmax(w[nocc:] < 0.5))  # last active (sigma), a pi virtual
    assert w[i] > 0.5 and w[j] < 0.5
    for angle in (0.1, 1.2):
        c = h.mo_coeff.copy()
        c[:, [i, j]] = c[:, [i, j]] @ np.array([[np.cos(angle), -np.sin(angle)],
                                                [np.sin(angle), np.cos(angle)]])
        broken = dataclasses.replace(d, handle=dataclasses.replace(h, mo_coeff=c))
        e = be.compute(x, reference=broken)
        np.testing.assert_allclose(e.energies, d.energies, atol=1e-9, rtol=0)
        w = _sigma_weights(mol, e.handle.mo_coeff)
        assert np.abs(w * (1 - w)).max() < 1e-10


def test_sigma_adapt_splits_a_half_and_half_mixture():
    """``sigma_adapt`` on RHF orbitals of LiH/6-31G with a sigma and a pi virtual mixed 50/50
    (plus 1e-3): the right number of sigma orbitals (the RHF count), pure orbitals (weights 0 or
    1 to 1e-12), orthonormal, and the unmixed orbitals unchanged to 1e-12."""
    from pyscf import scf

    from qhd_aimd.electronic.pyscf.molecule import build_mol, sigma_adapt

    mol = build_mol(["Li", "H"], [0, 0, 0, 0, 0, 3.0], "6-31g")
    mo = scf.RHF(mol).run().mo_coeff
    w0 = _sigma_weights(mol, mo)
    i, j = 2 + int(np.argmax(w0[2:] > 0.5)), 2 + int(np.argmax(w0[2:] < 0.5))  # virtuals
    c = mo.copy()
    a = np.pi / 4 + 1e-3
    c[:, [i, j]] = mo[:, [i, j]] @ np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    out, sig = sigma_adapt(mol, c)
    assert sig.sum() == (w0 > 0.5).sum()
    w = _sigma_weights(mol, out)
    assert np.abs(w - sig).max() < 1e-12
    np.testing.assert_allclose(out.T @ mol.intor("int1e_ovlp") @ out, np.eye(len(w)), atol=1e-12)
    keep = [k for k in range(len(w)) if k not in (i, j)]
    np.testing.assert_allclose(out[:, keep], mo[:, keep], atol=1e-12)
