"""State-averaged CASSCF (PySCF) as an electronic-structure backend.

This module and ``qhd_aimd.prepare`` are the only places that import PySCF.

What a call does (atomic units throughout: bohr, hartree, hartree/bohr)
-----------------------------------------------------------------------
``compute(x, reference)``
    SA-CASSCF with equal weights (or ``ElectronicSpec.weights``) over ``n_states`` roots of the
    spin given by ``MoleculeSpec.spin``. Active spaces of at most ``exact_ci_max_det``
    determinants (CAS(2,2): 4, CAS(4,3): 9, CAS(6,6): 400) are solved *exactly*: the full active
    Hamiltonian projected on the exact S^2 = S(S+1) subspace, dense diagonalisation
    (``_ExactCI``); larger ones use PySCF's Davidson solver with ``fix_spin_``.

    Warm start comes **only** from ``reference`` (an earlier ``ElectronicData``): its orbitals
    carried to the new geometry through the Loewdin-orthogonalised AO basis,
    C' = S_new^{-1/2} S_ref^{1/2} C (``_transport_orbitals``), and, when the reference itself
    was warm-started along the same smooth path (MD steps), the core and active orbital
    subspaces extrapolated by a polynomial (up to cubic) through the reference and its
    predecessors, which the reference's handle carries (``_extrapolate_orbitals``; projectors
    only, no orbital is matched or sign-aligned between steps). No RHF is run then. The backend object keeps no
    per-call state, so a restart from a checkpointed handle is bitwise reproducible.

    Solver (exact-CI spaces): Newton iterations on the orbitals with the exact CI re-solved at
    every step and the coupled orbital-CI Hessian of PySCF (``_newton``), converged until the
    SA orbital gradient < ``conv_tol_grad`` **and** the estimated remaining change of every state
    energy < ``conv_tol`` / 3 (state energies of SA-CASSCF are not stationary).

    Retry ladder (each rung starts afresh from its own guess, so the ladder is deterministic;
    failed rungs are listed in ``handle.info["attempts"]``):

    1. (exact CI) the initial guess (warm, or RHF for a cold start), Newton;
    2. the same guess, PySCF's 1-step solver (``max_cycle`` macro iterations, to |g| 1e-4),
       then Newton (Davidson spaces: ``_polish`` instead of Newton);
    3. the same guess, ``2 * max_cycle`` macro iterations, a smaller orbital step
       (``max_stepsize = 0.01``) and an augmented-Hessian level shift of 1e-3, then Newton;
    4. (warm starts only) a cold start from a fresh RHF, ``2 * max_cycle`` macro iterations,
       then Newton;
    5. ``ConvergenceError``.

``overlap(a, b)``
    Exact <Psi_n(a)|Psi_m(b)> between CASSCF states built on different orbitals: the alpha (and
    beta) determinant overlap det(S[core+I, core+J]) is factorised as det(S_cc) det(M[I, J]) with
    the Schur complement M = S_AA - S_Ac S_cc^{-1} S_cA of the core block, and the active part is
    evaluated by ``pyscf.fci.addons.overlap`` with the (non-unitary) orbital overlap M. When the
    core block is ill-conditioned (smallest singular value < 1e-6) the brute-force determinant
    sum ``overlap_bruteforce`` is used instead (exact, slower).

``force(data, rho)``
    Ehrenfest force F_k = -Tr(rho dH/dx_k). ``force="one_solve"`` (default): ONE CP-SA-CASSCF
    Lagrangian solve with a rho-weighted source (see ``_RhoLagrangian``), which equals the sum of
    the N state gradients and N(N-1)/2 NACs term by term because every piece of the Lagrangian is
    linear in its sources. ``force="term_by_term"``: N gradient calls and N(N-1)/2 NAC calls of
    PySCF (``derivatives``), assembled with ``dhdx_from_derivatives``.

States are returned exactly as PySCF gives them; no sign or phase of any state is ever changed.
Analytic derivatives require equal state-averaging weights (a PySCF restriction) and no density
fitting (not implemented here); both raise ``MissingPropertyError``.
"""

from __future__ import annotations

import functools

from dataclasses import dataclass, field
from itertools import product
from typing import Any, Optional, Sequence

import numpy as np
from pyscf import ao2mo, gto, lib, mcscf, scf
from pyscf.fci import addons as fci_addons
from pyscf.fci import cistring, direct_spin1, spin_op
from pyscf.grad import casscf as casscf_grad
from pyscf.grad import sacasscf as sacasscf_grad
from pyscf.mcscf import newton_casscf
from pyscf.nac import sacasscf as nac_sacasscf

from qhd_aimd.electronic.base import ElectronicData, dhdx_from_derivatives, meanfield_force
from qhd_aimd.errors import (ActiveSpaceSwitchError, ConfigError, ConvergenceError,
                             MissingPropertyError)
from qhd_aimd.units import AMU_ME

__all__ = ["CasscfBackend", "CasscfHandle", "overlap_bruteforce", "state_overlap", "build_mol",
           "atom_masses_amu"]

#: smallest singular value of the core-core orbital overlap below which ``overlap`` uses the
#: brute-force determinant sum instead of the Schur complement
CORE_SINGULAR_TOL = 1e-6


# --------------------------------------------------------------------------------------------
# handle
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class CasscfHandle:
    """Everything needed to rebuild one converged SA-CASSCF calculation (picklable).

    Attributes
    ----------
    symbols : tuple of str, element symbols
    coords : (natm, 3) float, bohr
    basis : str
    charge, spin : int (spin = 2S)
    ncore, ncas : int
    nelecas : (int, int) active alpha and beta electrons
    mo_coeff : (nao, nmo) float, converged SA-CASSCF orbitals
    ci : tuple of N (na, nb) arrays, CI vectors as PySCF returned them
    energies : (N,) float, hartree, ascending
    weights : tuple of N float, state-averaging weights
    info : dict, how this solution was obtained (diagnostics only, never read back by the
        backend): ``path`` (the retry-ladder rung that converged), ``newton_iterations``,
        ``hessian_products``, ``macro_iterations`` (PySCF 1-step), ``scf_cycles``,
        ``initial_gradient`` (|g_orb| of the first guess given to Newton), ``orbital_gradient``
        (final |g_orb|), ``attempts`` (failed rungs), ``extrapolated`` (order of the
        orbital extrapolation, 0 = none), ``active_overlap``
        (warm starts: smallest singular value of the active-orbital overlap with the reference;
        well below 1 when the active space switched character between the two geometries)
    prev_coords : (m, natm, 3) float or None, bohr, geometries of the reference this solution
        was warm-started from and of its own references, newest first (m <=
        ``CasscfBackend.extrapolation_order``)
    prev_orbitals : (m, nao, ncore + ncas) float or None, their core + active orbitals, each in
        its own Loewdin-orthogonalised AO basis (S^{1/2} C). With ``coords`` and ``mo_coeff``
        they let the next step extrapolate the orbital subspaces (``_extrapolate_orbitals``);
        everything the next warm start uses is in this handle, so restarts from a checkpointed
        handle stay reproducible.
    """

    symbols: tuple
    coords: np.ndarray
    basis: str
    charge: int
    spin: int
    ncore: int
    ncas: int
    nelecas: tuple
    mo_coeff: np.ndarray
    ci: tuple
    energies: np.ndarray
    weights: tuple
    info: dict = field(default_factory=dict)
    prev_coords: Optional[np.ndarray] = None
    prev_orbitals: Optional[np.ndarray] = None

    def for_overlaps(self) -> "CasscfHandle":
        """Copy with what ``state_overlap`` reads: core + active orbitals (the virtual ones,
        the warm-start history and ``info`` dropped; C2H4 6-31G* with history: ~21 kB -> ~3 kB).
        This is what the coupled methods exchange between ranks; it is not a warm-start
        reference."""
        nocc = self.ncore + self.ncas
        return CasscfHandle(**{**self.__dict__, "mo_coeff": self.mo_coeff[:, :nocc].copy(),
                               "info": {"for_overlaps": True}, "prev_coords": None,
                               "prev_orbitals": None})

    def with_ci(self, ci: Sequence[np.ndarray]) -> "CasscfHandle":
        """Copy with other CI vectors (gauge tests: e.g. a state multiplied by -1)."""
        return CasscfHandle(**{**self.__dict__, "ci": tuple(np.asarray(c) for c in ci)})

    def mol(self) -> gto.Mole:
        """The ``Mole`` at this geometry (built once per geometry: neighbour overlaps reuse it)."""
        return _cached_mol(tuple(self.symbols), self.coords.tobytes(), self.basis, self.charge, self.spin)


