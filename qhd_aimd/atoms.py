"""Atoms of a molecule: element of each symbol (isotopes D and T), nuclear masses, and the
charge/spin consistency check that runs before PySCF sees the molecule.

Masses (amu): the most abundant isotope of each element (PySCF's ``COMMON_ISOTOPE_MASSES``,
i.e. NIST/AME), D = 2.01410177812 and T = 3.0160492779 (CODATA 2018 / AME2016), or one value per
atom from ``molecule.masses_amu``. They are used for the normal modes (mass-weighted Hessian),
the Wigner sampling and the dynamics (``backend.masses``).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from qhd_aimd.errors import ConfigError

#: isotope symbols accepted in xyz files -> (element, mass in amu)
ISOTOPES = {"D": ("H", 2.01410177812), "T": ("H", 3.0160492779)}


def _elements():
    from pyscf.data import elements  # data tables only (no PySCF calculation)

    return elements


def element_of(symbol: str) -> str:
    """Element symbol PySCF understands for an xyz symbol (``D``, ``T`` -> ``H``)."""
    return ISOTOPES[symbol][0] if symbol in ISOTOPES else symbol


def atomic_numbers(symbols: Sequence[str]) -> np.ndarray:
    """(natm,) nuclear charges; ``ConfigError`` for an unknown symbol."""
    el = _elements()
    out = []
    for s in symbols:
        e = element_of(str(s))
        try:
            out.append(el.charge(e))
        except Exception:
            raise ConfigError(f"molecule.xyz: unknown element symbol {s!r} (isotopes: D, T; "
                              f"other isotopes via molecule.masses_amu)") from None
        if out[-1] <= 0:
            raise ConfigError(f"molecule.xyz: unknown element symbol {s!r}")
    return np.asarray(out, int)


def masses_amu(symbols: Sequence[str], override: Optional[Sequence[float]] = None) -> np.ndarray:
    """(natm,) nuclear masses, amu: ``override`` (``molecule.masses_amu``) when given, else
    the isotope of the symbol (D, T) or the element's most abundant isotope."""
    if override is not None:
        m = np.asarray(override, float)
        if m.shape != (len(symbols),):
            raise ConfigError(f"molecule.masses_amu: {len(m)} masses for {len(symbols)} atoms")
        if np.any(m <= 0):
            raise ConfigError("molecule.masses_amu: masses must be > 0")
        return m
    el = _elements()
    z = atomic_numbers(symbols)
    return np.array([ISOTOPES[s][1] if s in ISOTOPES else el.COMMON_ISOTOPE_MASSES[zi]
                     for s, zi in zip(symbols, z)], float)


def check_charge_spin(symbols: Sequence[str], charge: int, spin: int,
                      active_electrons: Optional[int] = None) -> int:
    """Number of electrons; ``ConfigError`` naming ``molecule.charge`` / ``molecule.spin`` /
    ``electronic.active_space`` when they cannot describe the molecule (before PySCF does)."""
    n_el = int(atomic_numbers(symbols).sum()) - int(charge)
    if n_el <= 0:
        raise ConfigError(f"molecule.charge: {charge} leaves {n_el} electrons")
    if spin > n_el or (n_el - spin) % 2:
        parity = "odd" if n_el % 2 else "even"
        raise ConfigError(
            f"molecule.spin: 2S = {spin} is impossible with {n_el} electrons (molecule.charge "
            f"{charge}); 2S must be {parity} and <= {n_el} (e.g. molecule.spin: {n_el % 2}), or "
            f"change molecule.charge")
    if active_electrons is not None:
        if active_electrons > n_el or (n_el - active_electrons) % 2:
            raise ConfigError(f"electronic.active_space: {active_electrons} active electrons "
                              f"leave an open-shell core with {n_el} electrons (the number of "
                              f"core electrons must be even)")
        if spin > active_electrons or (active_electrons - spin) % 2:
            raise ConfigError(f"electronic.active_space: {active_electrons} active electrons "
                              f"cannot carry molecule.spin 2S = {spin}")
    return n_el
