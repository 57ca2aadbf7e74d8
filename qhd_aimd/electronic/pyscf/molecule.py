"""PySCF ``Mole`` objects for the SA-CASSCF backend: geometry, basis, charge and spin, masses."""

from __future__ import annotations

import functools

import numpy as np
from pyscf import gto

from qhd_aimd.errors import ConfigError


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


def _sigma_projector(mol: gto.Mole) -> np.ndarray:
    """(nao, nao) S-orthogonal projector P on the AO span of the sigma (m_l = 0, A1 of C_inf_v;
    A1g + A1u of D_inf_h) symmetry-adapted functions of a linear molecule: an MO c is sigma when
    c^T S P c = 1, pi/delta when 0. Uses PySCF's symmetry adaptation of a copy of ``mol`` with
    symmetry on (same geometry and AO basis); ``ConfigError`` when the molecule is not linear."""
    twin = mol.copy()
    twin.symmetry = True
    twin.build()
    if twin.groupname not in ("Coov", "Dooh"):
        raise ConfigError(f"electronic.symmetry: sigma needs a linear molecule; this geometry has "
                          f"point group {twin.groupname}")
    names = ("A1",) if twin.groupname == "Coov" else ("A1g", "A1u")
    c = np.hstack([twin.symm_orb[twin.irrep_name.index(n)] for n in names])
    s = mol.intor_symmetric("int1e_ovlp")
    return c @ np.linalg.solve(c.T @ s @ c, c.T @ s)


def _cached_sigma_projector(mol: gto.Mole) -> np.ndarray:
    p = getattr(mol, "_qhd_sigma_projector", None)
    if p is None:
        p = _sigma_projector(mol)
        mol._qhd_sigma_projector = p  # once per geometry (Mole objects are per geometry)
    return p


def sigma_weights(mol: gto.Mole, mo_coeff: np.ndarray) -> np.ndarray:
    """(nmo,) sigma weight c^T S P c in [0, 1] of every column of ``mo_coeff`` (nao, nmo)."""
    p = _cached_sigma_projector(mol)
    s = mol.intor_symmetric("int1e_ovlp")
    c = np.asarray(mo_coeff)
    return np.einsum("ai,ab,bi->i", c, s, p @ c)


def sigma_orbitals(mol: gto.Mole, mo_coeff: np.ndarray) -> np.ndarray:
    """(nmo,) bool: which columns of ``mo_coeff`` (nao, nmo) are sigma orbitals of the linear
    molecule ``mol`` (sigma weight c^T S P c > 0.5; it is 0 or 1 to round-off for orbitals of
    pure symmetry, e.g. the output of ``sigma_adapt``)."""
    return sigma_weights(mol, mo_coeff) > 0.5


