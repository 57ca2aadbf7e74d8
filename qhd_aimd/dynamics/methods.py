"""The four mixed quantum-classical methods of Table II (theory.md), hbar = 1.

Each method is a pair (extra electronic generator X - H_el, extra classical force). With the
swarm fields at a trajectory (inverse masses xi_j = 1/M_j, d_j ln n, d_j rho, d_j^2 rho,
g_kj = Re Tr(rho d_k rho d_j rho) and its gradient d_i g_kj):

=======================  =======================================  ===========================================
method                   X - H_el                                 F - F_meanfield
=======================  =======================================  ===========================================
ehrenfest                0                                        0
geometric_ehrenfest      -1/2 sum_j xi_j d_j^2 rho                -sum_j xi_j d_j g_kj
ehrenfest_qc             -1/2 sum_j xi_j (d_j ln n) d_j rho        -sum_j xi_j (d_j ln n) g_kj
geometric_ehrenfest_qc   both of the above                        both of the above
=======================  =======================================  ===========================================

(the quantum-coupling rows are hbar sum_j u^j d_j rho and 2 hbar sum_j u^j g_kj with the osmotic
velocity u^j = -(hbar/2) xi_j d_j ln n.) The parts are returned separately ("geometric" and
"quantum coupling") so reports can decompose the force.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Method:
    name: str
    geometric: bool
    quantum_coupling: bool
    hopping: bool = False

    @property
    def coupled(self) -> bool:
        """Whether trajectories need their neighbours (swarm fields)."""
        return self.geometric or self.quantum_coupling


METHODS = {
    m.name: m
    for m in (
        Method("ehrenfest", False, False),
        Method("geometric_ehrenfest", True, False),
        Method("ehrenfest_qc", False, True),
        Method("geometric_ehrenfest_qc", True, True),
        # surface hopping (qhd_aimd.dynamics.fssh): fssh_qc uses the quantum-coupling generator
        # only in its hop probability (the seed's gamma_bar, Sec. IV A), not in rho or the force
        Method("fssh", False, False, hopping=True),
        Method("fssh_qc", False, True, hopping=True),
    )
}


def extra_generator(method: Method, inv_mass, dlnn, drho, d2rho) -> np.ndarray:
    """X - H_el, hartree, (T, N, N).

    inv_mass (D,) 1/m_e; dlnn (T, D) 1/bohr; drho, d2rho (T, D, N, N) 1/bohr, 1/bohr^2.
    """
    x = np.zeros(drho.shape[:1] + drho.shape[2:], dtype=complex)
    if method.geometric:
        x -= 0.5 * np.einsum("j,tjab->tab", inv_mass, d2rho)
    if method.quantum_coupling:
        x -= 0.5 * np.einsum("j,tj,tjab->tab", inv_mass, dlnn, drho)
    return x


def extra_forces(method: Method, inv_mass, dlnn, g, dg) -> tuple[np.ndarray, np.ndarray]:
    """(geometric, quantum-coupling) forces, hartree/bohr, each (T, D).

    g (T, D, D) is g_kj; dg (T, D, D, D) is d_i g_kj indexed [t, i, k, j].
    """
    t, d = dlnn.shape
    f_geo = np.zeros((t, d))
    f_qc = np.zeros((t, d))
    if method.geometric:
        f_geo = -np.einsum("j,tjkj->tk", inv_mass, dg)
    if method.quantum_coupling:
        f_qc = -np.einsum("j,tj,tkj->tk", inv_mass, dlnn, g)
    return f_geo, f_qc
