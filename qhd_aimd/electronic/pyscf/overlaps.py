"""Exact <Psi_n(a)|Psi_m(b)> between SA-CASSCF states built on different orbitals.

The alpha (and beta) determinant overlap det(S[core+I, core+J]) is factorised as
det(S_cc) det(M[I, J]) with the Schur complement M = S_AA - S_Ac S_cc^{-1} S_cA of the core block,
and the active part is evaluated by ``pyscf.fci.addons.overlap`` with the (non-unitary) orbital
overlap M. When the core block is ill-conditioned (smallest singular value < 1e-6) the
brute-force determinant sum ``overlap_bruteforce`` is used instead (exact, slower).
"""

from __future__ import annotations

from itertools import product

import numpy as np
from pyscf import gto
from pyscf.fci import addons as fci_addons
from pyscf.fci import cistring

from qhd_aimd.electronic.pyscf.handle import CasscfHandle

#: smallest singular value of the core-core orbital overlap below which ``overlap`` uses the
#: brute-force determinant sum instead of the Schur complement
CORE_SINGULAR_TOL = 1e-6


def _orbital_overlap(a: CasscfHandle, b: CasscfHandle) -> np.ndarray:
    """(nocc_a, nocc_b) overlap <phi_p(a)|phi_q(b)> of core+active orbitals across geometries."""
    s_ao = gto.intor_cross("int1e_ovlp", a.mol(), b.mol())
    na = a.ncore + a.ncas
    nb = b.ncore + b.ncas
    return a.mo_coeff[:, :na].T @ s_ao @ b.mo_coeff[:, :nb]


def _check_compatible(a: CasscfHandle, b: CasscfHandle):
    if (a.ncore, a.ncas, tuple(a.nelecas)) != (b.ncore, b.ncas, tuple(b.nelecas)):
        raise ValueError("overlap between different active spaces")


def overlap_bruteforce(a: CasscfHandle, b: CasscfHandle) -> np.ndarray:
    """<Psi_n(a)|Psi_m(b)> by the explicit determinant sum (reference / fallback).

    Every alpha (beta) string pair contributes det(S[core + I, core + J]) with S the full
    core+active orbital overlap; cost ~ n_strings^2 determinants of size ncore + n_alpha.
    """
    _check_compatible(a, b)
    s = _orbital_overlap(a, b)
    ncore, ncas = a.ncore, a.ncas
    core = list(range(ncore))

    def string_dets(nel):
        strs = cistring.make_strings(range(ncas), nel)
        occ = [core + [ncore + i for i in range(ncas) if (int(st) >> i) & 1] for st in strs]
        d = np.empty((len(occ), len(occ)))
        for i, oi in enumerate(occ):
            for j, oj in enumerate(occ):
                d[i, j] = np.linalg.det(s[np.ix_(oi, oj)]) if oi else 1.0
        return d

    da = string_dets(a.nelecas[0])
    db = da if a.nelecas[0] == a.nelecas[1] else string_dets(a.nelecas[1])
    n, m = len(a.ci), len(b.ci)
    out = np.empty((n, m))
    for i, j in product(range(n), range(m)):
        out[i, j] = np.einsum("IJ,IK,KL,JL->", a.ci[i], da, b.ci[j], db)
    return out


def state_overlap(a: CasscfHandle, b: CasscfHandle) -> np.ndarray:
    """(N, N) real <Psi_n(a)|Psi_m(b)>: core folded in exactly by the Schur complement."""
    _check_compatible(a, b)
    s = _orbital_overlap(a, b)
    nc = a.ncore
    if nc > 0:
        s_cc = s[:nc, :nc]
        sv = np.linalg.svd(s_cc, compute_uv=False)
        if sv.min() < CORE_SINGULAR_TOL:
            return overlap_bruteforce(a, b)
        det_cc = np.linalg.det(s_cc)
        m = s[nc:, nc:] - s[nc:, :nc] @ np.linalg.solve(s_cc, s[:nc, nc:])
    else:
        det_cc = 1.0
        m = s
    prefactor = det_cc**2  # alpha and beta core determinants (closed-shell core)
    nel = tuple(a.nelecas)
    out = np.empty((len(a.ci), len(b.ci)))
    for i, ca in enumerate(a.ci):
        # transform the bra once, then dot with every ket
        ta = fci_addons.transform_ci_for_orbital_rotation(ca, a.ncas, nel, m)
        for j, cb in enumerate(b.ci):
            out[i, j] = np.dot(ta.ravel(), np.asarray(cb).ravel())
    return prefactor * out
