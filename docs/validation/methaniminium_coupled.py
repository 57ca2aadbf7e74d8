"""Methaniminium S2 -> S1, Ehrenfest vs ehrenfest_qc from the same initial conditions
(issue 11 item 5; study ``config/studies/methaniminium_coupled_workflow.yaml``).

Prints, side by side per time: populations P0, P1, P2 and the decoherence indicators D_01, D_02,
D_12 (the workflow's ``populations.csv``, ``coherence.csv``); then per method: failures, frozen
trajectories, fields-fallback frames, the energy each method conserves (``energy.csv`` e_tot,
E_kin + Tr(rho H_el)) as swarm-mean drift and per-trajectory drift (largest |E(t) - E(0)| over
the run, from ``trajectories.h5``), and the largest field forces.

    python docs/validation/methaniminium_coupled.py results/methaniminium_coupled/ch2nh2
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


def main(base):
    base = Path(base)
    pops = {m: _csv(base / m / "populations.csv") for m in METHODS}
    coh = {m: _csv(base / m / "coherence.csv") for m in METHODS}
    keys_p = [k for k in pops[METHODS[0]] if k.startswith("p")]
    keys_d = [k for k in coh[METHODS[0]] if k.startswith("d_")]
    head = ["t/fs"] + [f"{k}[{m[:3] if m == 'ehrenfest' else 'qc'}]" for k in keys_p + keys_d for m in METHODS]
    print("  ".join(f"{h:>10}" for h in head))
    t = pops[METHODS[0]]["time_fs"]
    for i in range(len(t)):
        vals = [t[i]] + [(pops if k in keys_p else coh)[m][k][i] for k in keys_p + keys_d for m in METHODS]
        print("  ".join(f"{v:10.4f}" for v in vals))
    print()
    for m in METHODS:
        with h5py.File(base / m / "trajectories.h5") as f:
            e = f["e_kin_hartree"][()] + f["e_pot_hartree"][()]
            act = f["active"][()]
            fb = f["fields_fallback"][()]
            fq = np.abs(f["force_qc"][()]).max()
            fm = np.abs(f["force_meanfield"][()]).max()
            n_fail = len(f["failures"].attrs)
        drift_traj = np.abs(e - e[0]).max(axis=0) * 1e3
        mean = e.mean(axis=1)
        print(f"{m}: {e.shape[1]} trajectories, {e.shape[0] - 1} steps, failures {n_fail}, "
              f"active at the end {int(act[-1].sum())}, fields_fallback frames {int(fb.sum())} of {fb.size}")
        print(f"  E_kin + Tr(rho H): swarm-mean max |<E>(t) - <E>(0)| = {np.abs(mean - mean[0]).max() * 1e3:.3f} mHa; "
              f"per trajectory max |E(t) - E(0)|: mean {drift_traj.mean():.3f}, max {drift_traj.max():.3f} mHa; "
              f"end-to-end swarm mean {(mean[-1] - mean[0]) * 1e3:+.3f} mHa")
        print(f"  max |F_qc| {fq:.2e}, max |F_meanfield| {fm:.2e} hartree/bohr")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/methaniminium_coupled/ch2nh2")
