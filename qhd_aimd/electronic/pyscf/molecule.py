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
