"""Molecule preparation: xyz input, ground-state optimisation, normal modes, Wigner sampling,
initial electronic state, and the ``initial_conditions.h5`` file.

Units: positions bohr, momenta a.u. (m_e bohr / a.u. time), masses m_e, frequencies hartree
inside; cm^-1 only in the file attribute ``frequencies_cm1``.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from qhd_aimd.errors import ConfigError
from qhd_aimd.units import ANGSTROM_BOHR, BOHR_ANGSTROM, HARTREE_CM1, HARTREE_EV, KB_HARTREE_PER_K


def read_xyz(path) -> tuple[list[str], np.ndarray]:
    """Read an xyz file (angstrom). Returns (symbols, positions (3 N_atoms,) in bohr)."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise ConfigError(f"xyz file not found: {path}") from None
    try:
        n = int(lines[0].split()[0])
    except (IndexError, ValueError):
        raise ConfigError(f"{path}: first line must be the number of atoms") from None
    body = [ln for ln in lines[2:] if ln.strip()]
    if len(body) < n:
        raise ConfigError(f"{path}: header says {n} atoms, found {len(body)} coordinate lines")
    symbols, xyz = [], []
    for i, ln in enumerate(body[:n]):
        parts = ln.split()
        try:
            symbols.append(parts[0].capitalize() if parts[0].isalpha() else parts[0])
            xyz.append([float(v) for v in parts[1:4]])
            if len(xyz[-1]) != 3:
                raise ValueError
        except (IndexError, ValueError):
            raise ConfigError(f"{path}: line {i + 3} is not 'symbol x y z': {ln!r}") from None
    return symbols, np.asarray(xyz, float).ravel() * ANGSTROM_BOHR


def write_xyz(path, symbols, positions_bohr, comment=""):
    xyz = np.asarray(positions_bohr).reshape(-1, 3) * BOHR_ANGSTROM
    lines = [str(len(symbols)), comment] + [
        f"{s:2s} {x:14.8f} {y:14.8f} {z:14.8f}" for s, (x, y, z) in zip(symbols, xyz)]
    Path(path).write_text("\n".join(lines) + "\n")


def _mol(symbols, positions_bohr, basis, charge, spin):
    from qhd_aimd.electronic.pyscf_casscf import build_mol
    return build_mol(symbols, positions_bohr, basis, charge, spin)


def optimize(symbols, positions_bohr, basis="6-31g*", charge=0, spin=0, maxsteps=100):
    """Ground-state geometry optimisation with geomeTRIC at the RHF (ROHF if spin) level.

    RHF/basis is used on purpose: cheap, and the Wigner distribution only needs a reasonable
    ground-state minimum and Hessian (documented choice). Returns positions (D,) bohr.
    """
    from pyscf import scf
    from pyscf.geomopt.geometric_solver import optimize as geometric_optimize
    mol = _mol(symbols, positions_bohr, basis, charge, spin)
    mf = scf.RHF(mol) if spin == 0 else scf.ROHF(mol)
    mf.verbose = 0
    mol_eq = geometric_optimize(mf, maxsteps=maxsteps)
    return np.asarray(mol_eq.atom_coords(unit="Bohr"), float).ravel()


def normal_modes(symbols, positions_bohr, basis="6-31g*", charge=0, spin=0):
    """Harmonic analysis at the RHF level.

    Returns
    -------
    freqs : (M,) hartree (angular frequencies omega, real modes only, translations/rotations
        dropped)
    modes : (M, D) Cartesian displacement vectors L such that x = x0 + sum_i q_i L_i with q_i
        the mass-weighted normal coordinate in m_e^{1/2} bohr (columns of M^{-1/2} U, U the
        orthonormal eigenvectors of the mass-weighted Hessian)
    masses : (D,) m_e
    """
    from pyscf import scf
    from pyscf.hessian import thermo
    from qhd_aimd.electronic.pyscf_casscf import atom_masses_amu
    from qhd_aimd.units import AMU_ME
    mol = _mol(symbols, positions_bohr, basis, charge, spin)
    mf = scf.RHF(mol) if spin == 0 else scf.ROHF(mol)
    mf.verbose = 0
    mf.kernel()
    hess = mf.Hessian().kernel()  # (natm, natm, 3, 3) hartree/bohr^2
    m_amu = atom_masses_amu(mol)
    res = thermo.harmonic_analysis(mol, hess, exclude_trans=True, exclude_rot=True,
                                   imaginary_freq=False, mass=m_amu)
    # Do it again ourselves in atomic units for exact control of the normalisation:
    natm = mol.natm
    masses = np.repeat(m_amu * AMU_ME, 3)
    h = hess.transpose(0, 2, 1, 3).reshape(3 * natm, 3 * natm)
    hm = h / np.sqrt(np.outer(masses, masses))
    w2, u = np.linalg.eigh(0.5 * (hm + hm.T))
    n_tr = 3 * natm - len(res["freq_au"])  # translations + rotations dropped by pyscf (5 or 6)
    order = np.argsort(w2)[n_tr:]
    if np.any(w2[order] <= 0):
        raise ConfigError("imaginary vibrational frequency: the geometry is not a minimum")
    freqs = np.sqrt(w2[order])
    modes = (u[:, order] / np.sqrt(masses)[:, None]).T
    return freqs, modes, masses


