"""State-averaged CASSCF (PySCF) as an electronic-structure backend, one task per module.

``molecule``    ``build_mol``, ``atom_masses_amu``: PySCF ``Mole`` objects
``handle``      ``CasscfHandle``: one converged solution (orbitals, CI vectors, energies)
``warm_start``  orbitals carried to a new geometry and extrapolated along the path
``ci``          exact spin-pure CI of small active spaces, Krylov refinement of Davidson roots
``solver``      ``compute``: Newton / 1-step SA-CASSCF and the retry ladder
``overlaps``    ``state_overlap``, ``overlap_bruteforce``: states across geometries
``forces``      gradients, couplings, the one-solve Ehrenfest force
``backend``     ``CasscfBackend``: parameters, PySCF builders, the backend protocol

This package and ``qhd_aimd.prepare`` are the only places that import PySCF.
"""

from qhd_aimd.electronic.pyscf.backend import CasscfBackend
from qhd_aimd.electronic.pyscf.handle import CasscfHandle
from qhd_aimd.electronic.pyscf.molecule import atom_masses_amu, build_mol
from qhd_aimd.electronic.pyscf.overlaps import overlap_bruteforce, state_overlap

__all__ = ["CasscfBackend", "CasscfHandle", "overlap_bruteforce", "state_overlap", "build_mol",
           "atom_masses_amu"]
