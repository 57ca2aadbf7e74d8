"""Diagnostics of the methaniminium coupled swarm (issue 11 item 5): where the Ehrenfest energy
error comes from and how large the quantum-coupling rates are (docs/physics.md, "Polyatomic
coupled swarm").

Subcommands (RUN = a workflow run directory, e.g. results/methaniminium_coupled/ch2nh2/ehrenfest):

``subset RUN IDS DT_FS T_FS OUT``
    a serial `qhd-aimd run` directory OUT with the initial conditions of trajectories IDS
    (comma-separated, in that order) of RUN's swarm and RUN's study with ``dt_fs``/``t_final_fs``
    replaced and ``method: ehrenfest``; run it with ``python -m qhd_aimd run --config
    OUT/study.yaml --out OUT``.
``energy DIR [DIR ...]``
    per trajectory of each finished run: largest |E(t) - E(0)| and the change of E_kin + Tr(rho H)
    in every step with the active-orbital overlap of that step (time-step error vs jumps).
``cold RUN TRAJ STEPS``
    the run's (warm-started) SA-CASSCF energies minus a cold start from RHF at the stored
    geometries of trajectory TRAJ at STEPS (comma-separated): which solution branch the trajectory
    is on before an energy jump.
``rates RUN``
    ehrenfest_qc: the quantum-coupling rates |K_nm| dt (from the generator X_nm = i K_nm rho_nm the
    integrator builds, ``decoherence.qc_generator``) and the stored |F_qc| at every swarm state
    saved in the run's segments, re-evaluated with the half-kicked momenta p - dt/2 F the step used
    (the energy rescaling after the step is ignored).
"""

from __future__ import annotations

import glob
import sys
from pathlib import Path

import h5py
import numpy as np


def _frames(run: Path) -> dict:
    """{step: {dataset: (T, ...) array}} from the run's segments."""
    out = {}
    for sp in sorted(glob.glob(str(run / "run" / "segment_*.h5"))):
        with h5py.File(sp) as h:
            for k, st in enumerate(h["step"][()]):
                out[int(st)] = {n: h[n][k] for n in ("positions_bohr", "energies_hartree")}
    return out


