"""Exact (J = 0) wavepacket of KCl on its SA2-CASSCF(2,2)/6-31+G curves: the ionic/covalent
crossing (docs/physics.md, "Exact reference on a real diatomic"). Scans R in [3.2, 24] bohr (spacing 0.2 bohr, bisected where the mixing angle turns by > 0.02 rad) (the
default range r_xyz + 12 bohr stops short of the crossing), then propagates the vibrational
ground state of X placed on the upper state for 400 fs.

    PYTHONPATH=. python docs/validation/exact_diatomic_kcl.py OUT_DIR   (> exact_diatomic_kcl.txt)
"""
import sys
import time

import numpy as np

from qhd_aimd.config import parse_config
from qhd_aimd.exact_diatomic import diabatize, run_exact_diatomic, write_exact_diatomic
from qhd_aimd.units import HARTREE_EV

out = sys.argv[1] if len(sys.argv) > 1 else "kcl_exact"
cfg = parse_config(dict(
    name="kcl_exact",
    system=dict(molecule=dict(xyz="config/molecules/kcl.xyz"),
                electronic=dict(basis="6-31+g", active_space=[2, 2], n_states=2)),
    initial=dict(sampling="wigner", n_trajectories=1, state=1),
    dynamics=dict(dt_fs=1.0, t_final_fs=400.0)))
t0 = time.time()
curves, res = run_exact_diatomic(cfg, out, r_range=(3.2, 24.0), dr=0.2, progress=None)
write_exact_diatomic(curves, res, out)
dia = diabatize(curves)
gap = (curves.energies[:, 1] - curves.energies[:, 0]) * HARTREE_EV
i = int(np.argmin(np.where(curves.r_bohr > 8, gap, np.inf)))
k = int(np.argmax(dia.abs_coupling))
print(f"curve points {len(curves.r_bohr)}, wall {time.time() - t0:.0f} s; reduced mass "
      f"{curves.reduced_mass:.1f} m_e")
print(f"smallest gap beyond 8 bohr: {gap[i]:.4f} eV at R = {curves.r_bohr[i]:.3f} bohr; "
      f"max |d01| {dia.abs_coupling[k]:.3f} /bohr at {curves.r_bohr[k]:.3f} bohr")
print("meta", res.meta)
for j in range(0, len(res.time_fs), 25):
    print(f"t {res.time_fs[j]:6.1f} fs  P0 {res.populations[j, 0]:.5f}  P1 {res.populations[j, 1]:.5f}  "
          f"D01 {res.decoherence[j]:.5f}  <R>_0 {res.bond_mean[j, 0]:8.3f}  <R>_1 {res.bond_mean[j, 1]:8.3f}")
