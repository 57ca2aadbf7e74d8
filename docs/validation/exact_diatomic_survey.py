"""Survey of candidate diatomics for the exact reference: SA2-CASSCF(2,2) curves of alkali halides
with the halogen p-sigma orbital and the alkali s orbital active (ionic/covalent pair of 1Sigma+
states), warm-started along R. Plain PySCF (the sigma orbital is picked by its p_z character on the
halogen among the top occupied orbitals; PySCF's default HOMO/LUMO guess is the pi lone pair for
LiF/LiCl/NaCl/KF, which gives a Sigma/Pi pair instead, see docs/validation/exact_diatomic.md).

    python docs/validation/exact_diatomic_survey.py Li Cl 6-31+g 3.5,4,5,...   (bohr)

Output of the runs quoted in docs/validation/exact_diatomic.md: exact_diatomic_survey.txt.
"""
import numpy as np, sys
from pyscf import gto, scf, mcscf
a,b,basis=sys.argv[1:4]; Rs=[float(v) for v in sys.argv[4].split(',')]
mo=None; ci=None
for R in Rs:
    mol=gto.M(atom=f'{a} 0 0 0; {b} 0 0 {R}',unit='Bohr',basis=basis,verbose=0)
    mf=scf.RHF(mol).run()
    mc=mcscf.CASSCF(mf,2,2).state_average_([.5,.5]); mc.fix_spin_(ss=0)
    if mo is None:
        nocc=mol.nelectron//2; labs=mol.ao_labels()
        S=mol.intor('int1e_ovlp')
        zc=[sum((mf.mo_coeff[:,i]*(S@mf.mo_coeff[:,i]))[j] for j,l in enumerate(labs) if l.startswith('1') and 'pz' in l) for i in range(nocc)]
        sig=nocc-5+int(np.argmax(zc[-5:]))
        print('sigma MO (1-based)',sig+1,'homo',nocc,flush=True)
        mo=mc.sort_mo([sig+1,nocc+1])
    else:
        mo=mcscf.project_init_guess(mc,mo,prev_mol)
    mc.kernel(mo,ci); mo=mc.mo_coeff; ci=mc.ci; prev_mol=mol
    e=np.array(mc.e_states); print(f"{R:5.2f} {e} gap {27.2114*(e[1]-e[0]):.3f} eV conv {mc.converged}",flush=True)
