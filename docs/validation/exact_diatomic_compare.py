"""Swarm vs exact diatomic reference: max over the run of |P_n^swarm - P_n^exact|, D_01 at the
end, and the mean bond length (swarm: mean over trajectories of |r_B - r_A|; exact: <R> of the
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
rb = np.nansum(pe * np.column_stack([ex.bond["mean_r_0_bohr"], ex.bond["mean_r_1_bohr"]]), axis=1)
print(f"exact: max P0 over run {pe[:, 0].max():.3e}, final P {pe[-1]}, final D01 {de[-1]:.3e}, "
      f"max D01 {de.max():.3e}; <R>(0) {rb[0]:.4f} bohr, <R> range [{rb.min():.3f}, {rb.max():.3f}]")
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
