"""The state of a trajectory swarm at one time (``Swarm``) and the per-trajectory failure
helpers shared by the propagation modules (``integrator``, ``swarm_fields``, ``fssh``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qhd_aimd.errors import QhdError

#: what one trajectory's numerics may raise: caught per trajectory, which is then frozen and
#: listed in ``Swarm.failures`` with the reason (the swarm goes on); anything else is a bug
TRAJECTORY_ERRORS = (QhdError, np.linalg.LinAlgError, ArithmeticError, ValueError)


@dataclass
class Swarm:
    """The trajectories this rank owns, at one time. Arrays have a leading axis over them.

    positions (L, D) bohr; momenta (L, D) a.u.; rho (L, N, N) in each trajectory's current
    adiabatic basis; elec list of ``ElectronicData``; forces (L, D) hartree/bohr split into
    mean-field, geometric and quantum-coupling parts (f_qc includes the quantum force of Eq. 68
    when ``Propagator.quantum_force``); extra (L, N, N) hartree: the method's
    generator X - H_el from the fields at this time; active (L,) bool; failures: id -> reason;
    fields_fallback (L,) bool: the swarm fields of this time could not be estimated for the
    trajectory (too few neighbours, non-finite estimate) and were set to zero (Ehrenfest step);
    adiabatic_momenta (L, N, D) a.u.: f_n = -int dE_n dt along each trajectory
    (``decoherence``; zeros with ``Propagator.coherence_gradient == "regression"``).

    Surface hopping (``fssh``, ``fssh_qc``; else None): active_state (L,) int, the adiabatic
    state the nuclei move on (f_meanfield is then -dE_a/dx and f_geometric the optional Berry
    force); hop_from, hop_to (L,) int, the hop attempted in the last step (-1: none) and
    hop_frustrated (L,) bool (``qhd_aimd.dynamics.fssh``).
    """

    ids: np.ndarray
    step: int
    time_au: float
    positions: np.ndarray
    momenta: np.ndarray
    rho: np.ndarray
    elec: list
    f_meanfield: np.ndarray
    f_geometric: np.ndarray
    f_qc: np.ndarray
    extra: np.ndarray
    active: np.ndarray
    failures: dict = field(default_factory=dict)
    fields_fallback: np.ndarray | None = None
    active_state: np.ndarray | None = None
    hop_from: np.ndarray | None = None
    hop_to: np.ndarray | None = None
    hop_frustrated: np.ndarray | None = None
    adiabatic_momenta: np.ndarray | None = None

    def __post_init__(self):
        if self.adiabatic_momenta is None:
            self.adiabatic_momenta = np.zeros(self.rho.shape[:2] + self.positions.shape[1:])

    @property
    def force(self) -> np.ndarray:
        return self.f_meanfield + self.f_geometric + self.f_qc

    def energies(self, masses):
        """(e_kin, e_pot) per trajectory, hartree: sum p^2/2M and Tr(rho H_el)."""
        e_kin = 0.5 * np.einsum("tj,tj,j->t", self.momenta, self.momenta, 1.0 / masses)
        if not self.elec:  # a rank without trajectories (more ranks than trajectories)
            return e_kin, np.zeros(0)
        e_adia = np.stack([e.energies for e in self.elec])
        e_pot = np.real(np.einsum("tnn,tn->t", self.rho, e_adia))
        if self.active_state is not None and len(e_adia):  # surface hopping: active state's energy
            e_pot = e_adia[np.arange(len(e_adia)), self.active_state]
        return e_kin, e_pot




def reason(exc: Exception) -> str:
    """One line: the message of our own errors, type and message of numerical ones."""
    msg = " ".join(str(exc).split())
    return msg if isinstance(exc, QhdError) else f"{type(exc).__name__}: {msg}"


def not_finite(mask: np.ndarray, values) -> np.ndarray:
    """Indices i with mask[i] whose values[i] (equal-shaped arrays) hold a NaN or infinity."""
    idx = np.flatnonzero(mask)
    if not len(idx):
        return idx
    v = np.stack([np.asarray(values[i]) for i in idx])
    return idx[~np.isfinite(v).reshape(len(idx), -1).all(axis=1)]


def adiabatic_energies(s: Swarm, idx) -> np.ndarray:
    """Adiabatic energies (len(idx), N) of the listed trajectories; (0, N) on a rank without
    trajectories (more ranks than trajectories)."""
    idx = list(idx)
    if not idx:
        return np.zeros((0, s.rho.shape[1]))
    return np.stack([s.elec[i].energies for i in idx])
