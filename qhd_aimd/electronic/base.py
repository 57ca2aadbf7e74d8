"""The one small electronic-structure backend protocol.

A backend turns nuclear positions into electronic data *as the solver gives it*: the adiabatic
states carry whatever phases (signs) the solver chose. Nothing here, and nothing that uses it,
aligns or tracks those phases: the dynamics carries the gauge-invariant density operator between
geometries with state overlaps (see ``qhd_aimd.dynamics.density``).

Conventions (atomic units):

* ``positions``: (D,) bohr, D = 3 N_atoms for molecules (or the model's dimension).
* ``energies``: (N,) hartree, ascending.
* ``dhdx``: (D, N, N) hartree/bohr, matrix elements <u_n| d H_el / d x_k |u_m> in the current
  adiabatic basis. Diagonal: dE_n/dx_k. Off-diagonal: (E_m - E_n) d^k_nm with
  d^k_nm = <u_n| d_k u_m> (same phase convention as the states).
* ``overlap(a, b)``: (N, N) complex, S_nm = <u_n(x_a)|u_m(x_b)>.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class ElectronicData:
    """Electronic structure at one nuclear geometry.

    Attributes
    ----------
    positions : (D,) float, bohr
    energies : (N,) float, hartree (ascending adiabatic energies)
    handle : opaque wavefunction object understood only by the backend that made it
        (eigenvectors for models, orbitals + CI vectors for PySCF); used for overlaps and
        warm starts. It may offer ``for_overlaps()``: a smaller copy that still serves
        ``overlap`` (what the coupled methods send to every rank; ``for_overlaps``).
    dhdx : (D, N, N) complex or None, hartree/bohr; <u_n|dH/dx_k|u_m>. ``None`` when the backend
        computes the force by a contraction without individual derivatives (see ``force``).
    """

    positions: np.ndarray
    energies: np.ndarray
    handle: Any
    dhdx: np.ndarray | None = None

    @property
    def n_states(self) -> int:
        return int(self.energies.shape[0])

    def for_overlaps(self) -> "ElectronicData":
        """This data with the handle's ``for_overlaps()`` copy when it has one (else itself):
        enough for ``overlap``, not a warm-start reference."""
        lean = getattr(self.handle, "for_overlaps", None)
        return self if lean is None else replace(self, handle=lean())


@runtime_checkable
class ElectronicBackend(Protocol):
    """What the dynamics needs from an electronic-structure method.

    Attributes
    ----------
    n_states : int
        Number of adiabatic states N.
    masses : (D,) float
        Nuclear mass of every Cartesian degree of freedom, electron masses.
    labels : list[str]
        Human-readable name of each degree of freedom (for reports).
    """

    n_states: int
    masses: np.ndarray

    def compute(self, positions: np.ndarray, reference: ElectronicData | None = None) -> ElectronicData:
        """Energies and wavefunction at ``positions`` (bohr); ``reference`` is a warm-start hint."""

    def overlap(self, a: ElectronicData, b: ElectronicData) -> np.ndarray:
        """(N, N) complex overlap <u_n(a)|u_m(b)> between the states of two geometries."""

    def force(self, data: ElectronicData, rho: np.ndarray) -> np.ndarray:
        """(D,) Ehrenfest (mean-field) force -Tr(rho dH/dx_k), hartree/bohr.

        ``rho`` is the (N, N) electronic density matrix in the basis of ``data``.
        """


def overlaps(backend, a: ElectronicData, others: list) -> np.ndarray:
    """(K, N, N) overlaps <u(a)|u(b)> for every b in ``others``; uses the backend's batched
    ``overlaps(a, others)`` when it has one (optional capability), else ``overlap`` per pair."""
    batched = getattr(backend, "overlaps", None)
    if batched is not None:
        return batched(a, others)
    return np.stack([backend.overlap(a, b) for b in others])


def meanfield_force(dhdx: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """-Tr(rho dH/dx_k) for every k: (D,) hartree/bohr, from dhdx (D, N, N) and rho (N, N)."""
    return -np.real(np.einsum("mn,knm->k", rho, dhdx))


def dhdx_from_derivatives(energies: np.ndarray, gradients: np.ndarray, couplings: np.ndarray) -> np.ndarray:
    """Assemble <u_n|dH/dx_k|u_m> from gradients and derivative couplings.

    Parameters
    ----------
    energies : (N,) hartree
    gradients : (N, D) hartree/bohr, dE_n/dx_k
    couplings : (N, N, D) 1/bohr, d^k_nm = <u_n|d_k u_m>

    Returns
    -------
    (D, N, N) complex, hartree/bohr: delta_nm dE_n + (E_m - E_n) d^k_nm.
    """
    gap = energies[None, :] - energies[:, None]  # (N, N): E_m - E_n
    dh = np.moveaxis(couplings * gap[:, :, None], 2, 0).astype(complex)
    n = energies.shape[0]
    dh[:, np.arange(n), np.arange(n)] = gradients.T
    return dh
