"""Swarm vs exact diatomic reference (N >= 2 states): max over the run of |P_n^swarm - P_n^exact|
(over all n, and per state), D_nm at the end for every pair, and the mean bond length (swarm: mean over trajectories of |r_B - r_A|; exact: <R> of the
whole wavepacket), from aggregated run directories and an exact directory.

    python docs/validation/exact_diatomic_compare.py EXACT_DIR RUN_DIR [RUN_DIR ...]
"""
import sys
from pathlib import Path

import numpy as np

from qhd_aimd.report.html import load_exact, load_run, swarm_bond_length

ex = load_exact(sys.argv[1])
te, pe = ex.populations["time_fs"], ex.populations["p"]
de = ex.coherence["d_0_1"]
ns = pe.shape[1]
pair_keys = [k for k in ex.coherence if k.startswith("d_")]
rb = np.nansum(pe * np.column_stack([ex.bond[f"mean_r_{n}_bohr"] for n in range(ns)]), axis=1)
print(f"exact: max P0 over run {pe[:, 0].max():.3e}, final P {pe[-1]}, final D01 {de[-1]:.3e}, "
      f"max D01 {de.max():.3e}; <R>(0) {rb[0]:.4f} bohr, <R> range [{rb.min():.3f}, {rb.max():.3f}]")
if ns > 2:
    print("exact: max |P_n(t) - P_n(0)| " + " ".join(f"{v:.3e}" for v in np.abs(pe - pe[0]).max(0))
          + "; final D " + " ".join(f"{k[2:]}={ex.coherence[k][-1]:.3e}" for k in pair_keys))
for d in sys.argv[2:]:
    run = load_run(d)
    t, p = run.obs["time_fs"], run.obs["populations"]
    pi = np.column_stack([np.interp(t, te, pe[:, n]) for n in range(pe.shape[1])])
    dp = np.abs(p - pi).max()
    k = [i for i, pair in enumerate(run.obs["pairs"]) if tuple(pair) == (0, 1)][0]
    ds = run.obs["coherence"][:, k]
    b = swarm_bond_length(run)
    rbi = np.interp(b["time_fs"], te, rb)
    print(f"{run.method} ({Path(d).name}, {run.n_trajectories} trajectories, "
          f"{len(run.failures)} failed): max |dP| {dp:.3e} (max P0 {p[:, 0].max():.3e}), final "
          f"D01 {ds[-1]:.3e} (max {ds.max():.3e}); mean bond (0) {b['mean'][0]:.4f} bohr, "
          f"max |<R>_swarm - <R>_exact| {np.abs(b['mean'] - rbi).max():.3f} bohr, "
          f"final {b['mean'][-1]:.3f} vs {rbi[-1]:.3f}")
    if ns > 2:
        pairs = [tuple(q) for q in run.obs["pairs"]]
        print(f"    per state max |dP_n| " + " ".join(f"{v:.3e}" for v in np.abs(p - pi).max(0))
              + f"; swarm max |P_n(t) - P_n(0)| "
              + " ".join(f"{v:.3e}" for v in np.abs(p - p[0]).max(0)))
        print("    final D swarm vs exact " + " ".join(
            f"{a}_{b_}: {run.obs['coherence'][-1, pairs.index((a, b_))]:.3e} vs "
            f"{ex.coherence[f'd_{a}_{b_}'][-1]:.3e}" for a, b_ in pairs))
