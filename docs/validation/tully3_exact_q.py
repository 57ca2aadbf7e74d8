"""Exact projected quantum momentum on Tully 3 (issue 11 diagnosis, docs/physics.md "Tully 3 at low momentum").

Usage: python docs/validation/tully3_exact_q.py K   (x0 = -15, width 20/K; prints every 400 a.u. the total density
n (relative), the exact adiabatic population p1, Q = -1/2 d ln n and Q_01 = p1 Q_0 + p0 Q_1, Q_k = -1/2 d ln |chi_k|^2)
"""
import numpy as np, sys
from qhd_aimd.exact import propagate, make_grid
from qhd_aimd.electronic.models import get_model
k = float(sys.argv[1]); x0 = -15.0; sig = 20.0 / k
model = get_model("tully_extended")
t_final = 4.0 * round(2000 * 30 / k / 4)
snaps = {}
def snap(i, psi):
    snaps[i] = psi.copy()
dt = 200.0
res = propagate(model, x0, k, sig, 0, dt, int(t_final // dt), snapshot=snap)
grid = make_grid(model, np.array([x0]), np.array([k]), np.array([sig]), 0, t_final)
x = grid.axes[0]
e, v = np.linalg.eigh(model.h(x[:, None]))
for i in sorted(snaps)[::2]:
    psi = snaps[i]
    chi = np.einsum("xab,ax->bx", v.conj(), psi)  # adiabatic (gauge irrelevant for densities)
    nk = np.abs(chi) ** 2
    n = nk.sum(0)
    m = n > 1e-4 * n.max()
    p1 = nk[1] / np.where(n > 0, n, 1)
    dx = x[1] - x[0]
    q = [-0.5 * np.gradient(np.log(np.maximum(nk[j], 1e-300)), dx) for j in range(2)]
    q01 = p1 * q[0] + (1 - p1) * q[1]
    qtot = -0.5 * np.gradient(np.log(np.maximum(n, 1e-300)), dx)
    print(f"t={i*dt:.0f}")
    sel = np.flatnonzero(m)
    for j in sel[:: max(1, len(sel) // 14)]:
        if nk[1, j] > 1e-3 * n.max() or True:
            print(f"  x={x[j]:6.2f} n={n[j]/n.max():.3f} p1={p1[j]:.3f} Q={qtot[j]:7.3f} Q01={q01[j]:7.3f}")