def sigma_adapt(mol: gto.Mole, mo_coeff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal orbitals (nao, nmo) of pure symmetry closest to ``mo_coeff`` (nao, nmo) and
    their classes (nmo,) bool (True: sigma), in the same order.

    The n_sigma = round(sum of sigma weights) orbitals of largest sigma weight are the sigma
    class (so a 50/50 sigma-pi mixture, e.g. of near-degenerate virtuals, still yields the right
    number per class); each class is projected on its symmetry (P c, or (1 - P) c) and
    Loewdin-orthonormalised, which changes orbitals of pure symmetry only by round-off.
    ``ConvergenceError`` when a class's projection is (near-)singular."""
    from qhd_aimd.errors import ConvergenceError
    p = _cached_sigma_projector(mol)
    s = mol.intor_symmetric("int1e_ovlp")
    c = np.asarray(mo_coeff, float)
    w = sigma_weights(mol, c)
    sig = np.zeros(c.shape[1], bool)
    sig[np.argsort(-w, kind="stable")[: int(round(w.sum()))]] = True
    out = c.copy()
    for cls, proj in ((sig, p), (~sig, np.eye(p.shape[0]) - p)):
        if not cls.any():
            continue
        x = proj @ c[:, cls]
        e, v = np.linalg.eigh(x.T @ s @ x)
        if e.min() < 1e-6:
            raise ConvergenceError(f"electronic.symmetry: sigma: the orbitals cannot be "
                                   f"symmetry-adapted (smallest projected norm {e.min():.1e})")
        out[:, cls] = x @ (v / np.sqrt(e)) @ v.T
    return out, sig


def restrict_to_sigma_rotations(mc) -> None:
    """Restrict the orbital rotations of the PySCF CASSCF object ``mc`` (any solver: PySCF's
    1-step, ``_newton``'s ``gen_g_hop``, the CP-MCSCF Lagrangian all pack their orbital variables
    through ``mc.uniq_var_indices``) to pairs of the same class, sigma-sigma or
    non-sigma--non-sigma, as PySCF's symmetry-adapted CASSCF does for irreps
    (``mc1step_symm``): a sigma orbital never mixes with a pi or delta one.

    The classes are fixed per solve: ``mc.qhd_start_solve(mo)`` (the solver calls it on the
    start orbitals of every ``mc.kernel`` and Newton solve) symmetry-adapts the orbitals
    (``sigma_adapt``) and freezes the classes, orbital by orbital, for the whole solve;
    ``ConvergenceError`` when an active start orbital is not sigma (the solver then moves on to
    its next rung, e.g. a cold start from RHF).
    Canonicalisation is blocked by class as in PySCF's symmetry-adapted CASSCF (``mc._eig`` =
    ``casci_symm.eig`` with the classes as ``orbsym``), so it neither mixes nor reorders across
    classes (before this, near-degenerate sigma and pi virtuals could swap or mix, and the
    re-read classes changed the number of orbital variables within one solve). Outside a solve
    (no ``qhd_start_solve`` yet) the classes are read from ``mc.mo_coeff``."""
    from pyscf import lib, scf
    from pyscf.mcscf import casci_symm

    base_uniq = mc.uniq_var_indices
    base_canonicalize = mc.canonicalize
    mc.qhd_sigma_classes = None

    def classes():
        sig = mc.qhd_sigma_classes
        return sigma_orbitals(mc.mol, mc.mo_coeff) if sig is None else sig

    def start_solve(mo):
        from qhd_aimd.errors import ConvergenceError
        mo, sig = sigma_adapt(mc.mol, mo)
        bad = np.flatnonzero(~sig[mc.ncore:mc.ncore + mc.ncas]) + mc.ncore
        if bad.size:
            raise ConvergenceError(f"electronic.symmetry: sigma: start orbital(s) {bad.tolist()} "
                                   "of the active space are not sigma")
        mc.qhd_sigma_classes = sig
        return mo

    def uniq_var_indices(nmo, ncore, ncas, frozen):
        mask = base_uniq(nmo, ncore, ncas, frozen)
        sig = classes()
        return mask & (sig[:, None] == sig[None, :])

    def eig(h, b0=None, b1=None, orbsym=None):
        return scf.hf.eig(h, None) if orbsym is None else casci_symm.eig(h, orbsym)

    def canonicalize(mo_coeff=None, *args, **kwargs):
        mo = mc.mo_coeff if mo_coeff is None else mo_coeff
        sig = classes()
        mo, ci, mo_energy = base_canonicalize(
            lib.tag_array(np.asarray(mo), orbsym=sig.astype(int)), *args, **kwargs)
        if mc.qhd_sigma_classes is not None:  # sort=True reorders the classes with the orbitals
            mc.qhd_sigma_classes = np.asarray(mo.orbsym).astype(bool)
        return np.array(mo), ci, mo_energy

    mc.qhd_start_solve = start_solve
    mc.uniq_var_indices = uniq_var_indices
    mc._eig = eig
    mc.canonicalize = canonicalize  # (not mc.kernel: PySCF's gradient objects copy
    # mc.__dict__ and have their own kernel)
