"""CasscfHandle: pickled handles reproduce forces and warm starts; the lean for_overlaps copy."""

import pickle

import numpy as np
import pytest

pyscf = pytest.importorskip("pyscf")

from lih_casscf import X_LIH  # noqa: E402

pytestmark = pytest.mark.pyscf


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
