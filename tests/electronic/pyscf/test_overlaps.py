"""Exact cross-geometry state overlaps: Schur complement vs brute-force determinant sum, the
core's contribution."""

import numpy as np
import pytest

pyscf = pytest.importorskip("pyscf")

from lih_casscf import X_LIH  # noqa: E402
from qhd_aimd.electronic.pyscf import overlap_bruteforce, state_overlap  # noqa: E402

pytestmark = pytest.mark.pyscf


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
