"""Physical constants and unit conversions (the only constants module).

Everything inside qhd_aimd is in Hartree atomic units (hbar = m_e = e = 1; lengths in bohr,
energies in hartree, time in atomic units of time). Convert only at the edges (config, reports).

Values: CODATA 2018 (https://physics.nist.gov/cuu/Constants/), as also used by PySCF.
"""

HBAR = 1.0
#: 1 bohr in angstrom
BOHR_ANGSTROM = 0.529177210903
ANGSTROM_BOHR = 1.0 / BOHR_ANGSTROM
#: 1 atomic unit of time in femtoseconds
AUT_FS = 0.0241888432658
FS_AUT = 1.0 / AUT_FS
#: 1 hartree in electronvolt
HARTREE_EV = 27.211386245988
#: 1 unified atomic mass unit in electron masses
AMU_ME = 1822.888486209
#: Boltzmann constant in hartree per kelvin
KB_HARTREE_PER_K = 3.166811563e-6
#: 1 hartree in cm^-1
HARTREE_CM1 = 219474.6313632
