"""Survey of candidate diatomics for the exact reference: SA2-CASSCF(2,2) curves of alkali halides
with the halogen p-sigma orbital and the alkali s orbital active (ionic/covalent pair of 1Sigma+
states), warm-started along R. Plain PySCF (the sigma orbital is picked by its p_z character on the
halogen among the top occupied orbitals; PySCF's default HOMO/LUMO guess is the pi lone pair for
LiF/LiCl/NaCl/KF, which gives a Sigma/Pi pair instead, see docs/validation/exact_diatomic.md).

    python docs/validation/exact_diatomic_survey.py Li Cl 6-31+g 3.5,4,5,...   (bohr) [ncas]

ncas (default 2): the halogen p-sigma orbital plus the lowest ncas - 1 virtual orbitals without
px/py weight (sigma; the first is the alkali s orbital, the LUMO in every case run here).

Output of the runs quoted in docs/validation/exact_diatomic.md: exact_diatomic_survey.txt.
"""

import sys

import numpy as np
from pyscf import gto, mcscf, scf

a, b, basis = sys.argv[1:4]
Rs = [float(v) for v in sys.argv[4].split(',')]
ncas = int(sys.argv[5]) if len(sys.argv) > 5 else 2
mo = ci = prev_mol = None
for R in Rs:
    mol = gto.M(atom=f'{a} 0 0 0; {b} 0 0 {R}', unit='Bohr', basis=basis, verbose=0)
    mf = scf.RHF(mol).run()
    mc = mcscf.CASSCF(mf, ncas, 2).state_average_([.5, .5])
    mc.fix_spin_(ss=0)
    if mo is None:
        nocc = mol.nelectron // 2
        labs = mol.ao_labels()
        S = mol.intor('int1e_ovlp')

        def weight(i, test):
            c = mf.mo_coeff[:, i]
            return sum((c * (S @ c))[j] for j, lab in enumerate(labs) if test(lab))
        zc = [weight(i, lambda lab: lab.startswith('1') and 'pz' in lab) for i in range(nocc)]
        sig = nocc - 5 + int(np.argmax(zc[-5:]))
        print('sigma MO (1-based)', sig + 1, 'homo', nocc, flush=True)
        lst = [sig + 1]
        for i in range(nocc, mol.nao):
            if weight(i, lambda lab: 'px' in lab or 'py' in lab) < 0.1:
                lst.append(i + 1)
            if len(lst) == ncas:
                break
        print('active (1-based)', lst, flush=True)
        mo = mc.sort_mo(lst)
    else:
        mo = mcscf.project_init_guess(mc, mo, prev_mol)
    mc.kernel(mo, ci)
    mo, ci, prev_mol = mc.mo_coeff, mc.ci, mol
    e = np.array(mc.e_states)
    print(f"{R:5.2f} {e} gap {27.2114*(e[1]-e[0]):.3f} eV conv {mc.converged}", flush=True)
