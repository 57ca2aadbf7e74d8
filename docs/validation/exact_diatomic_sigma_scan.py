"""Quick survey scan (plain PySCF, energies only): SA-N-CASSCF(2, ncas) of a diatomic with PySCF's
symmetry-adapted CASSCF, every active orbital and every averaged state in one irrep (A1 of C_inf_v:
1Sigma+), warm-started outwards. Used to choose the molecule of issue 15 (output:
exact_diatomic_sigma_scan.txt; the backend's own scan with electronic.symmetry: sigma gives the
same energies to 1e-6 hartree, tests/electronic/pyscf/test_solver.py).

    python docs/validation/exact_diatomic_sigma_scan.py ATOM_A ATOM_B BASIS NSTATES NCAS IRREP R1,R2,...
"""
import sys, time
import numpy as np
from pyscf import gto, scf, mcscf
from pyscf.mcscf import addons
a, b, basis = sys.argv[1:4]
nst, ncas, irrep = int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
Rs = [float(v) for v in sys.argv[7].split(',')]
mo = ci = prev = None
t0 = time.time()
for R in Rs:
    mol = gto.M(atom=f'{a} 0 0 0; {b} 0 0 {R}', unit='Bohr', basis=basis, verbose=0, symmetry=True)
    mf = scf.RHF(mol).run()
    mc = mcscf.CASSCF(mf, ncas, 2)
    mc.fcisolver.wfnsym = irrep
    mc = mc.state_average_([1.0 / nst] * nst)
    mc.fix_spin_(ss=0)
    if mo is None:
        mo = mcscf.sort_mo_by_irrep(mc, mf.mo_coeff, {irrep: ncas})
    else:
        mo = mcscf.project_init_guess(mc, mo, prev)
    mc.max_cycle_macro = 200
    mc.kernel(mo, ci)
    mo, ci, prev = mc.mo_coeff, mc.ci, mol
    e = np.array(mc.e_states)
    print(f"{R:6.2f} " + " ".join(f"{x:.6f}" for x in e) + "  gaps(eV) " +
          " ".join(f"{27.2114*(e[i+1]-e[i]):.3f}" for i in range(nst - 1)) +
          f" conv {mc.converged} t {time.time()-t0:.0f}", flush=True)
