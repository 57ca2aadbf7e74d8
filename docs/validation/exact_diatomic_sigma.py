"""Alkali halides through the swarm's own backend with the sigma pair selected by
electronic.active_orbitals (CasscfBackend, Newton path, warm-started outwards along R as the
exact scan and the swarm do). Prints per R: the two SA2-CASSCF(2,2) energies, the gap, the largest
weight of px/py AOs in an active orbital (bond along z: 0 = both active orbitals sigma, 1 = one is
a pi orbital), the solver path and the active-orbital overlap with the previous point.

    python docs/validation/exact_diatomic_sigma.py Li F 6-31+g 4,7 2.95,3.5,4.0,...   (bohr)
    python docs/validation/exact_diatomic_sigma.py Li Cl 6-31+g 8,11 3.8,4.5,...

Output of the runs quoted in docs/validation/exact_diatomic.md: exact_diatomic_sigma.txt.
"""
import sys
import time

import numpy as np

from qhd_aimd.electronic.pyscf import CasscfBackend

a, b, basis = sys.argv[1:4]
orbs = [int(v) for v in sys.argv[4].split(",")]
rs = [float(v) for v in sys.argv[5].split(",")]
be = CasscfBackend(symbols=[a, b], basis=basis, ncas=2, nelecas=2, n_states=2, active_orbitals=orbs)
prev = None
for r in rs:
    t = time.time()
    try:
        d = be.compute(np.array([0, 0, 0, 0, 0, r]), reference=prev)
    except Exception as e:
        print(r, "FAIL", str(e)[:300], flush=True)
        break
    h = d.handle
    mol = h.mol()
    s = mol.intor("int1e_ovlp")
    perp = [i for i, lab in enumerate(mol.ao_labels()) if "px" in lab or "py" in lab]
    act = h.mo_coeff[:, h.ncore:h.ncore + 2]
    w = max(c[perp] @ (s @ c)[perp] for c in act.T)
    print(f"{r:5.2f} E {d.energies} gap {(d.energies[1] - d.energies[0]) * 27.2114:.3f} eV "
          f"pi {w:.1e} {h.info['path']} ov {h.info.get('active_overlap')} {time.time() - t:.1f}s",
          flush=True)
    prev = d
