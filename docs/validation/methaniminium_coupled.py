"""Methaniminium S2 -> S1, Ehrenfest vs ehrenfest_qc from the same initial conditions
(issue 11 item 5; study ``config/studies/methaniminium_coupled_workflow.yaml``).

Prints, side by side per time: populations P0, P1, P2 and the decoherence indicators D_01, D_02,
D_12 (the workflow's ``populations.csv``, ``coherence.csv``); then per method: failures, frozen
trajectories, fields-fallback frames, flagged active-space switches, the energy each method
conserves (``energy.csv`` e_tot, E_kin + Tr(rho H_el)) as swarm-mean drift and per-trajectory drift
(largest |E(t) - E(0)| over the run, from ``trajectories.h5``), the same drift with the steps
flagged as active-space switches left out (sum of the other steps' changes: the smooth, time-step
part), the largest single-step change and its step's active-orbital overlap, the field forces,
and the wall time per step (last progress line of ``run/history.log``).

    python docs/validation/methaniminium_coupled.py results/methaniminium_coupled/ch2nh2
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import h5py
import numpy as np

METHODS = ("ehrenfest", "ehrenfest_qc")
OVERLAP_MIN = 0.98  # electronic.active_overlap_min (default): below it a step is flagged


def _csv(path):
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


def _wall_per_step(run_dir: Path) -> str:
    """Mean wall seconds per step of each attempt (its last progress line)."""
    text = (run_dir / "run" / "history.log").read_text() if (run_dir / "run" / "history.log").exists() else ""
    rates = []
    for attempt in text.split("[workflow] attempt")[1:]:
        hits = re.findall(r"step (\d+)/\d+ \(\d+%\), ([0-9.e+]+) s/step", attempt)
        if hits:
            rates.append(f"{float(hits[-1][1]):.0f} s/step to step {hits[-1][0]}")
    return "; ".join(rates) if rates else "n/a"


def main(base):
    base = Path(base)
    methods = [m for m in METHODS if (base / m / "populations.csv").exists()]
    pops = {m: _csv(base / m / "populations.csv") for m in methods}
    coh = {m: _csv(base / m / "coherence.csv") for m in methods}
    keys_p = [k for k in pops[methods[0]] if k.startswith("p")]
    keys_d = [k for k in coh[methods[0]] if k.startswith("d_")]
    head = ["t/fs"] + [f"{k}[{m[:3] if m == 'ehrenfest' else 'qc'}]" for k in keys_p + keys_d for m in methods]
    print("  ".join(f"{h:>10}" for h in head))
    t = pops[methods[0]]["time_fs"]
    for i in range(len(t)):
        vals = [t[i]] + [(pops if k in keys_p else coh)[m][k][i] for k in keys_p + keys_d for m in methods]
        print("  ".join(f"{v:10.4f}" for v in vals))
    print()
    for m in methods:
        with h5py.File(base / m / "trajectories.h5") as f:
            e = f["e_kin_hartree"][()] + f["e_pot_hartree"][()]
            act = f["active"][()]
            fb = f["fields_fallback"][()]
            sw = f["active_switch"][()]
            ov = f["active_overlap"][()]
            fq = np.linalg.norm(f["force_qc"][()], axis=2)
            fm = np.linalg.norm(f["force_meanfield"][()], axis=2)
            n_fail = len(f["failures"].attrs)
        drift_traj = np.abs(e - e[0]).max(axis=0) * 1e3
        mean = e.mean(axis=1)
        de = np.diff(e, axis=0) * 1e3  # (F-1, T) mHa per step
        smooth = np.cumsum(np.where(sw[1:], 0.0, de), axis=0)
        smooth_traj = np.abs(smooth).max(axis=0)
        k = np.unravel_index(np.abs(de).argmax(), de.shape)
        big = np.abs(de) > 10.0
        print(f"{m}: {e.shape[1]} trajectories, {e.shape[0] - 1} steps, failures {n_fail}, "
              f"active at the end {int(act[-1].sum())}, fields_fallback frames {int(fb.sum())} of {fb.size}, "
              f"active-space switch flagged in {int(sw.sum())} trajectory-frames (overlap < {OVERLAP_MIN})")
        print(f"  E_kin + Tr(rho H): swarm-mean max |<E>(t) - <E>(0)| = {np.abs(mean - mean[0]).max() * 1e3:.3f} mHa; "
              f"per trajectory max |E(t) - E(0)|: mean {drift_traj.mean():.3f}, max {drift_traj.max():.3f} mHa; "
              f"end-to-end swarm mean {(mean[-1] - mean[0]) * 1e3:+.3f} mHa")
        print(f"  without the flagged steps (sum of the other steps' changes): per trajectory max mean "
              f"{smooth_traj.mean():.3f}, max {smooth_traj.max():.3f} mHa; swarm mean max "
              f"{np.abs(smooth.mean(axis=1)).max():.3f} mHa")
        print(f"  largest single-step change {de[k]:+.2f} mHa (trajectory {k[1]}, step {k[0] + 1}, active overlap "
              f"{ov[k[0] + 1, k[1]]:.3f}); steps with |dE| > 10 mHa: {int(big.sum())}, of them flagged "
              f"{int((big & sw[1:]).sum())}")
        nz = fq[1:][fq[1:] > 0]
        print(f"  |F_qc| per trajectory-step: median {np.median(nz) if nz.size else 0.0:.3f}, 99th percentile "
              f"{np.percentile(nz, 99) if nz.size else 0.0:.3f}, max {fq.max():.2f}; |F_meanfield| median "
              f"{np.median(fm[1:]):.3f}, max {fm.max():.2f} hartree/bohr")
        print(f"  wall time: {_wall_per_step(base / m)}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/methaniminium_coupled/ch2nh2")
