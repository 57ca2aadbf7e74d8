"""Ground-state minimum and harmonic normal modes for the Wigner sampling (PySCF + geomeTRIC).

Level: RHF/basis for closed shells, UHF/basis for open shells (``molecule.spin`` > 0; PySCF has
analytic UHF Hessians, not ROHF ones). Cheap on purpose: the Wigner distribution only needs a
reasonable ground-state minimum and its Hessian.

Normal modes come from ``pyscf.hessian.thermo.harmonic_analysis``: the Hessian is mass-weighted
and the three translations and three rotations (two for a linear molecule; Eckart conditions
about the centre of mass) are projected out *before* diagonalisation, so 3N-6 (3N-5) modes are
left whatever the eigenvalues are (a saddle point's negative curvature is not mistaken for a
rotation, and a soft vibration is not thrown away with the rigid motions).

Units: positions bohr, masses m_e, angular frequencies hartree (signed: negative = imaginary);
cm^-1 only in names that say so.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from qhd_aimd.errors import ConfigError, ConvergenceError
from qhd_aimd.units import AMU_ME, HARTREE_CM1

_LOG_INI = """[loggers]
keys=root

[handlers]
keys=file_handler

[formatters]
keys=formatter

[logger_root]
level=INFO
handlers=file_handler

[handler_file_handler]
class=geometric.nifty.RawFileHandler
level=INFO
formatter=formatter
args=({path!r}, 'a')

