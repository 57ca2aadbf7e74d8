"""S1 lifetime of an ethylene FSSH swarm (config/studies/ethylene_s1_fssh_workflow.yaml).

Usage: python docs/validation/ethylene_fssh.py RUN_DIR [n_bootstrap]

RUN_DIR is the run directory (``.../ethylene/fssh``); ``trajectories.h5`` is read when present,
otherwise the segment files of an unfinished run (``RUN_DIR/run/segment_*.h5``), so a partial
run can be analysed. Prints the fraction of trajectories on each active state over time, the
number of hops, the per-trajectory energy conservation, and the S1 lifetime: the excited-state
fraction P_exc(t) (active state >= 1) fitted by the delayed exponential
P_exc(t) = 1 for t < t_d, exp(-(t - t_d)/tau) after (least squares over the whole run), with a
95 % bootstrap interval over trajectories (resampled with replacement, refitted).
"""

import sys
from pathlib import Path

import h5py
import numpy as np
from scipy.optimize import least_squares

from qhd_aimd.units import AUT_FS


def load(run_dir: Path) -> dict:
    keys = ("time_au", "active_state", "hop_to", "hop_frustrated", "e_kin_hartree", "e_pot_hartree",
            "active")
    path = run_dir / "trajectories.h5"
    files = [path] if path.exists() else sorted((run_dir / "run").glob("segment_*.h5"))
    if not files:
        raise SystemExit(f"no trajectories.h5 or segments in {run_dir}")
    parts = {k: [] for k in keys}
    for f in files:
        with h5py.File(f, "r") as h:
            for k in keys:
                parts[k].append(h[k][()])
    return {k: np.concatenate(v) for k, v in parts.items()}


def fit(t_fs: np.ndarray, p_exc: np.ndarray) -> tuple[float, float]:
    """(t_d, tau) in fs of the delayed exponential (module docstring)."""
    def model(q):
        t_d, log_tau = q
        return np.where(t_fs < t_d, 1.0, np.exp(-(t_fs - t_d) / np.exp(log_tau))) - p_exc

    best = None
    for t_d0 in (5.0, 15.0, 30.0):
        for tau0 in (30.0, 100.0, 300.0):
            r = least_squares(model, [min(t_d0, 0.5 * t_fs[-1]), np.log(tau0)], bounds=([0.0, np.log(1.0)], [t_fs[-1], np.log(1e5)]))
            if best is None or r.cost < best.cost:
                best = r
    return float(best.x[0]), float(np.exp(best.x[1]))


def main(run_dir, n_boot=1000):
    d = load(Path(run_dir))
    t = d["time_au"] * AUT_FS
    state, act = d["active_state"], d["active"]
    n_traj = state.shape[1]
    exc = (state >= 1).astype(float)
    p_exc = exc.mean(axis=1)
    e_tot = d["e_kin_hartree"] + d["e_pot_hartree"]
    drift = np.abs(e_tot - e_tot[0]).max(axis=0)
    print(f"# {run_dir}: {n_traj} trajectories, {len(t) - 1} steps, t = 0 .. {t[-1]:.2f} fs; "
          f"failed: {int((~act[-1]).sum())}")
    n_states = int(state.max()) + 1
    for k in range(0, len(t), max(1, len(t) // 16)):
        frac = " ".join(f"{np.mean(state[k] == n):.3f}" for n in range(max(n_states, 3)))
        print(f"t = {t[k]:6.2f} fs  on S0/S1/S2: {frac}")
    tried = d["hop_to"] >= 0
    fr = d["hop_frustrated"].astype(bool)
    print(f"hops: {int((tried & ~fr).sum())} accepted, {int((tried & fr).sum())} frustrated")
    print(f"per-trajectory max |E_tot(t) - E_tot(0)|: median {1e3 * np.median(drift):.2f} mHa, "
          f"max {1e3 * drift.max():.2f} mHa")
    t_d, tau = fit(t, p_exc)
    rng = np.random.default_rng(0)
    boot = []
    for _ in range(n_boot):
        idx = rng.integers(0, n_traj, n_traj)
        boot.append(fit(t, exc[:, idx].mean(axis=1))[1])
    lo, hi = np.percentile(boot, [2.5, 97.5])
    print(f"S1 lifetime fit (delayed exponential of the excited fraction): t_d = {t_d:.1f} fs, "
          f"tau = {tau:.1f} fs, 95 % bootstrap interval [{lo:.1f}, {hi:.1f}] fs ({n_boot} resamples)")
    print(f"excited fraction at the last time: {p_exc[-1]:.3f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1000)