def wigner_sample(freqs_au, modes, masses, n, temperature_K=0.0, seed=1, x0=None):
    """Wigner sampling of harmonic modes.

    For each mode (angular frequency w, mass-weighted coordinate q, momentum p = dq/dt):
    <q^2> = coth(w / 2kT) / (2 w), <p^2> = w coth(w / 2kT) / 2 (hbar = 1; coth -> 1 at 0 K).
    Cartesian: x = x0 + sum_i q_i L_i, momenta p_cart = M sum_i p_i L_i.

    Trajectory i uses ``np.random.default_rng(SeedSequence(seed).spawn(i + 1)[i])``, so its sample
    does not depend on ``n`` (or on how many ranks run the swarm).

    Returns positions (n, D) bohr (displacements if x0 is None), momenta (n, D) a.u.
    """
    freqs = np.asarray(freqs_au, float)
    modes = np.asarray(modes, float)
    masses = np.asarray(masses, float)
    if temperature_K > 0:
        width = 1.0 / np.tanh(freqs / (2.0 * KB_HARTREE_PER_K * temperature_K))
    else:
        width = np.ones_like(freqs)
    sq = np.sqrt(width / (2.0 * freqs))
    sp = np.sqrt(width * freqs / 2.0)
    children = np.random.SeedSequence(seed).spawn(n)
    pos = np.empty((n, modes.shape[1]))
    mom = np.empty_like(pos)
    for i in range(n):
        rng = np.random.default_rng(children[i])
        q = rng.standard_normal(len(freqs)) * sq
        p = rng.standard_normal(len(freqs)) * sp
        pos[i] = q @ modes
        mom[i] = masses * (p @ modes)
    if x0 is not None:
        pos += np.asarray(x0, float)[None, :]
    return pos, mom


def brightest_state(backend, data, window_eV):
    """Index (>= 1) of the state with the largest oscillator strength from state 0 among those
    whose excitation energy lies in ``window_eV`` (lo, hi); f = 2/3 dE |<0|mu|n>|^2."""
    from pyscf.fci import direct_spin1
    h = data.handle
    mol = h.mol()
    ao_dip = mol.intor_symmetric("int1e_r", comp=3)
    mo_cas = h.mo_coeff[:, h.ncore:h.ncore + h.ncas]
    dip_cas = np.einsum("xij,ip,jq->xpq", ao_dip, mo_cas, mo_cas)
    best, fbest = None, -1.0
    e = data.energies
    for n in range(1, len(e)):
        de = (e[n] - e[0]) * HARTREE_EV
        if not (window_eV[0] <= de <= window_eV[1]):
            continue
        t1 = direct_spin1.trans_rdm1(h.ci[0], h.ci[n], h.ncas, h.nelecas)
        mu = -np.einsum("xpq,pq->x", dip_cas, t1)  # core part vanishes between orthogonal states
        f = 2.0 / 3.0 * (e[n] - e[0]) * float(mu @ mu)
        if f > fbest:
            best, fbest = n, f
    if best is None:
        raise ConfigError(f"initial.state_window_eV {tuple(window_eV)}: no state in the window "
                          f"(excitation energies {(e[1:] - e[0]) * HARTREE_EV} eV)")
    return best


def prepare_molecule(cfg, out_dir, optimize_geometry=True) -> Path:
    """Optimise, sample and pick the initial state; write ``out_dir/initial_conditions.h5``."""
    from qhd_aimd.electronic.pyscf_casscf import CasscfBackend
    mol_spec, el = cfg.system.molecule, cfg.system.electronic
    ini = cfg.initial
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    symbols, x = read_xyz(mol_spec.xyz)
    if optimize_geometry:
        x = optimize(symbols, x, el.basis, mol_spec.charge, mol_spec.spin)
    freqs, modes, masses = normal_modes(symbols, x, el.basis, mol_spec.charge, mol_spec.spin)
    pos, mom = wigner_sample(freqs, modes, masses, ini.n_trajectories, ini.temperature_K,
                             ini.seed, x0=x)
    if ini.state_window_eV is not None:
        backend = CasscfBackend.from_config(cfg.system, symbols)
        state = brightest_state(backend, backend.compute(x), ini.state_window_eV)
    else:
        state = ini.state
    path = out_dir / "initial_conditions.h5"
    with h5py.File(path, "w") as f:
        f["positions_bohr"] = pos
        f["momenta_au"] = mom
        f["masses_au"] = masses
        f["states"] = np.full(ini.n_trajectories, state, dtype=int)
        f["equilibrium_positions_bohr"] = x
        f["frequencies_au"] = freqs
        f["normal_modes"] = modes
        f.attrs["symbols"] = list(symbols)
        f.attrs["frequencies_cm1"] = freqs * HARTREE_CM1
        f.attrs["temperature_K"] = ini.temperature_K
        f.attrs["seed"] = ini.seed
        f.attrs["basis_for_modes"] = f"RHF/{el.basis}"
    return path


def load_initial_conditions(path) -> dict:
    """Read ``initial_conditions.h5`` into a dict of arrays (+ 'symbols', 'frequencies_cm1')."""
    with h5py.File(path, "r") as f:
        out = {k: f[k][()] for k in f.keys()}
        out["symbols"] = [s.decode() if isinstance(s, bytes) else str(s) for s in f.attrs["symbols"]]
        out["frequencies_cm1"] = np.asarray(f.attrs["frequencies_cm1"])
    return out
