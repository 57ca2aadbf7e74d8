"""Export trajectories for viewers: one multi-frame extended XYZ file per trajectory.

``qhd-aimd export DIR --format extxyz [--out OUTDIR]`` writes ``OUTDIR/traj_<id>.extxyz``
(default OUTDIR = ``DIR/extxyz``), readable by ASE (``ase.io.read(path, index=":")``), OVITO,
VMD (xyz plugin) and Jmol. Every frame holds, in its comment line (extended-XYZ key=value pairs,
read into ``atoms.info`` by ASE):

==================  ======================================================================
key                 value
==================  ======================================================================
``Time``            time in fs
``time_au``         time in atomic units
``step``            step index
``e_tot_eV``        total energy e_kin + Tr(rho H_el), eV (``e_tot_hartree`` in hartree)
``e_kin_hartree``   nuclear kinetic energy
``e_pot_hartree``   Tr(rho H_el)
``energies_eV``     adiabatic energies E_n, eV (N numbers)
``populations``     rho_nn (N numbers, the adiabatic populations of this trajectory)
``active_state``    surface hopping only: the state the nuclei move on
``active``          false once the trajectory has failed (its geometry is then frozen)
==================  ======================================================================

and per atom: positions (Å), ``momenta`` in ASE's units (amu·Å per ASE time unit, so that
``atoms.get_velocities() * ase.units.fs`` is in Å/fs) and ``masses`` (amu, so isotopes survive).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from qhd_aimd.errors import QhdError
from qhd_aimd.units import AMU_ME, ANGSTROM_BOHR, AUT_FS, BOHR_ANGSTROM, HARTREE_EV

#: 1 fs in ASE's time unit (Å sqrt(amu/eV); CODATA 2018 amu and eV, as ase.units.fs)
ASE_FS = 1e-15 / (1e-10 * (1.66053906660e-27 / 1.602176634e-19) ** 0.5)


def _symbols(run_dir: Path, f: h5py.File) -> list[str]:
    """Atom symbols of a molecular run: trajectories.h5 attribute, else the run's
    initial_conditions.h5, else the xyz file named in the stored config."""
    if "symbols" in f.attrs:
        return [str(s) for s in f.attrs["symbols"]]
    ic = run_dir / "initial_conditions.h5"
    if ic.exists():
        with h5py.File(ic, "r") as g:
            if "symbols" in g:
                return [s.decode() if isinstance(s, bytes) else str(s) for s in g["symbols"][()]]
            if "symbols" in g.attrs:
                return [str(s) for s in g.attrs["symbols"]]
    import yaml

    cfg = yaml.safe_load(f.attrs.get("config", "") or "{}") or {}
    xyz = (cfg.get("system") or {}).get("molecule", {}).get("xyz")
    if xyz and Path(xyz).exists():
        from qhd_aimd.prepare.molecule import read_xyz

        return read_xyz(xyz)[0]
    raise QhdError(f"{run_dir}: no atom symbols found (trajectories.h5 attribute 'symbols', "
                   "initial_conditions.h5, or the config's molecule.xyz)")


def _fmt(values) -> str:
    return " ".join(f"{v:.10g}" for v in np.atleast_1d(values))


def extxyz_frames(data: dict, symbols: list[str], traj: int) -> str:
    """The extended-XYZ text of trajectory ``traj`` (all frames), from the arrays of
    trajectories.h5 (``positions_bohr`` (F, T, 3A), ``momenta_au``, ``rho`` (F, T, N, N),
    ``energies_hartree`` (F, T, N), ``e_kin_hartree``, ``e_pot_hartree``, ``time_au``, ``step``,
    ``active``, ``masses_au`` (3A,), optional ``active_state`` (F, T))."""
    n_atoms = len(symbols)
    pos = data["positions_bohr"][:, traj].reshape(-1, n_atoms, 3) / ANGSTROM_BOHR
    masses_amu = np.asarray(data["masses_au"], float).reshape(n_atoms, 3)[:, 0] / AMU_ME
    # ASE momenta: amu Å per ASE time unit (Å sqrt(amu/eV)); a.u. -> amu Å/fs -> ASE
    p_ase = data["momenta_au"][:, traj].reshape(-1, n_atoms, 3) / AMU_ME * BOHR_ANGSTROM / AUT_FS \
        / ASE_FS
    pops = np.real(np.diagonal(data["rho"][:, traj], axis1=1, axis2=2))
    e_kin, e_pot = data["e_kin_hartree"][:, traj], data["e_pot_hartree"][:, traj]
    lines = []
    for k in range(pos.shape[0]):
        e_tot = e_kin[k] + e_pot[k]
        info = [
            'Properties=species:S:1:pos:R:3:momenta:R:3:masses:R:1',
            f"Time={data['time_au'][k] * AUT_FS:.10g}",
            f"time_au={data['time_au'][k]:.10g}",
            f"step={int(data['step'][k])}",
            f"e_tot_eV={e_tot * HARTREE_EV:.12g}",
            f"e_tot_hartree={e_tot:.12g}",
            f"e_kin_hartree={e_kin[k]:.12g}",
            f"e_pot_hartree={e_pot[k]:.12g}",
            f'energies_eV="{_fmt(data["energies_hartree"][k, traj] * HARTREE_EV)}"',
            f'populations="{_fmt(pops[k])}"',
            f"active={'T' if data['active'][k, traj] else 'F'}",
            f"trajectory={traj}",
            'pbc="F F F"',
        ]
        if "active_state" in data:
            info.append(f"active_state={int(data['active_state'][k, traj])}")
        lines.append(str(n_atoms))
        lines.append(" ".join(info))
        for a in range(n_atoms):
            x, y, z = pos[k, a]
            px, py, pz = p_ase[k, a]
            lines.append(f"{symbols[a]:2s} {x:16.10f} {y:16.10f} {z:16.10f} "
                         f"{px:16.10e} {py:16.10e} {pz:16.10e} {masses_amu[a]:.8f}")
    return "\n".join(lines) + "\n"


def export_extxyz(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write ``traj_<id>.extxyz`` for every trajectory of ``run_dir/trajectories.h5`` into
    ``out_dir`` (default ``run_dir/extxyz``); return the paths. Raises ``QhdError`` for a
    missing file or an analytic-model run (no atoms)."""
    run_dir = Path(run_dir)
    path = run_dir / "trajectories.h5" if run_dir.is_dir() else run_dir
    run_dir = path.parent
    if not path.exists():
        raise QhdError(f"{path}: not found (run `qhd-aimd run` first)")
    keys = ("positions_bohr", "momenta_au", "rho", "energies_hartree", "e_kin_hartree",
            "e_pot_hartree", "time_au", "step", "active", "masses_au", "active_state")
    with h5py.File(path, "r") as f:
        dof = f["positions_bohr"].shape[-1]
        import yaml

        cfg = yaml.safe_load(f.attrs.get("config", "") or "{}") or {}
        if (cfg.get("system") or {}).get("model") is not None or dof % 3:
            raise QhdError(f"{path}: an analytic-model run ({dof} nuclear coordinate(s), no atoms); "
                           "extxyz export is for molecules")
        symbols = _symbols(run_dir, f)
        data = {k: f[k][()] for k in keys if k in f}
    if len(symbols) * 3 != dof:
        raise QhdError(f"{path}: {len(symbols)} atom symbols for {dof} coordinates")
    out = Path(out_dir) if out_dir is not None else run_dir / "extxyz"
    out.mkdir(parents=True, exist_ok=True)
    n_traj = data["positions_bohr"].shape[1]
    width = max(3, len(str(n_traj - 1)))
    paths = []
    for t in range(n_traj):
        p = out / f"traj_{t:0{width}d}.extxyz"
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(extxyz_frames(data, symbols, t))
        tmp.replace(p)
        paths.append(p)
    return paths