[formatter_formatter]
format=%(message)s
"""


def _mol(symbols, positions_bohr, basis, charge, spin):
    from qhd_aimd.electronic.pyscf import build_mol
    return build_mol(symbols, positions_bohr, basis, charge, spin)


def ground_state_scf(mol):
    """RHF (closed shell) or UHF (open shell) object, silent."""
    from pyscf import scf
    mf = scf.RHF(mol) if mol.spin == 0 else scf.UHF(mol)
    mf.verbose = 0
    return mf


def scf_label(spin: int, basis: str) -> str:
    return f"{'RHF' if spin == 0 else 'UHF'}/{basis}"


def optimize(symbols, positions_bohr, basis="6-31g*", charge=0, spin=0, maxsteps=100,
             log_path=None) -> np.ndarray:
    """Ground-state minimum with geomeTRIC at the RHF/UHF level; positions (D,) bohr.

    geomeTRIC's banner and optimisation log go to ``log_path`` (appended; default: discarded),
    never to the terminal. Raises ``ConvergenceError`` when the optimisation does not converge
    in ``maxsteps`` steps or an SCF inside it fails.
    """
    from pyscf.geomopt import geometric_solver

    mol = _mol(symbols, positions_bohr, basis, charge, spin)
    mf = ground_state_scf(mol)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(log_path).resolve()) if log_path is not None else os.devnull
        ini = Path(tmp) / "log.ini"
        ini.write_text(_LOG_INI.format(path=path.replace("%", "%%")))
        try:
            conv, mol_eq = geometric_solver.kernel(mf, maxsteps=maxsteps, logIni=str(ini))
        except RuntimeError as exc:  # geomeTRIC / PySCF: SCF not converged during the steps
            raise ConvergenceError(f"geometry optimisation ({scf_label(spin, basis)}) failed: "
                                   f"{exc}") from None
        finally:
            for h in list(root.handlers):
                if h not in saved[0]:
                    root.removeHandler(h)
                    h.close()
            for h in saved[0]:
                if h not in root.handlers:
                    root.addHandler(h)
            root.setLevel(saved[1])
    if not conv:
        where = f"; log: {log_path}" if log_path is not None else ""
        raise ConvergenceError(f"geometry optimisation ({scf_label(spin, basis)}, geomeTRIC) did "
                               f"not converge in {maxsteps} steps{where}: check molecule.xyz")
    return np.asarray(mol_eq.atom_coords(unit="Bohr"), float).ravel()


def hessian(symbols, positions_bohr, basis="6-31g*", charge=0, spin=0) -> np.ndarray:
    """(natm, natm, 3, 3) analytic RHF/UHF Hessian, hartree/bohr^2."""
    mol = _mol(symbols, positions_bohr, basis, charge, spin)
    mf = ground_state_scf(mol)
    mf.kernel()
    if not mf.converged:
        raise ConvergenceError(f"{scf_label(spin, basis)} did not converge at the optimised "
                               f"geometry (normal modes)")
    return mf.Hessian().kernel()


def harmonic_modes(symbols, positions_bohr, hess, masses_amu) -> tuple[np.ndarray, np.ndarray]:
    """Normal modes with translations and rotations projected out (PySCF's
    ``thermo.harmonic_analysis``; 3N-6 modes, 3N-5 for linear molecules).

    Parameters
    ----------
    symbols : natm element symbols; positions_bohr : (3 natm,); hess : (natm, natm, 3, 3)
        hartree/bohr^2; masses_amu : (natm,)

    Returns
    -------
    freqs : (M,) hartree, angular frequencies, ascending; negative values are imaginary
        frequencies (-|omega|)
    modes : (M, D) Cartesian displacement per unit mass-weighted normal coordinate
        (m_e^{1/2} bohr): x = x0 + sum_i q_i L_i; L = (M^{-1/2} U)^T with U the orthonormal
        eigenvectors of the projected mass-weighted Hessian
    """
    from pyscf.hessian import thermo

    res = thermo.harmonic_analysis(_Geometry(positions_bohr), np.asarray(hess), exclude_trans=True, exclude_rot=True,
                                   imaginary_freq=False, mass=np.asarray(masses_amu, float))
    # PySCF: freq_au = sqrt(eigenvalue in hartree / (bohr^2 amu)); norm_mode in amu^-1/2
    freqs = np.asarray(res["freq_au"], float) / np.sqrt(AMU_ME)
    modes = np.asarray(res["norm_mode"], float).reshape(len(freqs), -1) / np.sqrt(AMU_ME)
    return freqs, modes


class _Geometry:
    """What ``harmonic_analysis`` reads from a ``Mole`` when masses are given: the geometry."""

    def __init__(self, positions_bohr):
        self._xyz = np.asarray(positions_bohr, float).reshape(-1, 3)

    def atom_coords(self, unit="Bohr"):
        return self._xyz.copy()


def describe_mode(symbols, mode) -> str:
    """Atoms that move most in a mode, e.g. 'N1 z 0.27, H2 z -0.24' (normalised Cartesian)."""
    v = np.asarray(mode, float).reshape(-1, 3)
    v = v / np.linalg.norm(v)
    counts, names = {}, []
    for s in symbols:
        counts[s] = counts.get(s, 0) + 1
        names.append(f"{s}{counts[s]}")
    flat = [(abs(v[a, c]), f"{names[a]} {'xyz'[c]} {v[a, c]:+.2f}") for a in range(len(v))
            for c in range(3)]
    flat.sort(key=lambda t: -t[0])
    return ", ".join(t[1] for t in flat[:4] if t[0] > 0.1)


def select_modes(symbols, freqs, modes, imaginary_modes="error", soft_mode_cm1=50.0,
                 level="RHF") -> tuple[np.ndarray, np.ndarray]:
    """Which modes the Wigner sampling uses.

    Imaginary modes (freq < 0): ``imaginary_modes="error"`` raises ``ConfigError`` naming the
    mode and what to do; ``"skip"`` leaves them out (no displacement, no momentum along them).
    Real modes below ``soft_mode_cm1`` are frozen the same way (a harmonic Wigner width
    1/sqrt(2 omega) diverges for a free or hindered rotor).

    Returns (sampled (M,) bool, status (M,) str: 'sampled', 'imaginary' or 'soft').
    """
    freqs = np.asarray(freqs, float)
    cm1 = freqs * HARTREE_CM1
    imag = freqs < 0
    if imag.any() and imaginary_modes == "error":
        lines = [f"mode {k} ({abs(cm1[k]):.0f}i cm^-1; {describe_mode(symbols, modes[k])})"
                 for k in np.flatnonzero(imag)]
        raise ConfigError(
            f"the optimised geometry is not a minimum ({level}): {len(lines)} imaginary "
            f"frequenc{'y' if len(lines) == 1 else 'ies'}: {'; '.join(lines)}. The optimiser "
            f"stayed on a saddle point (e.g. a symmetric start): displace molecule.xyz along "
            f"this mode (break the symmetry) and prepare again, or set initial.imaginary_modes: "
            f"skip to leave it unsampled")
    status = np.where(imag, "imaginary", np.where(cm1 < soft_mode_cm1, "soft", "sampled"))
    return status == "sampled", status
