"""Plot and tabulate N-state SA-CASSCF curves of an exact diatomic reference (``exact_curves.csv``
of ``qhd-aimd exact``): adiabats, diagonal diabats (overlap-transported frame) and the
neighbouring-pair couplings |d_n,n+1|; prints the avoided crossings (local gap minima).

    python docs/validation/exact_diatomic_curves_nstate.py OUT.png LABEL DIR [R_MAX]
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

HARTREE_EV = 27.211386245988
out, label, d = sys.argv[1:4]
r_max = float(sys.argv[4]) if len(sys.argv) > 4 else None
data = np.genfromtxt(f"{d}/exact_curves.csv", delimiter=",", names=True)
r = data["r_bohr"]
n = sum(1 for k in data.dtype.names if k.startswith("e") and k.endswith("_hartree"))
e = np.column_stack([data[f"e{k}_hartree"] for k in range(n)])
i_eq = int(np.argmin(e[:, 0]))
e0 = e[i_eq, 0]
fig, (ax, bx) = plt.subplots(2, 1, figsize=(7.5, 7.5), sharex=True,
                             gridspec_kw={"height_ratios": [2, 1]})
for k in range(n):
    ax.plot(r, (e[:, k] - e0) * HARTREE_EV, lw=1.6, label=f"adiabat {k}")
    ax.plot(r, (data[f"h{k}{k}_hartree"] - e0) * HARTREE_EV, ":", color="0.4", lw=0.9)
ax.plot([], [], ":", color="0.4", label="diabats (diagonal)")
ax.set(ylabel="energy above the X minimum (eV)", title=label, ylim=(-0.2, None))
ax.legend(fontsize=7, ncol=2)
for k in range(n - 1):
    bx.semilogy(r[:-1], data[f"abs_d{k}{k + 1}_per_bohr"][:-1], lw=1.2,
                label=f"|d_{k}{k + 1}| (1/bohr)")
bx.set(xlabel="R (bohr)", ylim=(1e-3, None))
bx.legend(fontsize=7)
if r_max:
    bx.set_xlim(r[0], r_max)
fig.tight_layout()
fig.savefig(out, dpi=110)
print(f"{label}: {len(r)} points on [{r[0]:.2f}, {r[-1]:.2f}] bohr; X minimum {r[i_eq]:.3f} bohr")
print("vertical energies at the X minimum (eV): "
      + " ".join(f"{(e[i_eq, k] - e0) * HARTREE_EV:.3f}" for k in range(n)))
print("at the scan's outer end (eV): " + " ".join(f"{(e[-1, k] - e0) * HARTREE_EV:.3f}" for k in range(n)))
for k in range(n - 1):
    gap = (e[:, k + 1] - e[:, k]) * HARTREE_EV
    dk = data[f"abs_d{k}{k + 1}_per_bohr"][:-1]
    loc = [j for j in range(1, len(r) - 1) if gap[j] <= gap[j - 1] and gap[j] <= gap[j + 1]
           and r[j] > r[i_eq]]
    parts = []
    for j in loc:
        w = (r[:-1] > r[j] - 1.0) & (r[:-1] < r[j] + 1.0)
        parts.append(f"{gap[j]:.3f} eV at {r[j]:.2f} bohr (peak |d| {dk[w].max():.3f} /bohr)")
    print(f"pair {k}-{k + 1}: avoided crossings beyond R_e: " + "; ".join(parts))
print("\nR (bohr) and energies above the X minimum (eV), every ~1 bohr:")
for x in np.arange(np.ceil(r[0]), r[-1] + 1e-9, 1.0):
    j = int(np.argmin(np.abs(r - x)))
    print(f"{r[j]:6.2f} " + " ".join(f"{(e[j, k] - e0) * HARTREE_EV:7.3f}" for k in range(n)))
