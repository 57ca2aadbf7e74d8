"""Analyse an ethylene S1 swarm (config/studies/ethylene_s1.yaml): S1 population decay, energy
conservation, failures and discontinuities of the SA-CASSCF potential.

Usage: python docs/validation/ethylene_s1.py DIR      (DIR as given to qhd-aimd run --out)

Reads DIR/trajectories.h5 only. Printed:

* per trajectory: time reached, failure reason, total-energy drift e_tot(t_end) - e_tot(0), largest
  |e_tot(t) - e_tot(0)|, largest single-step change of e_tot, largest second difference of the
  adiabatic energies |E(t+dt) - 2E(t) + E(t-dt)| (a smooth surface gives ~1e-5 Ha at 0.25 fs; a
  jump of the SA-CASSCF solution, e.g. the CAS(2,2) active space switching from pi* to
  sigma*(CH), gives mHa), and the final rho_11;
* discontinuities: a single-step change of e_tot > 2 mHa (Verlet fluctuations at 0.25 fs are
  ~0.05 mHa per step) marks a jump of the SA-CASSCF solution; drift is also given up to it;
* the swarm S1 population P1(t) = <rho_11> (and, with more than two states, the excited
  population 1 - P0) over the trajectories still running (and, when there are jumps, over each
  trajectory only up to its first jump), and two fits of each:
  P1 = exp(-t / tau) and the delayed form P1 = 1 for t < t0, exp(-(t - t0) / tau) after, the form
  used by Sellner et al. (Mol. Phys. 111, 2439 (2013)) for their S1 valence decay of 62 fs.
"""

import sys
import warnings

import h5py
import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

warnings.simplefilter("ignore", OptimizeWarning)
warnings.simplefilter("ignore", RuntimeWarning)  # exp overflow while bootstrap fits explore

AUT_FS = 0.02418884326585747  # fs per atomic unit of time
JUMP = 2e-3  # hartree; a single-step change of e_tot above this is a discontinuity
N_BOOT = 400


def main(path):
    with h5py.File(f"{path}/trajectories.h5", "r") as f:
        t = f["time_au"][:] * AUT_FS
        act = f["active"][:]
        e_tot = f["e_kin_hartree"][:] + f["e_pot_hartree"][:]
        en = f["energies_hartree"][:]
        rho = f["rho"][:]
        fails = dict(f["failures"].attrs) if "failures" in f else {}
        dt = float(f.attrs["dt_au"]) * AUT_FS
    n_t, n_traj = act.shape
    print(f"{n_traj} trajectories, dt = {dt:.3f} fs, t_final = {t[-1]:.2f} fs")
    print(f"{'traj':>4} {'t_end fs':>8} {'drift mHa':>9} {'max|dE| mHa':>11} {'max step mHa':>12} "
          f"{'max d2E mHa':>11} {'rho11 end':>9} {'max|dE| before jump':>12} first jump fs")
    drifts, maxdev, smooth = [], [], []
    first_jump = np.full(n_traj, n_t)  # first frame after a discontinuity (n_t: none)
    for i in range(n_traj):
        n = int(np.flatnonzero(act[:, i]).max()) + 1
        e = e_tot[:n, i]
        d2 = np.abs(en[2:n, i] - 2 * en[1:n - 1, i] + en[:n - 2, i]).max(axis=1) if n > 2 else [0.0]
        jumps = np.flatnonzero(np.abs(np.diff(e)) > JUMP)
        if len(jumps):
            first_jump[i] = jumps[0] + 1
        m = min(n, first_jump[i])
        drifts.append(e[-1] - e[0])
        maxdev.append(np.abs(e - e[0]).max())
        smooth.append(np.abs(e[:m] - e[0]).max())
        print(f"{i:4d} {t[n - 1]:8.2f} {1e3 * (e[-1] - e[0]):9.3f} {1e3 * maxdev[-1]:11.3f} "
              f"{1e3 * np.abs(np.diff(e)).max():12.3f} {1e3 * np.max(d2):11.3f} "
              f"{rho[n - 1, i, 1, 1].real:9.3f} {1e3 * smooth[-1]:12.3f} "
              + (f"{t[first_jump[i]]:.2f}" if first_jump[i] < n_t else "-"))
    print(f"mean |drift| {1e3 * np.mean(np.abs(drifts)):.3f} mHa, largest |e_tot - e_tot(0)| "
          f"{1e3 * np.max(maxdev):.3f} mHa; before the first jump: largest "
          f"{1e3 * np.max(smooth):.3f} mHa, mean {1e3 * np.mean(smooth):.3f} mHa; "
          f"{int((first_jump < n_t).sum())} of {n_traj} trajectories have a jump "
          f"(single-step |d e_tot| > {1e3 * JUMP:g} mHa)")
    for k, v in sorted(fails.items(), key=lambda kv: int(kv[0])):
        print(f"failure traj {k}: {v[:300]}")

    trunc = act & (np.arange(n_t)[:, None] < first_jump[None, :])
    for w, what in [(act, "all running trajectories"),
                    (trunc, "each trajectory up to its first energy jump")]:
        if what.startswith("each") and trunc.sum() == act.sum():
            continue
        fit(t, w.astype(float), rho[:, :, 1, 1].real, f"S1 population P1 = <rho_11>, {what}")
        if rho.shape[-1] > 2:
            fit(t, w.astype(float), 1.0 - rho[:, :, 0, 0].real,
                f"excited population 1 - P0 = P1 + P2 + ..., {what}")
    print("reference: S1 valence decay 62 fs, Sellner, Barbatti, Mueller, Domcke, Lischka, "
          "Mol. Phys. 111, 2439 (2013)")


