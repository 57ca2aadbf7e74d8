"""Active-space CI: exact spin-pure roots for small active spaces (``_ExactCI``) and the
block-Krylov refinement of PySCF's Davidson roots (``_krylov_refine``)."""

from __future__ import annotations

import functools

import numpy as np
from pyscf import ao2mo
from pyscf.fci import cistring, direct_spin1, spin_op

from qhd_aimd.errors import ConfigError


@functools.lru_cache(maxsize=64)
def _spin_basis(norb: int, nelec: tuple, ss: float) -> np.ndarray:
    """(n_det, m) orthonormal basis of the determinant space with <S^2> = ss exactly
    (eigenvectors of the S^2 matrix; read-only, cached per active space)."""
    na = cistring.num_strings(norb, nelec[0])
    nb = cistring.num_strings(norb, nelec[1])
    n = na * nb
    s2 = np.empty((n, n))
    unit = np.zeros(n)
    for i in range(n):
        unit[:] = 0.0
        unit[i] = 1.0
        s2[:, i] = spin_op.contract_ss(unit.reshape(na, nb), norb, nelec).ravel()
    w, v = np.linalg.eigh(0.5 * (s2 + s2.T))
    q = np.ascontiguousarray(v[:, np.abs(w - ss) < 1e-6])
    q.setflags(write=False)
    return q


class _ExactCI:
    """FCI-solver mixin: exact, spin-pure roots for small active spaces.

    For at most ``exact_max_det`` determinants the active Hamiltonian is built in full
    (``direct_spin1.pspace``), projected on the exact <S^2> = ``ss_value`` subspace
    (``_spin_basis``) and diagonalised densely. The roots are then exact eigenvectors to
    machine precision and exactly spin-pure, whatever the initial guess (PySCF's Davidson stops
    at residuals ~1e-7 from a good warm guess, see ``CasscfBackend._final_ci``); the guess
    ``ci0`` is not used. Signs are whatever LAPACK returns: no sign or phase is ever chosen.
    Larger spaces fall through to PySCF's Davidson solver.
    """

    exact_max_det = 2000

    def _exact_ok(self, norb, nelec):
        na = cistring.num_strings(norb, nelec[0])
        nb = cistring.num_strings(norb, nelec[1])
        return na * nb <= self.exact_max_det

    def kernel(self, h1e, eri, norb, nelec, ci0=None, nroots=None, ecore=0, **kwargs):
        nelec = direct_spin1._unpack_nelec(nelec, self.spin)
        if nroots is None:
            nroots = self.nroots
        if not self._exact_ok(norb, nelec):
            return super().kernel(h1e, eri, norb, nelec, ci0=ci0, nroots=nroots, ecore=ecore,
                                  **kwargs)
        na = cistring.num_strings(norb, nelec[0])
        nb = cistring.num_strings(norb, nelec[1])
        ss = getattr(self, "ss_value", None)
        if ss is None:
            sz = 0.5 * abs(nelec[0] - nelec[1])
            ss = sz * (sz + 1.0)
        q = _spin_basis(norb, tuple(int(n) for n in nelec), float(ss))
        if q.shape[1] < nroots:
            raise ConfigError(f"only {q.shape[1]} states with S^2 = {ss} in CAS({sum(nelec)}, "
                              f"{norb}); {nroots} requested")
        h = direct_spin1.pspace(np.asarray(h1e, float), ao2mo.restore(1, np.asarray(eri), norb),
                                norb, nelec, np=na * nb)[1]
        hq = q.T @ h @ q
        w, u = np.linalg.eigh(0.5 * (hq + hq.T))
        c = q @ u[:, :nroots]
        e = w[:nroots] + ecore
        vecs = [c[:, i].reshape(na, nb).view(direct_spin1.FCIvector) for i in range(nroots)]
        self.norb, self.nelec = norb, nelec
        if nroots == 1:
            self.converged, self.eci, self.ci = True, float(e[0]), vecs[0]
        else:
            self.converged, self.eci, self.ci = [True] * nroots, e, vecs
        return self.eci, self.ci


def _krylov_refine(hop, vecs, tol, max_iter=60):
    """Lowest len(vecs) Ritz pairs of the Hermitian operator ``hop`` in the block-Krylov space
    grown from ``vecs`` by their residuals. Returns (energies ascending, vectors, converged)."""
    n = len(vecs)
    v, _ = np.linalg.qr(np.array(vecs).T)
    hv = np.array([hop(c) for c in v.T]).T
    for _ in range(max_iter):
        hsub = v.T @ hv
        w, u = np.linalg.eigh(0.5 * (hsub + hsub.T))
        w, u = w[:n], u[:, :n]
        x = v @ u
        r = hv @ u - x * w
        res = np.linalg.norm(r, axis=0)
        if res.max() < tol:
            return w, list(x.T), True
        # new directions: residuals orthogonalised against the space (twice, for stability)
        new = r[:, res >= tol]
        for _ in range(2):
            new -= v @ (v.T @ new)
        q, rr = np.linalg.qr(new)
        keep = np.abs(np.diag(rr)) > 1e-3 * tol
        if not keep.any():
            return w, list(x.T), bool(res.max() < 10 * tol)
        q = q[:, keep]
        v = np.hstack([v, q])
        hv = np.hstack([hv, np.array([hop(c) for c in q.T]).T])
    return w, list(x.T), False
