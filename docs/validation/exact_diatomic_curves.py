"""Plot and tabulate the SA-CASSCF curves, |d_01| and diabatic coupling of exact diatomic
references (``exact_curves.csv`` written by ``qhd-aimd exact``).

    python docs/validation/exact_diatomic_curves.py OUT.png LABEL=DIR [LABEL=DIR ...]
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

HARTREE_EV = 27.211386245988
out, runs = sys.argv[1], [a.split("=", 1) for a in sys.argv[2:]]
fig, axes = plt.subplots(2, len(runs), figsize=(5.5 * len(runs), 6.5), squeeze=False,
                         sharex="col")
for k, (label, d) in enumerate(runs):
    data = np.genfromtxt(f"{d}/exact_curves.csv", delimiter=",", names=True)
    r = data["r_bohr"]
    e0 = data["e0_hartree"].min()
    ax, bx = axes[0][k], axes[1][k]
    for n in (0, 1):
        ax.plot(r, (data[f"e{n}_hartree"] - e0) * HARTREE_EV, lw=1.6, label=f"adiabat {n}")
    for key, st in (("h00_hartree", "--"), ("h11_hartree", ":")):
        ax.plot(r, (data[key] - e0) * HARTREE_EV, st, color="0.4", lw=1.0, label=f"diabatic {key[1:3]}")
    ax.set(ylabel="energy (eV)", title=label, ylim=(-0.2, None))
    ax.legend(fontsize=7)
    bx.semilogy(r[:-1], data["abs_d01_per_bohr"][:-1], lw=1.4, label="|d_01| (1/bohr)")
    bx.semilogy(r, np.abs(data["h01_hartree"]) * HARTREE_EV, lw=1.0, label="|H_01| (eV)")
    bx.set(xlabel="R (bohr)")
    bx.legend(fontsize=7)
    gap = (data["e1_hartree"] - data["e0_hartree"]) * HARTREE_EV
    i = int(np.argmax(data["abs_d01_per_bohr"][:-1]))
    j = int(np.argmin(gap[r > r[np.argmin(data["e0_hartree"])]]) + np.sum(r <= r[np.argmin(data["e0_hartree"])]))
    print(f"{label}: {len(r)} points on [{r[0]:.2f}, {r[-1]:.2f}] bohr; minimum of E0 at "
          f"{r[np.argmin(data['e0_hartree'])]:.3f} bohr; vertical gap there "
          f"{gap[np.argmin(data['e0_hartree'])]:.3f} eV; smallest gap beyond it {gap[j]:.4f} eV "
          f"at {r[j]:.3f} bohr; max |d01| {data['abs_d01_per_bohr'][i]:.3f} /bohr at {r[i]:.3f} bohr")
fig.tight_layout()
fig.savefig(out, dpi=110)
