"""Exact (J = 0) wavepackets of LiH on its Sigma+-only SA-CASSCF curves (electronic.symmetry:
sigma), started on each excited state: which avoided crossing transfers population within the
run. Scans R on the config's exact_scan range (spacing 0.1 bohr, bisected where the frame turns
by > 0.02 rad), writes the curve table, then propagates the vibrational ground state of X placed
on every excited state.

    PYTHONPATH=. python docs/validation/exact_diatomic_lih_sigma.py CONFIG OUT_DIR [T_FS]
"""
import sys
import time

import numpy as np

from qhd_aimd.config import load_config
from qhd_aimd.exact_diatomic import diabatize, propagate_diatomic, run_exact_diatomic
from qhd_aimd.units import AUT_FS, HARTREE_EV

cfg = load_config(sys.argv[1])
out = sys.argv[2]
t_fs = float(sys.argv[3]) if len(sys.argv) > 3 else 150.0
t0 = time.time()
curves, _ = run_exact_diatomic(cfg, out, warn=False)
print(f"{curves.meta.get('method')}: {len(curves.r_bohr)} curve points on "
      f"[{curves.r_bohr[0]:.2f}, {curves.r_bohr[-1]:.2f}] bohr, scan wall {time.time() - t0:.0f} s, "
      f"reduced mass {curves.reduced_mass:.1f} m_e", flush=True)
dia = diabatize(curves)
r, e = curves.r_bohr, curves.energies
n = curves.n_states
i_eq = int(np.argmin(e[:, 0]))
print(f"X minimum {r[i_eq]:.3f} bohr; energies there (eV above X min): "
      + " ".join(f"{(e[i_eq, k] - e[i_eq, 0]) * HARTREE_EV:.3f}" for k in range(n)))
print("asymptotes (eV above X min): "
      + " ".join(f"{(e[-1, k] - e[i_eq, 0]) * HARTREE_EV:.3f}" for k in range(n)))
for k in range(n - 1):
    gap = (e[:, k + 1] - e[:, k]) * HARTREE_EV
    d = dia.abs_couplings[:, k, k + 1]
    # local minima of the gap (avoided crossings) beyond 3.5 bohr
    loc = [j for j in range(1, len(r) - 1) if gap[j] <= gap[j - 1] and gap[j] <= gap[j + 1]
           and r[j] > 3.5]
    print(f"pair {k}-{k + 1}: gap minima " + ", ".join(f"{gap[j]:.3f} eV at {r[j]:.2f}" for j in loc)
          + f"; max |d| {d.max():.3f} /bohr at {0.5 * (r[d.argmax()] + r[d.argmax() + 1]):.2f}")
dt = cfg.dynamics.dt
for st in range(1, n):
    t1 = time.time()
    res = propagate_diatomic(curves, st, dt, int(round(t_fs / (dt * AUT_FS))), warn=False)
    p = res.populations
    dp = np.max(np.abs(p - p[0]), axis=0)
    print(f"\nstart on state {st}: max |dP_n| over {t_fs:.0f} fs " + " ".join(f"{v:.4f}" for v in dp)
          + f"; edge {res.edge_probability:.1e}; grid {res.meta['grid_points']} points on "
          f"[{res.meta['grid_bounds_bohr'][0]:.2f}, {res.meta['grid_bounds_bohr'][1]:.2f}] bohr; "
          f"{time.time() - t1:.0f} s", flush=True)
    for tt in (10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 125, 150, 175, 200):
        j = int(round(tt / (dt * AUT_FS)))
        if j < len(p):
            print(f"  t {tt:4d} fs  P " + " ".join(f"{v:.4f}" for v in p[j])
                  + "  <R>_n " + " ".join(f"{v:6.2f}" for v in res.bond_mean[j])
                  + "  D " + " ".join(f"{v:.4f}" for v in res.coherence[j]))