def subset(run, ids, dt_fs, t_fs, out):
    import yaml

    run, out = Path(run), Path(out)
    sel = [int(v) for v in ids.split(",")]
    out.mkdir(parents=True, exist_ok=True)
    with h5py.File(run / "initial_conditions.h5") as f, h5py.File(out / "initial_conditions.h5", "w") as g:
        n = f["positions_bohr"].shape[0]
        for k in f:
            d = f[k][()]
            per_traj = k in ("positions_bohr", "momenta_au", "states", "candidate_index",
                             "energies_hartree", "energy_above_minimum_hartree")
            g[k] = d[sel] if per_traj and d.shape[0] == n else d
        for a in f.attrs:
            g.attrs[a] = f.attrs[a]
    cfg = yaml.safe_load((run / "study.yaml").read_text())
    cfg["method"] = "ehrenfest"
    cfg["initial"]["n_trajectories"] = len(sel)
    cfg["dynamics"].update(dt_fs=float(dt_fs), t_final_fs=float(t_fs))
    xyz = Path(cfg["system"]["molecule"]["xyz"])
    cfg["system"]["molecule"]["xyz"] = str(xyz if xyz.is_absolute() else Path.cwd() / xyz)
    (out / "study.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    print(f"python -m qhd_aimd run --config {out}/study.yaml --out {out}")


def energy(*dirs):
    for d in dirs:
        with h5py.File(Path(d) / "trajectories.h5") as f:
            e = f["e_kin_hartree"][()] + f["e_pot_hartree"][()]
            ov = f["active_overlap"][()]
            dt = float(f["time_au"][1] - f["time_au"][0]) / 41.341374575751  # a.u. of time per fs
        de = np.diff(e, axis=0) * 1e3
        print(f"{d}: dt {dt:g} fs, {e.shape[0] - 1} steps; per trajectory max |E(t) - E(0)| "
              f"{np.round(np.abs(e - e[0]).max(axis=0) * 1e3, 2).tolist()} mHa")
        for t in range(e.shape[1]):
            k = int(np.abs(de[:, t]).argmax())
            rest = np.delete(np.abs(de[:, t]), k)
            print(f"  trajectory {t}: largest step change {de[k, t]:+.2f} mHa at step {k + 1} (overlap "
                  f"{ov[k + 1, t]:.3f}); the other steps: max |dE| {rest.max():.2f} mHa; smallest overlap "
                  f"{ov[1:, t].min():.3f}")


def cold(run, traj, steps):
    from qhd_aimd.config import load_config
    from qhd_aimd.electronic import make_backend
    from qhd_aimd.prepare.molecule import load_initial_conditions

    run, t = Path(run), int(traj)
    cfg = load_config(run / "study.yaml")
    be = make_backend(cfg, list(load_initial_conditions(run / "initial_conditions.h5")["symbols"]))
    fr = _frames(run)
    for st in (int(v) for v in steps.split(",")):
        x, e = fr[st]["positions_bohr"][t], fr[st]["energies_hartree"][t]
        c = be.compute(x).energies
        print(f"trajectory {t} step {st}: run {np.round(e, 5).tolist()}, cold start {np.round(c, 5).tolist()}, "
              f"state-averaged run - cold {1e3 * (e.mean() - c.mean()):+.2f} mHa", flush=True)


def rates(run):
    from qhd_aimd.config import load_config
    from qhd_aimd.dynamics.integrator import Propagator
    from qhd_aimd.electronic import make_backend
    from qhd_aimd.io import checkpoint as ckpt
    from qhd_aimd.prepare.molecule import load_initial_conditions
    from qhd_aimd.swarm.driver import _unpack

    run = Path(run)
    cfg = load_config(run / "study.yaml")
    be = make_backend(cfg, list(load_initial_conditions(run / "initial_conditions.h5")["symbols"]))
    f = cfg.fields
    prop = Propagator(be, cfg.method, cfg.dynamics.dt, cfg.dynamics.n_substeps, f.bandwidth_factor,
                      f.bandwidth_bohr, f.ridge, f.cutoff_sigma, demodulate=f.demodulate,
                      quantum_force=f.quantum_force, coherence_gradient=f.coherence_gradient,
                      quantum_momentum=f.quantum_momentum, energy_correction=cfg.dynamics.energy_correction)
    iu = ([0, 0, 1], [1, 2, 2]) if be.n_states == 3 else np.triu_indices(be.n_states, 1)
    allk = []
    for sp in sorted(glob.glob(str(run / "run" / "segment_*.h5"))):
        with h5py.File(sp) as h:
            if "swarm_state" not in h:
                continue
            state = ckpt.read_group(h["swarm_state"])
            fq = np.linalg.norm(h["force_qc"][-1], axis=1)
        ids = sorted(state["trajectories"])
        s = _unpack(state, ids)
        if s.step == 0:
            continue
        s.momenta = s.momenta - 0.5 * prop.dt * s.force
        prop._update_fields(s)
        r = s.rho[:, iu[0], iu[1]]
        coh = np.abs(r) > 1e-3
        k = np.abs(np.real(s.extra[:, iu[0], iu[1]] / (1j * np.where(coh, r, 1.0)))) * prop.dt
        kk = k[coh]
        allk.append(kk)
        i = int(fq.argmax())
        print(f"step {s.step:2d}: |K| dt over {kk.size} coherent pairs: median {np.median(kk):.2f}, 90th "
              f"percentile {np.percentile(kk, 90):.2f}, max {kk.max():.2f}; stored |F_qc| median "
              f"{np.median(fq):.3f}, max {fq.max():.2f} hartree/bohr in trajectory {ids[i]} (its K dt "
              f"{np.round(k[i], 2).tolist()}, populations {np.round(np.real(np.diagonal(s.rho[i])), 2).tolist()})",
              flush=True)
    kk = np.concatenate(allk)
    print(f"all saved states: |K| dt median {np.median(kk):.2f}, 90th percentile {np.percentile(kk, 90):.2f}, "
          f"max {kk.max():.2f}; fraction of coherent pairs with |K| dt > 1: {np.mean(kk > 1):.3f}")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"subset": subset, "energy": energy, "cold": cold, "rates": rates}[cmd](*args)