@functools.lru_cache(maxsize=4096)
def _cached_mol(symbols, coords_bytes, basis, charge, spin) -> gto.Mole:
    return build_mol(symbols, np.frombuffer(coords_bytes, float), basis, charge, spin)


def build_mol(symbols, positions_bohr, basis, charge=0, spin=0) -> gto.Mole:
    """PySCF ``Mole`` (no symmetry, silent) at ``positions_bohr`` (D,) in bohr."""
    from qhd_aimd.atoms import check_charge_spin, element_of

    xyz = np.asarray(positions_bohr, float).reshape(-1, 3)
    if len(symbols) != xyz.shape[0]:
        raise ConfigError(f"{len(symbols)} atoms but {xyz.shape[0]} coordinate triples")
    check_charge_spin(symbols, charge, spin)  # a ConfigError naming the key, not PySCF's error
    mol = gto.Mole()
    mol.atom = [(element_of(s), tuple(r)) for s, r in zip(symbols, xyz)]  # D, T -> H
    mol.unit = "Bohr"
    mol.basis = basis
    mol.charge = charge
    mol.spin = spin
    mol.symmetry = False
    mol.verbose = 0
    mol.build()
    return mol


def atom_masses_amu(mol) -> np.ndarray:
    """(natm,) masses of the most abundant isotopes, amu (PySCF's COMMON_ISOTOPE_MASSES;
    PySCF's ``atom_mass_list(isotope_avg=False)`` gives integer mass numbers instead)."""
    from pyscf.data import elements
    return np.array([elements.COMMON_ISOTOPE_MASSES[z] for z in mol.atom_charges()], float)


def _lowdin_reorthonormalize(c: np.ndarray, s: np.ndarray) -> np.ndarray:
    """C (C^T S C)^{-1/2}: orbitals of another geometry made orthonormal in the metric S."""
    m = c.T @ s @ c
    w, v = np.linalg.eigh(m)
    return c @ (v * w**-0.5) @ v.T


