"""``CasscfHandle``: one converged SA-CASSCF solution, everything needed to rebuild it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
from pyscf import gto

from qhd_aimd.electronic.pyscf.molecule import _cached_mol


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
        return _cached_mol(tuple(self.symbols), self.coords.tobytes(), self.basis, self.charge,
                           self.spin)


def _refuse_lean(h, what: str):
    if isinstance(h, CasscfHandle) and h.info.get("for_overlaps"):
        raise ValueError(f"a CasscfHandle.for_overlaps() copy (no virtual orbitals) cannot serve "
                         f"as {what}")
