"""Per-trajectory snapshots of one Tully case with ehrenfest_qc (issue 11 diagnosis, docs/physics.md
"Tully 3 at low momentum"): x, p, p1, mean-field and quantum-coupling forces, raw adiabatic momenta, K_01, energies
every 10 steps, saved next to the script as .npy.

Usage: python docs/validation/tully_diag.py tully_extended 8 100 [key=value Propagator options] [dc.NAME=value]
"""
"""Diagnostic: one Tully case, ehrenfest_qc, snapshots of x, p, p1, f_qc per trajectory."""
import sys, time, numpy as np
sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
import tully_grid as tg
from qhd_aimd.config import parse_config
from qhd_aimd.dynamics.integrator import Propagator
from qhd_aimd.electronic.models import ModelBackend, get_model
from qhd_aimd.prepare.wavepacket import sample_wavepacket
name, k, n = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
from qhd_aimd.dynamics import decoherence as dc
args = [a for a in sys.argv[4:] if not a.startswith("dc.")]
for a in sys.argv[4:]:
    if a.startswith("dc."):
        k_, v_ = a[3:].split("="); setattr(dc, k_, float(v_))
opts = tg.propagator_options(args)
x0 = -15.0 if name == "tully_extended" else -10.0
dt = 4.0
t_final = dt * round(2000 * (abs(x0) + 15.0) / k / dt)
cfg = parse_config({"system": {"model": name}, "initial": {"position_bohr": x0, "momentum_au": k, "width_bohr": 20/k, "n_trajectories": n},
                    "dynamics": {"dt_au": dt, "t_final_au": t_final}})
f = cfg.fields
kw = dict(bandwidth_factor=f.bandwidth_factor, bandwidth_bohr=f.bandwidth_bohr, ridge=f.ridge, cutoff=f.cutoff_sigma, demodulate=f.demodulate,
          quantum_force=f.quantum_force, coherence_gradient=f.coherence_gradient, quantum_momentum=f.quantum_momentum, energy_correction=cfg.dynamics.energy_correction)
pos, mom = sample_wavepacket(x0, k, 20/k, n, 1)
prop = Propagator(ModelBackend(get_model(name)), "ehrenfest_qc", dt, 10, **{**kw, **opts})
s = prop.initialize(np.arange(n), pos, mom, np.zeros(n, int))
nst = cfg.dynamics.n_steps
t0 = time.time()
snaps = []
for i in range(nst):
    s = prop.step(s)
    if i % 10 == 0 or i == nst - 1:
        pops = np.real(np.diagonal(s.rho, axis1=1, axis2=2))
        ek, ep = s.energies(prop.masses)
        snaps.append(dict(t=s.time_au, ek=ek.copy(), ep=ep.copy(), x=s.positions[:, 0].copy(), p=s.momenta[:, 0].copy(), p1=pops[:, 1].copy(),
                          fqc=s.f_qc[:, 0].copy(), fmf=s.f_meanfield[:, 0].copy(), f=s.adiabatic_momenta[:, :, 0].copy(), K=np.imag(s.extra[:, 0, 1] / np.where(np.abs(s.rho[:, 0, 1]) > 1e-12, s.rho[:, 0, 1], 1.0))))
np.save(sys.argv[0].replace(".py", "") + f"_{name}_{int(k)}_{'_'.join(sys.argv[4:])}.npy", snaps, allow_pickle=True)
pops = np.real(np.diagonal(s.rho, axis1=1, axis2=2)); right = s.positions[:, 0] > 0
print("T", (pops * right[:, None]).mean(0), "R", (pops * ~right[:, None]).mean(0), "D12", np.mean(np.abs(s.rho[:, 0, 1])**2), "wall", time.time() - t0)
