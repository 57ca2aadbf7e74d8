"""Active-space CI: exact spin-pure roots; exact solver vs PySCF's Davidson path."""

import numpy as np
import pytest

pyscf = pytest.importorskip("pyscf")

from lih_casscf import X_LIH  # noqa: E402
from qhd_aimd.electronic.pyscf import CasscfBackend  # noqa: E402

pytestmark = pytest.mark.pyscf


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
