"""Molecule preparation: xyz input, ground-state optimisation, normal modes, Wigner sampling,
initial electronic state, and the ``initial_conditions.h5`` file.

Units: positions bohr, momenta a.u. (m_e bohr / a.u. time), masses m_e, frequencies hartree
inside; cm^-1 only in the file attribute ``frequencies_cm1``.
"""

from __future__ import annotations

import os
import sys
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


def optimize(symbols, positions_bohr, basis="6-31g*", charge=0, spin=0, maxsteps=100,
             log_path=None):
    """Ground-state minimum (RHF, UHF for open shells; geomeTRIC); see ``modes.optimize``."""
    from qhd_aimd.prepare import modes as nm
    return nm.optimize(symbols, positions_bohr, basis, charge, spin, maxsteps, log_path)


def normal_modes(symbols, positions_bohr, basis="6-31g*", charge=0, spin=0, masses_amu=None):
    """Harmonic analysis at the RHF (UHF) level, translations and rotations projected out.

    Returns
    -------
    freqs : (M,) hartree, signed angular frequencies (negative = imaginary), M = 3N-6 (3N-5
        linear)
    modes : (M, D) Cartesian displacement vectors L such that x = x0 + sum_i q_i L_i with q_i
        the mass-weighted normal coordinate in m_e^{1/2} bohr (columns of M^{-1/2} U, U the
        orthonormal eigenvectors of the projected mass-weighted Hessian)
    masses : (D,) m_e (``masses_amu`` per atom, else ``qhd_aimd.atoms.masses_amu``)
    """
    from qhd_aimd.atoms import masses_amu as atom_masses
    from qhd_aimd.prepare import modes as nm
    from qhd_aimd.units import AMU_ME
    m_amu = atom_masses(symbols, masses_amu)
    hess = nm.hessian(symbols, positions_bohr, basis, charge, spin)
    freqs, modes = nm.harmonic_modes(symbols, positions_bohr, hess, m_amu)
    return freqs, modes, np.repeat(m_amu * AMU_ME, 3)


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
    whose excitation energy lies in ``window_eV`` (lo, hi); f = 2/3 dE |<0|mu|n>|^2. None when
    no state lies in the window."""
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
    return best


def _say(msg: str) -> None:
    print(f"[qhd-aimd prepare] {msg}", file=sys.stderr, flush=True)


def select_samples(backend, pos, mom, n, state, window_eV=None, say=_say):
    """Electronic structure at every Wigner sample (cold start, as ``run`` does at t = 0) and
    the initial state of each.

    Without a window every one of the first ``n`` candidates is kept with ``state``. With
    ``window_eV`` the candidates are taken in order and each gets the brightest state whose
    excitation energy *at that sample* lies in the window; candidates with no state in the
    window (or whose SA-CASSCF fails) are rejected, until ``n`` are accepted (rejection
    sampling: trajectory i is the i-th accepted candidate, independent of ``n`` and of ranks).

    Returns dict: indices (n,) of the accepted candidates, states (n,), energies (n, N)
    hartree, n_outside (candidates rejected for the window), n_failed (SA-CASSCF failed).
    """
    from qhd_aimd.errors import QhdError
    idx, states, energies = [], [], []
    n_out = n_fail = 0
    for k in range(len(pos)):
        if len(idx) == n:
            break
        try:
            data = backend.compute(pos[k])
        except QhdError as exc:
            if window_eV is None:
                raise QhdError(f"Wigner sample {k}: electronic structure failed: {exc}") from exc
            n_fail += 1
            say(f"candidate {k}: SA-CASSCF failed ({exc}); rejected")
            continue
        s = state if window_eV is None else brightest_state(backend, data, window_eV)
        if s is None:
            n_out += 1
            continue
        idx.append(k)
        states.append(s)
        energies.append(data.energies)
    if len(idx) < n:
        raise ConfigError(
            f"initial.state_window_eV {tuple(window_eV)}: only {len(idx)} of {len(pos)} Wigner "
            f"samples have a state in the window ({n_out} outside, {n_fail} failed); widen the "
            f"window or raise initial.max_candidates")
    return {"indices": np.asarray(idx, int), "states": np.asarray(states, int),
            "energies": np.asarray(energies, float), "n_outside": n_out, "n_failed": n_fail}


def prepare_molecule(cfg, out_dir, optimize_geometry=True) -> Path:
    """Optimise, sample and pick the initial state; write ``out_dir/initial_conditions.h5``.

    Steps: geometry optimisation (RHF/UHF, geomeTRIC; its log goes to
    ``out_dir/geometric.log``; not converged -> ``ConvergenceError``); normal modes with rigid
    motions projected out (``modes``); imaginary modes -> error unless
    ``initial.imaginary_modes: skip``; modes below ``initial.soft_mode_cm1`` frozen; Wigner
    sampling of the other modes; SA-CASSCF at the minimum and at every sample (energy above
    the minimum, initial state per sample, ``initial.state_window_eV`` applied per sample).
    """
    from qhd_aimd.atoms import check_charge_spin
    from qhd_aimd.electronic.pyscf import CasscfBackend
    from qhd_aimd.prepare import modes as nm
    mol_spec, el = cfg.system.molecule, cfg.system.electronic
    ini = cfg.initial
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    symbols, x = read_xyz(mol_spec.xyz)
    check_charge_spin(symbols, mol_spec.charge, mol_spec.spin, el.active_space[0])
    if mol_spec.masses_amu is not None and len(mol_spec.masses_amu) != len(symbols):
        raise ConfigError(f"molecule.masses_amu: {len(mol_spec.masses_amu)} masses for "
                          f"{len(symbols)} atoms in {mol_spec.xyz}")
    level = nm.scf_label(mol_spec.spin, el.basis)
    if optimize_geometry:
        x = optimize(symbols, x, el.basis, mol_spec.charge, mol_spec.spin,
                     log_path=out_dir / "geometric.log")
    freqs, modes, masses = normal_modes(symbols, x, el.basis, mol_spec.charge, mol_spec.spin,
                                        mol_spec.masses_amu)
    sampled, status = nm.select_modes(symbols, freqs, modes, ini.imaginary_modes,
                                      ini.soft_mode_cm1, level)
    cm1 = freqs * HARTREE_CM1
    for k in np.flatnonzero(~sampled):
        _say(f"mode {k} ({abs(cm1[k]):.1f}{'i' if cm1[k] < 0 else ''} cm^-1, {status[k]}) not "
             f"sampled: no displacement or momentum along it")
    n = ini.n_trajectories
    n_cand = n if ini.state_window_eV is None else (ini.max_candidates or 10 * n)
    pos, mom = wigner_sample(freqs[sampled], modes[sampled], masses, n_cand, ini.temperature_K,
                             ini.seed, x0=x)
    backend = CasscfBackend.from_config(cfg.system, symbols)
    e_min = backend.compute(x).energies
    sel = select_samples(backend, pos, mom, n, ini.state, ini.state_window_eV)
    e_above = sel["energies"][:, 0] - e_min[0]
    zpe = 0.5 * float(freqs[sampled].sum())
    if ini.state_window_eV is not None:
        _say(f"state_window_eV {tuple(ini.state_window_eV)}: {sel['n_outside']} of "
             f"{sel['n_outside'] + sel['n_failed'] + n} samples had no state in the window "
             f"(rejected), {sel['n_failed']} failed; initial states "
             f"{dict(zip(*np.unique(sel['states'], return_counts=True)))}")
    _say(f"ground-state energy above the minimum: mean {e_above.mean() * HARTREE_EV:.3f} eV, "
         f"max {e_above.max() * HARTREE_EV:.3f} eV (harmonic expectation at 0 K: ZPE/2 = "
         f"{0.5 * zpe * HARTREE_EV:.3f} eV)")
    path = out_dir / "initial_conditions.h5"
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f["positions_bohr"] = pos[sel["indices"]]
        f["momenta_au"] = mom[sel["indices"]]
        f["masses_au"] = masses
        f["states"] = sel["states"]
        f["equilibrium_positions_bohr"] = x
        f["frequencies_au"] = freqs
        f["normal_modes"] = modes
        f["mode_sampled"] = sampled
        f["candidate_index"] = sel["indices"]
        f["energies_hartree"] = sel["energies"]
        f["energy_above_minimum_hartree"] = e_above
        f["minimum_energies_hartree"] = e_min
        f.attrs["symbols"] = list(symbols)
        f.attrs["frequencies_cm1"] = cm1
        f.attrs["mode_status"] = [str(v) for v in status]
        f.attrs["soft_mode_cm1"] = ini.soft_mode_cm1
        f.attrs["imaginary_modes"] = ini.imaginary_modes
        f.attrs["temperature_K"] = ini.temperature_K
        f.attrs["seed"] = ini.seed
        f.attrs["basis_for_modes"] = level
        f.attrs["zero_point_energy_hartree"] = zpe
        f.attrs["n_outside_window"] = sel["n_outside"]
        f.attrs["n_failed_samples"] = sel["n_failed"]
        f.attrs["n_candidates"] = int(sel["n_outside"] + sel["n_failed"] + n)
        if ini.state_window_eV is not None:
            f.attrs["state_window_eV"] = list(ini.state_window_eV)
    os.replace(tmp, path)
    return path


def load_initial_conditions(path) -> dict:
    """Read ``initial_conditions.h5`` into a dict of arrays (+ 'symbols', 'frequencies_cm1')."""
    with h5py.File(path, "r") as f:
        out = {k: f[k][()] for k in f.keys()}
        out["symbols"] = [s.decode() if isinstance(s, bytes) else str(s) for s in f.attrs["symbols"]]
        out["frequencies_cm1"] = np.asarray(f.attrs["frequencies_cm1"])
        out["attrs"] = dict(f.attrs)
    return out