def fit(t, w, pop, what):
    n_t = len(t)
    print(f"\n=== {what}")
    p1 = (pop * w).sum(axis=1) / np.maximum(w.sum(axis=1), 1)
    print("\n t fs   P     running")
    for j in range(0, n_t, max(1, n_t // 20)):
        print(f"{t[j]:5.1f}  {p1[j]:.3f}  {int(w[j].sum())}")
    print(f"{t[-1]:5.1f}  {p1[-1]:.3f}  {int(w[-1].sum())}")
    ok = w.sum(axis=1) > 0  # fit only while trajectories are running
    tf, pf = t[ok], p1[ok]
    (tau1,), c1 = curve_fit(lambda x, tau: np.exp(-x / tau), tf, pf, p0=[50.0])
    (t0, tau2), c2 = curve_fit(lambda x, t0, tau: np.where(x < t0, 1.0, np.exp(-(x - t0) / tau)),
                               tf, pf, p0=[5.0, 50.0])
    print(f"\nfit exp(-t/tau): tau = {tau1:.1f} +- {np.sqrt(c1[0, 0]):.1f} fs")
    print(f"fit delayed exp: t0 = {t0:.1f} fs, tau = {tau2:.1f} +- {np.sqrt(c2[1, 1]):.1f} fs "
          f"(t0 + tau = {t0 + tau2:.1f} fs)")
    # sampling uncertainty: refit on swarms resampled from the trajectories (bootstrap)
    rng = np.random.default_rng(0)
    taus, taus_d = [], []
    n_traj = w.shape[1]
    for _ in range(N_BOOT):
        k = rng.integers(0, n_traj, n_traj)
        wb = w[:, k]
        pb = (pop[:, k] * wb).sum(axis=1) / np.maximum(wb.sum(axis=1), 1)
        okb = wb.sum(axis=1) > 0
        try:
            taus.append(curve_fit(lambda x, tau: np.exp(-x / tau), t[okb], pb[okb], p0=[50.0])[0][0])
            taus_d.append(curve_fit(lambda x, t0, tau: np.where(x < t0, 1.0, np.exp(-(x - t0) / tau)),
                                    t[okb], pb[okb], p0=[t0, tau2])[0][1])
        except RuntimeError:
            continue
    lo, hi = np.percentile(taus, [16, 84])
    lo_d, hi_d = np.percentile(taus_d, [16, 84])
    print(f"bootstrap over trajectories ({len(taus)} resamples), 16-84 % range: tau {lo:.0f}-{hi:.0f} fs "
          f"(simple), {lo_d:.0f}-{hi_d:.0f} fs (delayed)")


if __name__ == "__main__":
    main(sys.argv[1])