def _sym_powers(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S^{1/2}, S^{-1/2}) of a symmetric positive definite matrix."""
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(w)) @ v.T, (v / np.sqrt(w)) @ v.T


def _transport_orbitals(x: np.ndarray, mhalf_new: np.ndarray, s_new: np.ndarray) -> np.ndarray:
    """Orbitals given in the Loewdin-orthogonalised AO basis of the old geometry,
    x = S_old^{1/2} C, carried to the new one: C' = S_new^{-1/2} x (orthonormal in S_new because
    x^T x = 1; a final ``_lowdin_reorthonormalize`` only removes round-off). ``mhalf_new`` is
    S_new^{-1/2}.

    Compared with re-orthonormalising C itself in the new metric, C (C^T S_new C)^{-1/2}, this
    keeps the orbitals' expansion in the *orthogonalised* AOs that move with the atoms; along
    MD steps of 0.03-0.1 bohr it gives a 3x smaller initial SA-CASSCF orbital gradient (measured
    on ethylene, ``benchmarks/bench_warm_start.py``).
    """
    return _lowdin_reorthonormalize(mhalf_new @ x, s_new)


def _orthonormal_block(b: np.ndarray) -> Optional[np.ndarray]:
    """B (B^T B)^{-1/2}, or None when B has lost rank (singular value < 0.5)."""
    if b.shape[1] == 0:
        return b
    w, v = np.linalg.eigh(b.T @ b)
    if w.min() < 0.25:
        return None
    return b @ (v / np.sqrt(w)) @ v.T


def _extrapolate_orbitals(xk: np.ndarray, history: Sequence[np.ndarray], weights: Sequence[float],
                          ncore: int, ncas: int) -> Optional[np.ndarray]:
    """Orbitals for the next step from the last few, in Loewdin-orthogonalised AO bases.

    ``xk`` (nao, nmo) orthonormal orbitals of step k, ``history`` the core and active orbitals
    (nao, ncore + ncas) of steps k-1, k-2, ... (newest first), ``weights`` the extrapolation
    weights of steps k, k-1, ... (``_extrapolation_weights``; (1 + t, -t) is linear). The core
    and active *subspaces* are extrapolated through their projectors, P = sum_j w_j P_{k-j},
    and re-made idempotent (eigenvectors with the largest eigenvalues; the active subspace
    inside the complement of the new core one); each block of ``xk`` is then projected on its
    predicted subspace and orthonormalised. Projectors do not depend on how the orbitals of a
    block are rotated, signed or ordered, so no orbital of one step is matched to one of
    another. Returns None when a block loses rank (then the caller uses ``xk`` unchanged).
    """
    nocc = ncore + ncas
    n = xk.shape[0]
    xs = [xk[:, :nocc]] + [np.asarray(h) for h in history]

    def pred(sl):
        return sum(w * (y[:, sl] @ y[:, sl].T) for w, y in zip(weights, xs))

    def top(p, m):
        if m == 0:
            return np.zeros((n, 0))
        w, v = np.linalg.eigh(0.5 * (p + p.T))
        return v[:, -m:]

    uc = top(pred(slice(0, ncore)), ncore)
    qc = np.eye(n) - uc @ uc.T
    ua = top(qc @ pred(slice(ncore, nocc)) @ qc, ncas)
    pc_new, pa_new = uc @ uc.T, ua @ ua.T
    blocks = [_orthonormal_block(pc_new @ xk[:, :ncore]),
              _orthonormal_block(pa_new @ xk[:, ncore:nocc]),
              _orthonormal_block((np.eye(n) - pc_new - pa_new) @ xk[:, nocc:])]
    if any(b is None for b in blocks):
        return None
    return np.hstack(blocks)


def _smooth_step(d_old: np.ndarray, d_new: np.ndarray) -> bool:
    """Whether step ``d_new`` continues ``d_old`` like consecutive MD steps: d_new ~ t d_old
    with 0 < t <= 1.5 and a perpendicular part below half of |d_new|."""
    nn = float(d_old @ d_old)
    if nn < 1e-16 or not np.any(d_new):
        return False
    t = float(d_new @ d_old) / nn
    return 0.0 < t <= 1.5 and np.linalg.norm(d_new - t * d_old) <= 0.5 * np.linalg.norm(d_new)


def _extrapolation_weights(coords: np.ndarray, history: Optional[np.ndarray],
                           new_coords: np.ndarray, order: int) -> Optional[np.ndarray]:
    """Lagrange weights (of steps k, k-1, ...) predicting step k+1 at ``new_coords``.

    ``coords`` geometry of step k, ``history`` geometries of steps k-1, k-2, ... (newest
    first). The path parameter is the arc length through the geometries; the polynomial uses
    the longest run of recent steps that continue one another smoothly (``_smooth_step``), at
    most ``order`` steps back (1: linear, 3: cubic). None when not even one step back is usable
    (then no extrapolation).
    """
    if history is None or order < 1:
        return None
    pts = [np.asarray(new_coords, float).ravel(), np.asarray(coords, float).ravel()]
    pts += [np.asarray(c, float).ravel() for c in history[:order]]
    steps = [pts[i] - pts[i + 1] for i in range(len(pts) - 1)]  # newest first
    m = 0
    while m + 1 < len(steps) and _smooth_step(steps[m + 1], steps[m]):
        m += 1
    if m == 0:
        return None
    lengths = [float(np.linalg.norm(d)) for d in steps]
    nodes = -np.cumsum([0.0] + lengths[1:m + 1])  # parameters of steps k, k-1, ..., k-m
    w = np.ones(m + 1)
    for j in range(m + 1):
        for i in range(m + 1):
            if i != j:
                w[j] *= (lengths[0] - nodes[i]) / (nodes[j] - nodes[i])
    return w


def _stack(newest: np.ndarray, older: Optional[np.ndarray], n: int) -> Optional[np.ndarray]:
    """History stack (newest first) of at most ``n`` entries: ``newest`` on top of ``older``
    (a stack or None); None when ``n`` is 0."""
    if n < 1:
        return None
    parts = [np.asarray(newest)[None]]
    if older is not None:
        parts.append(np.asarray(older)[:n - 1])
    return np.concatenate(parts)


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


# --------------------------------------------------------------------------------------------
# overlaps
# --------------------------------------------------------------------------------------------
def _refuse_lean(h, what: str):
    if isinstance(h, CasscfHandle) and h.info.get("for_overlaps"):
        raise ValueError(f"a CasscfHandle.for_overlaps() copy (no virtual orbitals) cannot serve "
                         f"as {what}")


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


# --------------------------------------------------------------------------------------------
# combined (rho-weighted) CP-SA-CASSCF Lagrangian
# --------------------------------------------------------------------------------------------
def _combined_rdm12(ci, ncas, nelecas, r):
    """sum_n r_nn D_n + sum_{n<m} 2 r_nm sym(T_nm) for 1- and 2-RDMs (r real symmetric)."""
    n = len(ci)
    d1 = np.zeros((ncas, ncas))
    d2 = np.zeros((ncas,) * 4)
    for i in range(n):
        for j in range(i, n):
            w = r[i, i] if i == j else 2.0 * r[i, j]
            if w == 0.0:
                continue
            if i == j:
                t1, t2 = direct_spin1.make_rdm12(ci[i], ncas, nelecas)
            else:
                # same as pyscf.nac.sacasscf.make_fcasscf_nacs (ket=i, bra=j)
                t1, t2 = direct_spin1.trans_rdm12(ci[j], ci[i], ncas, nelecas)
                t1 = 0.5 * (t1 + t1.T)
                t2 = 0.5 * (t2 + t2.transpose(1, 0, 3, 2))
            d1 += w * t1
            d2 += w * t2
    return d1, d2


class _RhoLagrangian(sacasscf_grad.Gradients):
    """SA-CASSCF Lagrangian whose source is Tr(R dH): one linear solve for the Ehrenfest force.

    With R real symmetric and Tr R = 1, the quantity

        G = sum_n R_nn dE_n/dx + sum_{n<m} 2 R_nm h_nm,   h_nm = <n|dH/dx|m> (PySCF NAC with
                                                               mult_ediff, state=(n, m))

    is obtained exactly like one PySCF state gradient (``lagrange.Gradients.kernel``) with

    * Hamiltonian response: the single-state CASSCF gradient (nuclear repulsion + core + active)
      evaluated with the combined density D = sum R_nn D_n + sum_{n<m} 2 R_nm sym(T_nm) (the
      constant core/nuclear part comes with weight Tr R = 1, exactly as in sum R_nn grad_n and
      as the NACs' ``grad_elec_active`` which has no core part), plus the CSF term
      sum_{n<m} 2 R_nm (E_m - E_n) <n|d m>_CSF from one antisymmetric transition density;
    * wave-function response (Lagrangian source): orbital part = one ``gen_g_hop`` call with D
      (same linearity argument), CI part block k = sum_m R_km g^CI_m, where g^CI_m is the CI
      gradient of root m (gradients put g^CI_n in block n; a NAC (n, m) puts g^CI_n / 2 in
      block m and g^CI_m / 2 in block n);
    * the Hessian, preconditioner and L . dJ/dx are those of PySCF (independent of the source).
    """

    _keys = {"rho_weights"}

    def __init__(self, mc, r):
        self.rho_weights = np.asarray(r, float)
        sacasscf_grad.Gradients.__init__(self, mc, state=0)

    def _patched_fcasscf(self, ci):
        d1, d2 = _combined_rdm12(ci, self.base.ncas, self.base.nelecas, self.rho_weights)
        attr = {
            "make_rdm12": lambda *args, **kwargs: (d1, d2),
            "make_rdm1": lambda *args, **kwargs: d1,
            "make_rdm2": lambda *args, **kwargs: d2,
        }
        return self.make_fcasscf(state=0, fcisolver_attr=attr)

    def get_wfn_response(self, atmlst=None, state=None, verbose=None, mo=None, ci=None, **kwargs):
        if verbose is None:
            verbose = self.verbose
        if mo is None:
            mo = self.base.mo_coeff
        if ci is None:
            ci = self.base.ci
        r = self.rho_weights
        fcasscf = self._patched_fcasscf(ci)
        fcasscf.mo_coeff = mo
        eris = fcasscf.ao2mo(mo)
        g_all = np.zeros(self.nlag)
        gci = []
        for n in range(self.nroots):
            fcasscf.ci = ci[n]
            g = newton_casscf.gen_g_hop(fcasscf, mo, ci[n], eris, verbose)[0]
            if n == 0:
                g_all[: self.ngorb] = g[: self.ngorb]
            gci.append(g[self.ngorb :])
        gci = np.asarray(gci)
        g_all[self.ngorb :] = (r @ gci).ravel()
        return g_all

    def get_ham_response(self, state=None, atmlst=None, verbose=None, mo=None, ci=None,
                         eris=None, mf_grad=None, **kwargs):
        if atmlst is None:
            atmlst = self.atmlst
        if verbose is None:
            verbose = self.verbose
        if mo is None:
            mo = self.base.mo_coeff
        if ci is None:
            ci = self.base.ci
        if mf_grad is None:
            mf_grad = self.base._scf.nuc_grad_method()
        r = self.rho_weights
        fg = casscf_grad.Gradients(self._patched_fcasscf(ci))
        fg._finalize = lambda: None
        de = fg.kernel(mo_coeff=mo, ci=ci[0], atmlst=atmlst, verbose=verbose)
        # CSF term of the NACs, exactly pyscf.nac.sacasscf.nac_csf * (E_bra - E_ket)
        ncore, ncas, nelecas = self.base.ncore, self.base.ncas, self.base.nelecas
        e = np.asarray(self.base.e_states)
        tm = np.zeros((ncas, ncas))
        for i in range(self.nroots):
            for j in range(i + 1, self.nroots):
                if r[i, j] == 0.0:
                    continue
                t = direct_spin1.trans_rdm1(ci[j], ci[i], ncas, nelecas)  # ket=i, bra=j
                tm += 2.0 * r[i, j] * (e[j] - e[i]) * (t.T - t)
        if np.any(tm):
            mo_cas = mo[:, ncore : ncore + ncas]
            de = de + nac_sacasscf._nac_csf(self.mol, mf_grad, mo_cas @ tm @ mo_cas.T, atmlst)
        return de


# --------------------------------------------------------------------------------------------
# backend
def _state_orbital_gradients(mc, mo, ci, eris) -> np.ndarray:
    """(N, n_orb_param) packed orbital gradients of the individual state energies E_I in the
    orbitals ``mo`` (the SA gradient is their weighted sum), from the integrals ``eris`` of
    ``mc.ao2mo(mo)``. The gradient part of PySCF's ``mc1step.gen_g_hop`` per state (its
    Hessian intermediates, ~5x the cost, are not built), g_pq = F_pq - F_qp with the
    generalised Fock matrix F of the state's RDMs, times 2: the normalisation of
    ``newton_casscf.gen_g_hop`` (whose Hessian ``_newton`` uses; ``mc.get_grad`` is half).
    """
    ncore, ncas = mc.ncore, mc.ncas
    nocc = ncore + ncas
    h1e_mo = mo.T @ mc.get_hcore() @ mo
    ppaa, papa = eris.ppaa, eris.papa  # (p q|u v) as [p, q, u, v]; (p u|q v) as [p, u, q, v]
    out = []
    for c in ci:
        dm1, dm2 = direct_spin1.make_rdm12(c, ncas, mc.nelecas)
        vhf_a = (np.einsum("pquv,uv->pq", ppaa, dm1)
                 - 0.5 * np.einsum("puqv,uv->pq", papa, dm1))
        g = np.zeros_like(h1e_mo)
        g[:, :ncore] = 2.0 * (h1e_mo + eris.vhf_c + vhf_a)[:, :ncore]
        g[:, ncore:nocc] = ((h1e_mo + eris.vhf_c)[:, ncore:nocc] @ dm1
                            + np.einsum("puwx,wxuv->pv", ppaa[:, ncore:nocc], dm2))
        out.append(mc.pack_uniq_var(g - g.T))
    return 2.0 * np.array(out)


def _state_energy_error(g_states, weights, h_diag_orb) -> float:
    """Estimated largest error (hartree) of the individual state energies of a nearly converged
    SA-CASSCF, max_I ||D^{-1/2} g_I|| ||D^{-1/2} g||, g = sum_I w_I g_I the SA gradient.

    A state energy E_I is not stationary in the SA orbitals: with the remaining Newton rotation
    kappa ~ -H^{-1} g it changes by g_I . kappa, g_I the orbital gradient of E_I alone
    (``_state_orbital_gradients``; the CI vectors are exact eigenvectors, so their response
    does not enter at first order). The Cauchy-Schwarz bound with the diagonal D = |diag H|
    (floored at 1e-3; it may be the previous iteration's, it changes little) in place of H
    cannot cancel by sign; on ethylene and methaniminium the true error was 0.5-2x this
    estimate (vs a reference converged to 1e-12 Ha), hence the factor 3 margin of the caller.
    """
    d = np.abs(h_diag_orb)
    d[d < 1e-3] = 1e-3
    scaled = g_states / np.sqrt(d)
    return float(np.linalg.norm(scaled, axis=1).max() * np.linalg.norm(weights @ scaled))


class _DerivativeIntegrals:
    """The AO derivative integrals (nabla_x i j|k l) of one geometry, computed once and shared
    by every part of one analytic-gradient evaluation.

    PySCF's SA-CASSCF gradient (``grad.casscf.grad_elec``, ``grad.sacasscf.Lorb_dot_dgorb_dx``,
    ``Lci_dot_dgci_dx``) evaluates the same ``int2e_ip1`` integrals three times, block by
    atom, and three integral-direct derivative J/K builds (``grad.rhf.get_jk``); for ethylene
    6-31G* that is ~80 % of the force. Inside ``with _DerivativeIntegrals(mol, max_mb)`` the
    full (3, nao, nao, nao(nao+1)/2) tensor is computed on first use, ``mol.intor`` serves the
    per-atom ``int2e_ip1`` blocks from it, and ``grad.rhf.get_jk`` for this ``mol`` contracts
    it (J = ((-nabla i) j|kl) D_lk, K = ((-nabla i) j|kl) D_jk, PySCF's convention). Results
    equal PySCF's to round-off (tested). Used only when the tensor fits in ``max_mb``
    megabytes; otherwise (and for any other molecule or integral) PySCF's own path runs.
    """

    def __init__(self, mol, max_mb: float):
        self.mol = mol
        nao = mol.nao_nr()
        self.enabled = 3 * nao * nao * nao * (nao + 1) / 2 * 8 / 1e6 <= max_mb
        self._eri1 = None

    def eri1(self):
        if self._eri1 is None:
            self._eri1 = self._intor0("int2e_ip1", comp=3, aosym="s2kl")
        return self._eri1

    def __enter__(self):
        if not self.enabled:
            return self
        from pyscf.grad import rhf as rhf_grad
        self._rhf_grad, self._get_jk0 = rhf_grad, rhf_grad.get_jk
        self._intor0 = self.mol.intor
        self.mol.intor = self._intor
        rhf_grad.get_jk = self._get_jk
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._rhf_grad.get_jk = self._get_jk0
            del self.mol.intor  # the instance attribute; the class method shows again
        return False

    def _intor(self, intor, comp=None, hermi=0, aosym="s1", out=None, shls_slice=None,
               grids=None):
        nbas = self.mol.nbas
        if (intor == "int2e_ip1" and comp == 3 and aosym == "s2kl" and out is None
                and shls_slice is not None and tuple(shls_slice[2:]) == (0, nbas) * 3):
            loc = self.mol.ao_loc_nr()
            return self.eri1()[:, loc[shls_slice[0]]:loc[shls_slice[1]]].copy()
        return self._intor0(intor, comp=comp, hermi=hermi, aosym=aosym, out=out,
                            shls_slice=shls_slice, grids=grids)

    def _get_jk(self, mol, dm):
        if mol is not self.mol:
            return self._get_jk0(mol, dm)
        dms = np.asarray(dm)
        single = dms.ndim == 2
        dms = dms.reshape(-1, mol.nao_nr(), mol.nao_nr())
        eri1 = self.eri1()
        nao = dms.shape[-1]
        vj = np.empty((len(dms), 3, nao, nao))
        vk = np.empty((len(dms), 3, nao, nao))
        for n, d in enumerate(dms):
            dsym = d + d.T
            dsym[np.diag_indices(nao)] *= 0.5
            vj[n] = -np.einsum("xijp,p->xij", eri1, lib.pack_tril(dsym))
        for i0 in range(0, nao, 8):  # K needs the (k, l) pair unpacked: a few rows at a time
            blk = lib.unpack_tril(eri1[:, i0:i0 + 8].reshape(-1, eri1.shape[-1]))
            blk = blk.reshape(3, -1, nao, nao, nao)
            vk[:, :, i0:i0 + 8] = -np.einsum("xijkl,njk->nxil", blk, dms)
        if single:
            return vj[0], vk[0]
        return vj, vk


# --------------------------------------------------------------------------------------------
@dataclass
class CasscfBackend:
    """SA-CASSCF electronic backend (see module docstring).

    Parameters
    ----------
    symbols : sequence of str, element symbols (fixed for the run)
    basis : str, PySCF basis name
    ncas : int, active orbitals
    nelecas : int, active electrons
    n_states : int, number of averaged (and propagated) states
    charge, spin : int, molecular charge and 2S
    weights : sequence of float or None (equal)
    density_fit : bool, density-fitted SA-CASSCF (energies/overlaps only; no analytic forces)
    conv_tol : float, hartree; conv_tol_grad : float; max_cycle : int (macro iterations)
    force_mode : "one_solve" | "term_by_term"
    lagrange_tol : float, relative tolerance of the CP-MCSCF conjugate-gradient solve
    lagrange_max_cycle : int
    ci_tol : float, residual norm ||H c - E c|| of the final CI diagonalisation (Davidson path)
    n_polish : int, polish rounds of the Davidson path (``_polish``)
    exact_ci_max_det : int, active spaces with at most this many determinants use the exact
        spin-pure CI solver (``_ExactCI``) and the Newton solver (``_newton``); larger ones PySCF's
        Davidson + 1-step CASSCF + ``_polish``
    newton_max_cycle : int, Newton iterations per attempt (also capped by ``max_cycle``)
    newton_max_step : float, trust radius: largest norm of one orbital rotation step
    extrapolation_order : int, warm starts extrapolate the orbital subspaces from the reference
        and up to this many of its predecessors (``CasscfHandle.prev_orbitals``) by a polynomial
        in the path's arc length (3: cubic; 0: no extrapolation, orbitals only transported)
    derivative_integrals_max_mb : float, forces and derivatives compute the AO derivative
        integrals once and share them between PySCF's gradient terms when they fit in this
        many megabytes (``_DerivativeIntegrals``; 3 nao^3 (nao+1) / 2 doubles: 21 MB for
        ethylene 6-31G*, 1 GB at nao ~ 95); above, PySCF's integral-direct path (0: always)
    active_switch : "continue" | "stop", warm starts whose converged active orbitals overlap the
        reference's by less than ``active_overlap_min`` (smallest singular value) are an
        active-space switch, a discontinuity of the SA-CASSCF potential (e.g. pi* -> sigma*(CH)
        in ethylene CAS(2,2), where the old solution ceases to exist): "continue" records it in
        ``handle.info["active_switch"]``, "stop" raises ``ActiveSpaceSwitchError`` (the
        trajectory is then stopped and listed as failed)
    active_overlap_min : float, threshold of the switch test (ethylene SA2-CAS(2,2), 0.25 fs
        steps: >= 0.996 on smooth steps, 0.97-0.99 just before a switch, 0.64-0.96 at switches;
        docs/validation/ethylene_s1.md)
    masses_amu : (natm,) float or None, nuclear masses (``molecule.masses_amu``); None: the
        symbol's isotope (D, T) or the most abundant one (``qhd_aimd.atoms.masses_amu``)
    active_orbitals : sequence of ncas int or None, 1-based indices of the RHF orbitals (in
        PySCF's ``mcscf.sort_mo`` convention, ``base=1``) that form the active space of every
        cold start (the first point; fallback rungs); warm starts carry the reference's orbitals.
        None: PySCF's default (the ncas orbitals around the HOMO/LUMO). E.g. LiF CAS(2,2):
        [4, 7] picks the F 2p-sigma and the Li 2s-like orbital instead of the F 2p-pi HOMO
    """

    symbols: Sequence[str]
    basis: str = "6-31g*"
    ncas: int = 2
    nelecas: int = 2
    n_states: int = 2
    charge: int = 0
    spin: int = 0
    weights: Optional[Sequence[float]] = None
    density_fit: bool = False
    conv_tol: float = 1e-8
    conv_tol_grad: float = 1e-6
    max_cycle: int = 100
    force_mode: str = "one_solve"
    lagrange_tol: float = 1e-10
    lagrange_max_cycle: int = 200
    ci_tol: float = 1e-9
    n_polish: int = 3
    exact_ci_max_det: int = 2000
    newton_max_cycle: int = 12
    newton_max_step: float = 0.3
    extrapolation_order: int = 3
    derivative_integrals_max_mb: float = 1000.0
    active_switch: str = "continue"
    active_overlap_min: float = 0.98
    masses_amu: Optional[Sequence[float]] = None
    active_orbitals: Optional[Sequence[int]] = None
    masses: np.ndarray = field(init=False, repr=False)
    labels: list = field(init=False, repr=False)

    def __post_init__(self):
        self.symbols = tuple(str(s) for s in self.symbols)
        if self.active_switch not in ("continue", "stop"):
            raise ConfigError(f"active_switch must be continue or stop, not {self.active_switch!r}")
        if self.force_mode not in ("one_solve", "term_by_term"):
            raise ConfigError(f"force must be one_solve or term_by_term, not {self.force_mode!r}")
        if self.weights is None:
            self.weights = tuple([1.0 / self.n_states] * self.n_states)
        self.weights = tuple(float(w) for w in self.weights)
        if len(self.weights) != self.n_states:
            raise ConfigError("weights must have n_states entries")
        # probe molecule: masses (isotopes: qhd_aimd.atoms, amu -> m_e), labels, electron count
        from qhd_aimd.atoms import check_charge_spin, masses_amu
        check_charge_spin(self.symbols, self.charge, self.spin, self.nelecas)
        probe = build_mol(self.symbols, np.arange(3 * len(self.symbols), dtype=float) * 1.7,
                          self.basis, self.charge, self.spin)
        self.masses = np.repeat(masses_amu(self.symbols, self.masses_amu) * AMU_ME, 3)
        counts: dict[str, int] = {}
        labels = []
        for s in self.symbols:
            counts[s] = counts.get(s, 0) + 1
            labels += [f"{s}{counts[s]}.{c}" for c in "xyz"]
        self.labels = labels
        nel = probe.nelectron
        if self.nelecas > nel or (nel - self.nelecas) % 2:
            raise ConfigError(f"active space: {self.nelecas} active electrons incompatible with "
                              f"{nel} electrons (core must be closed-shell)")
        if (self.nelecas - self.spin) % 2 or self.spin > self.nelecas:
            raise ConfigError(f"active space: {self.nelecas} electrons cannot have 2S={self.spin}")
        self.ncore = (nel - self.nelecas) // 2
        if self.ncore + self.ncas > probe.nao_nr():
            raise ConfigError("active space larger than the basis")
        if self.active_orbitals is not None:
            ao = tuple(int(i) for i in self.active_orbitals)
            if len(ao) != self.ncas or len(set(ao)) != len(ao):
                raise ConfigError(f"electronic.active_orbitals: need {self.ncas} distinct MO "
                                  f"indices, got {list(ao)}")
            if min(ao) < 1 or max(ao) > probe.nao_nr():
                raise ConfigError(f"electronic.active_orbitals: 1-based MO indices must lie in "
                                  f"1..{probe.nao_nr()} (orbitals of {self.basis}), got {list(ao)}")
            self.active_orbitals = ao
        self._nelecas = ((self.nelecas + self.spin) // 2, (self.nelecas - self.spin) // 2)

    # ---- construction from the study config ----
    @classmethod
    def from_config(cls, system, symbols: Sequence[str], **overrides) -> "CasscfBackend":
        """Backend for ``system: SystemSpec`` (molecule + electronic) and element ``symbols``.

        ``system.electronic.active_space`` is read as (active electrons, active orbitals),
        i.e. CAS(n_el, n_orb).
        """
        el = system.electronic
        mol = system.molecule
        if el is None or mol is None:
            raise ConfigError("CasscfBackend needs system.molecule and system.electronic")
        kw = dict(
            basis=el.basis, nelecas=int(el.active_space[0]), ncas=int(el.active_space[1]),
            n_states=el.n_states, charge=mol.charge, spin=mol.spin, weights=el.weights,
            density_fit=el.density_fit, conv_tol=el.conv_tol, conv_tol_grad=el.conv_tol_grad,
            max_cycle=el.max_cycle, force_mode=el.force, active_switch=el.active_switch,
            active_overlap_min=el.active_overlap_min, masses_amu=mol.masses_amu,
            active_orbitals=el.active_orbitals,
        )
        kw.update(overrides)
        return cls(symbols=symbols, **kw)

    # ---- PySCF objects ----
    def _mol(self, positions):
        return build_mol(self.symbols, positions, self.basis, self.charge, self.spin)

    def _mf(self, mol):
        mf = scf.RHF(mol)
        mf.verbose = 0
        if self.density_fit:
            mf = mf.density_fit()
        # one-electron Hamiltonian computed once per geometry (PySCF's CASSCF asks for it at
        # every CASCI, gradient and canonicalisation)
        hcore = mf.get_hcore(mol)
        mf.get_hcore = lambda *args, **kwargs: hcore
        return mf

    @property
    def exact_ci(self) -> bool:
        """Whether the active space is small enough for ``_ExactCI`` (and ``_newton``)."""
        na = cistring.num_strings(self.ncas, self._nelecas[0])
        nb = cistring.num_strings(self.ncas, self._nelecas[1])
        return na * nb <= self.exact_ci_max_det

    def _mc(self, mf):
        mc = mcscf.CASSCF(mf, self.ncas, self._nelecas)
        if self.exact_ci:
            lib.set_class(mc.fcisolver, (_ExactCI, type(mc.fcisolver)))
            mc.fcisolver.exact_max_det = self.exact_ci_max_det
        ss = 0.5 * self.spin * (0.5 * self.spin + 1.0)
        mc = mc.fix_spin_(ss=ss).state_average_(list(self.weights))
        mc.fcisolver.nroots = self.n_states
        mc.conv_tol = self.conv_tol
        mc.conv_tol_grad = self.conv_tol_grad
        mc.max_cycle_macro = self.max_cycle
        mc.verbose = 0
        return mc

    def _usable_reference(self, reference) -> bool:
        if reference is None:
            return False
        h = reference.handle
        _refuse_lean(h, "a warm-start reference")
        return (isinstance(h, CasscfHandle) and h.symbols == self.symbols and h.basis == self.basis
                and (h.ncore, h.ncas, tuple(h.nelecas)) == (self.ncore, self.ncas, self._nelecas)
                and len(h.ci) == self.n_states and h.charge == self.charge and h.spin == self.spin)

    # ---- protocol ----
    def compute(self, positions, reference: ElectronicData | None = None) -> ElectronicData:
        """SA-CASSCF energies (N,) hartree and handle at ``positions`` (D,) bohr.

        Raises ``ConvergenceError`` when the retry ladder (module docstring) is exhausted.
        """
        x = np.asarray(positions, float).copy()
        if x.shape != (3 * len(self.symbols),):
            raise ValueError(f"positions must have shape ({3 * len(self.symbols)},), got {x.shape}")
        mol = self._mol(x)
        warm = self._usable_reference(reference)
        newton = self.exact_ci
        # rungs: (name, guess, first solver, macro-cycle multiplier, damped)
        rungs = []
        history = (None, None)
        w = x_guess = None
        if warm:
            h = reference.handle
            s_new = mol.intor_symmetric("int1e_ovlp")
            half_ref, _ = _sym_powers(h.mol().intor_symmetric("int1e_ovlp"))
            half_new, mhalf_new = _sym_powers(s_new)
            x_ref = half_ref @ h.mo_coeff  # orthonormal, Loewdin-orthogonalised AO basis
            nocc = self.ncore + self.ncas
            # this solution's history: the reference's geometry and orbitals, then its own
            n = self.extrapolation_order
            history = (_stack(h.coords, h.prev_coords, n),
                       _stack(x_ref[:, :nocc], h.prev_orbitals, n))
            w = (_extrapolation_weights(h.coords, h.prev_coords, x, self.extrapolation_order)
                 if h.prev_orbitals is not None else None)
            if w is not None:
                x_guess = _extrapolate_orbitals(x_ref, h.prev_orbitals, w, self.ncore, self.ncas)
            mo_warm = _transport_orbitals(x_ref if x_guess is None else x_guess, mhalf_new, s_new)
            ci_warm = [np.array(c) for c in h.ci]
            if newton:
                rungs.append(("warm start, Newton", "warm", "newton", 1, False))
            rungs += [("warm start, 1-step", "warm", "1step", 1, False),
                      ("warm start, damped 1-step", "warm", "1step", 2, True),
                      ("cold start from RHF, 1-step", "cold", "1step", 2, False)]
        else:
            if newton:
                rungs.append(("cold start from RHF, Newton", "cold", "newton", 1, False))
            rungs += [("cold start from RHF, 1-step", "cold", "1step", 1, False),
                      ("cold start from RHF, damped 1-step", "cold", "1step", 2, True)]
        info = {"path": None, "newton_iterations": 0, "hessian_products": 0,
                "macro_iterations": 0, "scf_cycles": 0, "initial_gradient": None,
                "orbital_gradient": None, "attempts": []}
        cold = eri = None
        for name, kind, first, cyc, damped in rungs:
            mf = self._mf(mol)
            if eri is not None:
                mf._eri = eri  # AO integrals of this geometry, computed by an earlier rung
            if kind == "warm":
                mo0, ci0 = mo_warm, ci_warm
            else:
                if cold is None:
                    mf.kernel()
                    info["scf_cycles"] += int(getattr(mf, "cycles", 0))
                    cold = (mf.mo_coeff, mf.mo_occ, mf.mo_energy, mf.e_tot, mf.converged)
                mf.mo_coeff, mf.mo_occ, mf.mo_energy, mf.e_tot, mf.converged = cold
                mo0, ci0 = cold[0], None
            mc = self._mc(mf)
            if kind == "cold" and self.active_orbitals is not None:
                mo0 = mcscf.sort_mo(mc, mo0, list(self.active_orbitals), base=1)
            mc.max_cycle_macro = self.max_cycle * cyc
            if damped:
                mc.max_stepsize = 0.01
                mc.ah_level_shift = 1e-3
            if first == "newton":
                ok, why = self._newton(mc, mo0, ci0, info)
            elif newton:
                # PySCF's 1-step solver to a loose gradient, then Newton to the tolerance
                mc.conv_tol = max(self.conv_tol, 1e-7)
                mc.conv_tol_grad = max(self.conv_tol_grad, 1e-4)
                self._run(mc, mo0, ci0, info)
                ok, why = self._newton(mc, mc.mo_coeff, mc.ci, info)
            else:
                self._run(mc, mo0, ci0, info)
                ok, why = self._polish(mc)
            eri = getattr(mf, "_eri", None)
            if ok:
                info["path"] = name
                info["extrapolated"] = 0 if x_guess is None else len(w) - 1
                if warm:
                    # smallest singular value of the active-orbital overlap with the reference
                    # (Loewdin AO bases): ~1 along smooth MD steps, << 1 when the converged
                    # active space changed character (e.g. pi* -> sigma*(CH) in CAS(2,2))
                    act = slice(self.ncore, self.ncore + self.ncas)
                    m = x_ref[:, act].T @ (half_new @ np.asarray(mc.mo_coeff)[:, act])
                    info["active_overlap"] = float(np.linalg.svd(m, compute_uv=False).min())
                    info["active_switch"] = info["active_overlap"] < self.active_overlap_min
                    if info["active_switch"] and self.active_switch == "stop":
                        raise ActiveSpaceSwitchError(
                            f"SA-CASSCF({self.nelecas}e,{self.ncas}o) active space switched "
                            f"character: active-orbital overlap with the previous step "
                            f"{info['active_overlap']:.4f} < {self.active_overlap_min}; energies "
                            f"{np.array2string(np.asarray(h.energies), precision=6)} -> "
                            f"{np.array2string(np.sort(mc.e_states), precision=6)} hartree")
                return self._pack(x, mol, mc, info, history)
            info["attempts"].append(f"{name} (max_cycle={mc.max_cycle_macro}): {why}")
        raise ConvergenceError(
            f"SA-CASSCF({self.nelecas}e,{self.ncas}o)/{self.basis}, {self.n_states} states, did "
            f"not converge at positions (bohr) {np.array2string(x, precision=4)}; tried: "
            + "; ".join(info["attempts"]))

    def _newton(self, mc, mo, ci, info) -> tuple[bool, str]:
        """Second-order SA-CASSCF: Newton steps on the orbitals with exact CI at every step.

        Every iteration: integrals for the current orbitals, exact spin-pure CI (``_ExactCI``),
        the coupled orbital-CI gradient and Hessian-vector product of PySCF
        (``newton_casscf.gen_g_hop``), and a projected preconditioned conjugate-gradient solve of
        H x = -g in which the CI directions are restricted to the spin-pure complement of the
        averaged states. For equal weights this is the exact Hessian of the CI-relaxed SA energy
        (rotations among the averaged states cancel pairwise), so convergence is quadratic. The
        orbital step is capped at ``newton_max_step`` and halved (at most 3 times) when the SA
        energy rises; negative curvature met by the CG gives up the attempt.

        Converged when the SA orbital gradient is below ``conv_tol_grad`` and the estimated
        remaining error of every *state* energy (``_state_energy_error``) is below
        ``conv_tol / 3``: state energies are not stationary, they carry an error of first order
        in the remaining orbital rotation. On success ``mc`` holds canonicalised orbitals, exact
        CI vectors and the energies.
        """
        fs = mc.fcisolver
        max_iter = min(self.newton_max_cycle, self.max_cycle)
        ss = 0.5 * self.spin * (0.5 * self.spin + 1.0)
        q = _spin_basis(self.ncas, tuple(self._nelecas), float(ss))
        weights = np.asarray(self.weights, float)
        e_prev = mo_prev = x_prev = h_diag = None
        de_left = np.inf
        gnorm, shrink, it = np.inf, 0, 0
        # CI directions are projected on the spin-pure subspace, where the spin penalty of
        # fix_spin_ vanishes: use the bare (cheaper) sigma vector in the Hessian products
        with lib.temporary_env(fs, contract_2e=fs.base_contract_2e):
            while True:
                mc.mo_coeff = mo
                eris = mc.ao2mo(mo)
                e_tot, _, ci = mc.casci(mo, ci, eris)
                ci = [np.asarray(c) for c in ci]
                e_states = np.asarray(fs.e_states, float)
                if e_prev is not None and e_tot > e_prev + 1e-10 * max(1.0, abs(e_prev)):
                    # the step raised the SA energy: halve it from the previous orbitals
                    shrink += 1
                    if shrink > 3:
                        return False, f"Newton: SA energy rises (|g_orb| {gnorm:.2e})"
                    x_prev = 0.5 * x_prev
                    mo = mc.rotate_mo(mo_prev, mc.update_rotate_matrix(x_prev))
                    continue
                shrink = 0
                # gradients first; the Hessian operator (5x the cost) only if a step follows
                g_states = _state_orbital_gradients(mc, mo, ci, eris)
                ngorb = g_states.shape[1]
                gnorm = float(np.linalg.norm(weights @ g_states))
                if info.get("initial_gradient") is None:
                    info["initial_gradient"] = gnorm
                have_hop = False
                if gnorm < self.conv_tol_grad and h_diag is None:
                    g, _, h_op, h_diag = newton_casscf.gen_g_hop(mc, mo, ci, eris)
                    have_hop = True
                # (energies below ~1e-12 relative are round-off)
                e_tol = max(self.conv_tol, 1e-12 * float(np.abs(e_states).max()))
                if gnorm < self.conv_tol_grad:
                    de_left = _state_energy_error(g_states, weights, h_diag[:ngorb])
                if gnorm < self.conv_tol_grad and 3.0 * de_left < e_tol:
                    mo, _, mo_energy = mc.canonicalize(mo, ci, eris, sort=False,
                                                       cas_natorb=False, verbose=0)
                    mc.mo_coeff, mc.ci, mc.mo_energy = mo, ci, mo_energy
                    mc.e_tot, mc.converged = e_tot, True
                    info["orbital_gradient"] = gnorm
                    return True, ""
                if it >= max_iter:
                    return False, (f"Newton: {it} iterations, |g_orb| {gnorm:.2e}, "
                                   f"state energy error {de_left:.2e}")
                if not have_hop:
                    g, _, h_op, h_diag = newton_casscf.gen_g_hop(mc, mo, ci, eris)
                it += 1
                info["newton_iterations"] += 1
                x, nhop, why = self._newton_step(g, h_op, h_diag, ngorb, ci, q, gnorm,
                                                 self.conv_tol_grad)
                info["hessian_products"] += nhop
                if x is None:
                    return False, f"Newton: {why} (|g_orb| {gnorm:.2e})"
                nx = np.linalg.norm(x)
                if nx > self.newton_max_step:
                    x *= self.newton_max_step / nx
                e_prev, mo_prev, x_prev = e_tot, mo, x
                mo = mc.rotate_mo(mo, mc.update_rotate_matrix(x))

    @staticmethod
    def _newton_step(g, h_op, h_diag, ngorb, ci, q, gnorm, gtol, max_cg=100):
        """Projected preconditioned CG for H x = -g; returns (orbital part of x, products, why)."""
        c = np.array([np.ravel(v) for v in ci]).T          # (n_det, N) averaged states
        qc = q.T @ c                                       # the states lie in span(q)

        def proj(v):
            v = v.copy()
            off = ngorb
            for _ in ci:
                seg = v[off:off + c.shape[0]]
                # spin-pure complement of the averaged states: Q Q^T - C C^T
                seg[:] = q @ (q.T @ seg) - c @ (qc.T @ (q.T @ seg))
                off += c.shape[0]
            return v

        d = np.abs(h_diag)
        d[d < 1e-3] = 1e-3
        b = -proj(g)
        b[ngorb:] = 0.0  # the CI gradient of exact roots is zero (round-off only)
        bn = np.linalg.norm(b)
        # inexact Newton, CG residual aimed at the next gradient, ~ 0.5 |g|^2 + rtol |g|
        # (constant 0.5-0.75 measured on ethylene/methaniminium): while the |g|^2 term keeps it
        # above ~0.05 gtol, rtol = |g| (quadratic convergence, no wasted products); below, solve
        # to a residual 0.01 gtol, so that one more step converges the state energies too (a
        # warm start with an extrapolated guess, |g| ~ 2e-4, needs one iteration:
        # bench_warm_start)
        if gnorm > np.sqrt(0.1 * gtol):
            rtol = min(1e-2, gnorm)
        else:
            rtol = min(1e-2, 0.01 * gtol / max(gnorm, 1e-300))
        x = np.zeros_like(b)
        r = b.copy()
        z = proj(r / d)
        p = z.copy()
        rz = r @ z
        n = 0
        for n in range(1, max_cg + 1):
            hp = proj(h_op(p))
            php = p @ hp
            if not php > 0:
                if n == 1:
                    return None, n, "negative curvature along the gradient"
                break
            a = rz / php
            x += a * p
            r -= a * hp
            if np.linalg.norm(r) < rtol * bn:
                break
            z = proj(r / d)
            rz_new = r @ z
            p = z + (rz_new / rz) * p
            rz = rz_new
        return x[:ngorb], n, ""

    def _run(self, mc, mo0, ci0, info=None):
        """``mc.kernel`` that stops early when PySCF stalls at a converged energy with an
        orbital gradient just above ``conv_tol_grad`` (see ``_polish``)."""
        conv_tol, gtol = mc.conv_tol, mc.conv_tol_grad

        class _Stalled(Exception):
            pass

        seen = [0]

        def callback(envs):
            seen[0] = max(seen[0], int(envs.get("imacro", 0)))
            if (envs.get("imacro", 0) >= 2 and abs(envs.get("de", 1.0)) < conv_tol
                    and envs.get("norm_gorb0", 1.0) < 100 * gtol and "mo" in envs):
                raise _Stalled(envs["mo"], envs["fcivec"])

        mc.callback = callback
        try:
            mc.kernel(mo0, ci0)
        except _Stalled as exc:
            mc.mo_coeff, mc.ci = exc.args[0], [np.asarray(c) for c in exc.args[1]]
            mc.converged = False
        finally:
            mc.callback = None
            if info is not None:
                info["macro_iterations"] += seen[0]

    def _orbital_gradient_norm(self, mc) -> float:
        casdm1, casdm2 = mc.fcisolver.make_rdm12(mc.ci, mc.ncas, mc.nelecas)
        return float(np.linalg.norm(mc.get_grad(mc.mo_coeff, (casdm1, casdm2))))

    def _polish(self, mc) -> tuple[bool, str]:
        """Decide convergence ourselves, with exact CI eigenvectors.

        PySCF's Davidson stops at |r| ~ 1e-7 (linear dependence in its subspace), so
        ``mc.kernel`` optimises the SA orbitals for a slightly wrong CI space: the orbital
        gradient can stall around 1e-6 (``mc.converged`` False forever) and individual state
        energies carry ~1e-9 Ha errors proportional to a warm-start displacement. Here: make the
        CI vectors exact (``_final_ci``), measure the SA orbital gradient, and if it is above
        ``conv_tol_grad`` but below ``100 conv_tol_grad`` (a stall, not a genuinely unconverged
        run) restart ``mc.kernel`` from the exact CI for 2 macro iterations, at most ``n_polish``
        times. Converged = exact CI, orbital gradient < ``conv_tol_grad`` and state energies
        changed by < ``conv_tol`` in the last round, or the orbital gradient below
        ``conv_tol_grad`` right after the CI refinement (no polish round needed).
        """
        if not self._final_ci(mc):
            return False, "CI refinement failed"
        gnorm = self._orbital_gradient_norm(mc)
        if gnorm < self.conv_tol_grad:  # exact CI + converged orbitals: energies good to O(g^2)
            return True, ""
        if gnorm > 100 * self.conv_tol_grad:
            return False, f"orbital gradient {gnorm:.2e}"
        for _ in range(self.n_polish):
            e_old = np.array(mc.e_states)
            with lib.temporary_env(mc, max_cycle_macro=2):
                mc.kernel(mc.mo_coeff, mc.ci)
            if not self._final_ci(mc):
                return False, "CI refinement failed"
            gnorm = self._orbital_gradient_norm(mc)
            de = np.abs(np.array(mc.e_states) - e_old).max()
            if (gnorm < self.conv_tol_grad and de < self.conv_tol) or (
                    gnorm < 10 * self.conv_tol_grad and de < 0.1 * self.conv_tol):
                # second case: a stall (PySCF cannot push the SA orbital gradient lower) with
                # state energies stationary to 10 % of conv_tol
                return True, ""
        return False, f"polish: orbital gradient {gnorm:.2e}, energy change {de:.2e}"

    def _final_ci(self, mc) -> bool:
        """Make the CI vectors exact eigenvectors of the active Hamiltonian (converged orbitals).

        With equal weights the SA energy is invariant to rotations *within* the averaged CI
        space, so ``mc.converged`` says nothing about that rotation: after a warm start the CI
        vectors can stay (nearly) frozen at the reference's, and PySCF's Davidson cannot push
        the residual below ~1e-7. The states must be eigenvectors (this is also what the
        analytic gradient/NAC theory assumes), so we refine them by a block-Krylov Rayleigh-Ritz
        iteration with the spin-free active Hamiltonian (spin-pure: the Krylov space of singlet
        vectors stays singlet) until every residual ||H c - E c|| < ``ci_tol``.
        Returns whether that converged. Sets ``mc.ci`` and the state energies.
        """
        mo = mc.mo_coeff
        h1, ecore = mc.get_h1eff(mo)
        h2 = mc.get_h2eff(mo)
        ncas, nelecas = mc.ncas, mc.nelecas
        h2e = direct_spin1.absorb_h1e(h1, h2, ncas, nelecas, 0.5)
        shape = np.asarray(mc.ci[0]).shape
        e, ci, ok = _krylov_refine(
            lambda c: direct_spin1.contract_2e(h2e, c.reshape(shape), ncas, nelecas).ravel(),
            [np.asarray(c).ravel() for c in mc.ci], self.ci_tol)
        mc.ci = [c.reshape(shape) for c in ci]
        mc.fcisolver.e_states = list(e + ecore)
        mc.e_tot = float(np.dot(self.weights, e + ecore))
        return ok

    def _pack(self, x, mol, mc, info=None, history=(None, None)) -> ElectronicData:
        e = np.asarray(mc.e_states, float)
        ci = [np.asarray(c) for c in mc.ci]
        order = np.argsort(e, kind="stable")  # a permutation of states, never a sign change
        e = e[order]
        ci = tuple(ci[i] for i in order)
        handle = CasscfHandle(
            symbols=self.symbols, coords=x.reshape(-1, 3).copy(), basis=self.basis,
            charge=self.charge, spin=self.spin, ncore=self.ncore, ncas=self.ncas,
            nelecas=self._nelecas, mo_coeff=np.asarray(mc.mo_coeff).copy(), ci=ci,
            energies=e.copy(), weights=tuple(self.weights[i] for i in order),
            info=dict(info or {}), prev_coords=history[0], prev_orbitals=history[1])
        return ElectronicData(positions=x, energies=e, handle=handle, dhdx=None)

    def overlap(self, a: ElectronicData, b: ElectronicData) -> np.ndarray:
        """(N, N) complex <u_n(a)|u_m(b)> (real-valued for SA-CASSCF)."""
        return state_overlap(a.handle, b.handle).astype(complex)

    # ---- derivatives ----
    def rebuild(self, data_or_handle) -> Any:
        """Converged PySCF SA-CASSCF object (orbitals, CI, energies) rebuilt from a handle."""
        h = getattr(data_or_handle, "handle", data_or_handle)
        _refuse_lean(h, "derivatives")
        self._check_derivatives()
        mol = h.mol()
        mf = self._mf(mol)
        mc = mcscf.CASSCF(mf, h.ncas, h.nelecas)
        ss = 0.5 * h.spin * (0.5 * h.spin + 1.0)
        mc = mc.fix_spin_(ss=ss).state_average_(list(h.weights))
        mc.verbose = 0
        mc.mo_coeff = np.array(h.mo_coeff)
        mc.ci = [np.array(c) for c in h.ci]
        mc.fcisolver.e_states = list(np.asarray(h.energies, float))
        mc.e_tot = float(np.dot(h.weights, h.energies))
        mc.converged = True
        return mc

    def _check_derivatives(self):
        if self.density_fit:
            raise MissingPropertyError("analytic SA-CASSCF forces with density fitting are not "
                                       "implemented; set electronic.density_fit: false")
        if max(self.weights) - min(self.weights) > 1e-12:
            raise MissingPropertyError("PySCF SA-CASSCF analytic gradients need equal weights")

    def _tune(self, g):
        g.verbose = 0
        g.conv_rtol = self.lagrange_tol
        g.conv_atol = 1e-14
        g.max_cycle = self.lagrange_max_cycle
        return g

    def _check_lagrange(self, g, what):
        if not g._conv:
            raise ConvergenceError(f"CP-SA-CASSCF Lagrange equations for {what} did not converge "
                                   f"in {g.max_cycle} iterations (rtol {g.conv_rtol})")

    def derivatives(self, data: ElectronicData):
        """Term-by-term analytic derivatives.

        Returns
        -------
        gradients : (N, D) hartree/bohr, dE_n/dx_k
        couplings : (N, N, D) 1/bohr, d^k_nm = <u_n|d_k u_m> (including the CSF term, i.e. the
            exact derivative of the CASSCF state; antisymmetric)
        """
        mc = self.rebuild(data)
        n, d = self.n_states, 3 * len(self.symbols)
        grads = np.zeros((n, d))
        couplings = np.zeros((n, n, d))
        g = self._tune(mc.nuc_grad_method())
        nac = self._tune(mc.nac_method())
        with _DerivativeIntegrals(mc.mol, self.derivative_integrals_max_mb):
            for i in range(n):
                grads[i] = g.kernel(state=i).ravel()
                self._check_lagrange(g, f"the gradient of state {i}")
            for i in range(n):
                for j in range(i + 1, n):
                    # PySCF returns <u_i|d u_j> for state=(i, j) (its docstring says the
                    # opposite; tests check this against finite differences of the overlaps)
                    v = nac.kernel(state=(i, j), use_etfs=False).ravel()
                    self._check_lagrange(nac, f"the coupling {i}-{j}")
                    couplings[i, j] = v
                    couplings[j, i] = -v
        return grads, couplings

    def state_gradients(self, data: ElectronicData) -> np.ndarray:
        """(N, D) dE_n/dx_k, hartree/bohr: the state gradients of ``derivatives`` without the
        couplings (N response solves instead of N (N + 1) / 2; the adiabatic momenta of the
        coupled methods need only these, ``dynamics.decoherence``)."""
        mc = self.rebuild(data)
        grads = np.zeros((self.n_states, 3 * len(self.symbols)))
        g = self._tune(mc.nuc_grad_method())
        with _DerivativeIntegrals(mc.mol, self.derivative_integrals_max_mb):
            for i in range(self.n_states):
                grads[i] = g.kernel(state=i).ravel()
                self._check_lagrange(g, f"the gradient of state {i}")
        return grads

    def dhdx(self, data: ElectronicData) -> np.ndarray:
        """(D, N, N) <u_n|dH/dx_k|u_m>, hartree/bohr, from ``derivatives``."""
        g, c = self.derivatives(data)
        return dhdx_from_derivatives(data.energies, g, c)

    def force(self, data: ElectronicData, rho: np.ndarray, mode: str | None = None) -> np.ndarray:
        """(D,) Ehrenfest force -Tr(rho dH/dx_k), hartree/bohr.

        ``mode`` overrides the backend's ``force_mode`` ("one_solve" or "term_by_term").
        """
        mode = mode or self.force_mode
        rho = np.asarray(rho)
        if data.dhdx is not None:
            return meanfield_force(data.dhdx, rho)
        if mode == "term_by_term":
            return meanfield_force(self.dhdx(data), rho)
        if mode != "one_solve":
            raise ConfigError(f"unknown force mode {mode!r}")
        # the states are real, so dH_nm is real symmetric and only Re(rho) contributes
        r = np.real(rho)
        r = 0.5 * (r + r.T)
        tr = float(np.trace(r))
        if not tr > 0:
            raise ValueError(f"rho must have positive trace, got {tr}")
        mc = self.rebuild(data)
        lag = self._tune(_RhoLagrangian(mc, r / tr))
        with _DerivativeIntegrals(mc.mol, self.derivative_integrals_max_mb):
            de = lag.kernel(state=0)
        self._check_lagrange(lag, "the rho-weighted force")
        return -tr * np.asarray(de).ravel()
