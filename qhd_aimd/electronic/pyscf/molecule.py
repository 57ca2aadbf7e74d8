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


def sigma_orbitals(mol: gto.Mole, mo_coeff: np.ndarray) -> np.ndarray:
    """(nmo,) bool: which columns of ``mo_coeff`` (nao, nmo) are sigma orbitals of the linear
    molecule ``mol`` (sigma weight c^T S P c > 0.5; it is 0 or 1 to round-off for orbitals of
    pure symmetry, and the orbital rotations of ``electronic.symmetry: sigma`` keep it so)."""
    p = getattr(mol, "_qhd_sigma_projector", None)
    if p is None:
        p = _sigma_projector(mol)
        mol._qhd_sigma_projector = p  # once per geometry (Mole objects are per geometry)
    s = mol.intor_symmetric("int1e_ovlp")
    c = np.asarray(mo_coeff)
    return np.einsum("ai,ab,bi->i", c, s, p @ c) > 0.5


def restrict_to_sigma_rotations(mc) -> None:
    """Restrict the orbital rotations of the PySCF CASSCF object ``mc`` (any solver: PySCF's
    1-step, ``_newton``'s ``gen_g_hop``, the CP-MCSCF Lagrangian all pack their orbital variables
    through ``mc.uniq_var_indices``) to pairs of the same class, sigma-sigma or
    non-sigma--non-sigma, as PySCF's symmetry-adapted CASSCF does for irreps
    (``mc1step_symm``): a sigma orbital never mixes with a pi or delta one. The classes are read
    from ``mc.mo_coeff`` at every call (canonicalisation may reorder orbitals; allowed rotations
    keep every orbital's class)."""
    base = mc.uniq_var_indices

    def uniq_var_indices(nmo, ncore, ncas, frozen):
        mask = base(nmo, ncore, ncas, frozen)
        sig = sigma_orbitals(mc.mol, mc.mo_coeff)
        return mask & (sig[:, None] == sig[None, :])

    mc.uniq_var_indices = uniq_var_indices
