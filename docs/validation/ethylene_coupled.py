"""Ethylene S1 coupled swarm (issue 11 item 5; ``config/studies/ethylene_coupled_workflow.yaml``):
energy conservation per method and the populations / decoherence side by side.

    python docs/validation/ethylene_coupled.py table results/ethylene_coupled/ethylene [T_FS ...]
    python docs/validation/ethylene_coupled.py energy RUN [RUN ...]

``table BASE``: populations P_n and decoherence indicators D_nm (the workflow's
``populations.csv`` / ``coherence.csv``) of BASE/ehrenfest and BASE/ehrenfest_qc at the given
times (default 10 20 30 fs), then ``energy`` for both runs.

``energy RUN``: from RUN/trajectories.h5 (every step stored): failures, frozen trajectories,
fields-fallback frames, flagged active-space switches and the smallest step overlap of the active
orbitals; the conserved energy E = E_kin + Tr(rho H_el) as the swarm-mean drift
max_t |<E>(t) - <E>(0)| and the per-trajectory drift max_t |E(t) - E(0)| (mean and max over
trajectories); the largest single-step change. For a run with the energy rescaling
(``dynamics.energy_correction: rescale``, coupled methods) E is held by construction wherever the
rescaling can pay, so the script also reconstructs what the rescaling removed: in every step the
velocity-Verlet momentum p(t) + dt/2 (F(t) + F(t + dt)) (F = mean-field + geometric +
quantum-coupling force, as stored) gives E_pre(t + dt) = E_kin(that momentum) + Tr(rho H)(t + dt);
E_pre - E(t) is the step's error before the rescaling (time step, quantum-coupling work not
balanced by F_qc). Reported: per trajectory the largest |step error| and the largest
|cumulative sum| of the step errors (the drift an uncorrected run would have had, to first
order), and the number of steps where the rescaling could not restore E (|E(t+dt) - E(t)| >
1e-6 mHa).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import h5py
import numpy as np

METHODS = ("ehrenfest", "ehrenfest_qc")


def _csv(path):
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


def energy(run) -> None:
    run = Path(run)
    with h5py.File(run / "trajectories.h5") as f:
        ek, ep = f["e_kin_hartree"][()], f["e_pot_hartree"][()]
        mom, masses = f["momenta_au"][()], f["masses_au"][()]
        force = f["force_meanfield"][()] + f["force_geometric"][()] + f["force_qc"][()]
        t_au = f["time_au"][()]
        act, fb, sw, ov = f["active"][()], f["fields_fallback"][()], f["active_switch"][()], f["active_overlap"][()]
        n_fail = len(f["failures"].attrs)
        fails = dict(f["failures"].attrs)
    e = ek + ep  # (F, T)
    dt = float(t_au[1] - t_au[0])
    mean = e.mean(axis=1)
    drift = np.abs(e - e[0]).max(axis=0) * 1e3
    de = np.diff(e, axis=0) * 1e3
    k = np.unravel_index(np.abs(de).argmax(), de.shape)
    p_pre = mom[:-1] + 0.5 * dt * (force[:-1] + force[1:])  # (F-1, T, D)
    e_pre = 0.5 * np.einsum("ftj,ftj,j->ft", p_pre, p_pre, 1.0 / masses) + ep[1:]
    step_err = (e_pre - e[:-1]) * 1e3  # mHa per step before any rescaling
    cum = np.abs(np.cumsum(step_err, axis=0)).max(axis=0)
    unpaid = np.abs(de) > 1e-6
    print(f"{run}: {e.shape[1]} trajectories, {e.shape[0] - 1} steps of {dt / 41.341374575751:g} fs; "
          f"failures {n_fail}{(' ' + str(fails)) if fails else ''}; active at the end {int(act[-1].sum())}; "
          f"fields_fallback frames {int(fb.sum())} of {fb.size}; active-space switch flagged in "
          f"{int(sw.sum())} trajectory-frames; smallest step overlap {ov[1:].min():.3f}")
    print(f"  E_kin + Tr(rho H): swarm-mean drift max |<E>(t) - <E>(0)| {np.abs(mean - mean[0]).max() * 1e3:.3f} mHa "
          f"(end {(mean[-1] - mean[0]) * 1e3:+.3f}); per trajectory max |E(t) - E(0)| mean {drift.mean():.3f}, "
          f"median {np.median(drift):.3f}, max {drift.max():.3f} mHa (trajectory {int(drift.argmax())}); "
          f"trajectories above 2 mHa: {int((drift > 2).sum())}")
    print(f"  largest single-step change of E {de[k]:+.3f} mHa (trajectory {k[1]}, step {k[0] + 1}, overlap "
          f"{ov[k[0] + 1, k[1]]:.3f}); steps where E changed by > 1e-6 mHa: {int(unpaid.sum())} of {unpaid.size}")
    print(f"  step error before rescaling (Verlet momentum): per step |.| max {np.abs(step_err).max():.3f} mHa, "
          f"per trajectory max |cumulative| mean {cum.mean():.3f}, max {cum.max():.3f} mHa")


def table(base, times=(10.0, 20.0, 30.0)) -> None:
    base = Path(base)
    pops = {m: _csv(base / m / "populations.csv") for m in METHODS}
    coh = {m: _csv(base / m / "coherence.csv") for m in METHODS}
    kp = [c for c in pops[METHODS[0]] if c.startswith("p")]
    kd = [c for c in coh[METHODS[0]] if c.startswith("d_")]
    tag = {"ehrenfest": "Ehr", "ehrenfest_qc": "qc"}
    print("| t/fs | " + " | ".join(f"{c} {tag[m]}" for c in kp + kd for m in METHODS) + " |")
    print("|---" * (1 + len(METHODS) * (len(kp) + len(kd))) + "|")
    for t in times:
        row = [f"{t:g}"]
        for c in kp + kd:
            for m in METHODS:
                src = pops[m] if c in kp else coh[m]
                i = int(np.abs(src["time_fs"] - t).argmin())
                row.append(f"{src[c][i]:.3f}")
        print("| " + " | ".join(row) + " |")
    print()
    for m in METHODS:
        energy(base / m)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "table":
        table(args[0], tuple(float(a) for a in args[1:]) or (10.0, 20.0, 30.0))
    elif cmd == "energy":
        for a in args:
            energy(a)
    else:
        raise SystemExit(__doc__)
