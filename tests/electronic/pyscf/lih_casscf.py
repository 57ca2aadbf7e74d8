"""The LiH SA2-CAS(2,2)/STO-3G backend and geometry shared by the SA-CASSCF backend tests."""

import numpy as np

from qhd_aimd.electronic.pyscf import CasscfBackend

X_LIH = np.array([0.0, 0.0, 0.0, 0.0, 0.3, 3.0])  # bent off-axis so that all components matter


def lih(**kw):
    opts = dict(basis="sto-3g", ncas=2, nelecas=2, n_states=2, conv_tol=1e-12, conv_tol_grad=1e-7)
    opts.update(kw)
    return CasscfBackend(["Li", "H"], **opts)
