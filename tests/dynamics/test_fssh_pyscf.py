"""Surface hopping with the SA-CASSCF backend: the coupling vector used for the momentum rescaling
(computed only when a hop is attempted, from one extra rho-weighted force solve) is the
interstate vector h_01 = <u_0|dH|u_1> = (E_1 - E_0) d_01; checked against the term-by-term NAC
(itself checked against finite differences of overlaps) and, gauge-independently, against
finite differences of the overlaps |<u_0(x)|u_1(x +- delta e)>| along random directions."""

import numpy as np
import pytest

pytest.importorskip("pyscf")

from qhd_aimd.dynamics.fssh import coupling_vector  # noqa: E402
from qhd_aimd.dynamics.hopping import real_direction  # noqa: E402
from qhd_aimd.electronic.pyscf import CasscfBackend  # noqa: E402

pytestmark = pytest.mark.pyscf

X_LIH = np.array([0.0, 0.0, 0.0, 0.0, 0.3, 3.0])


@pytest.fixture(scope="module")
def setup():
    be = CasscfBackend(["Li", "H"], basis="sto-3g", ncas=2, nelecas=2, n_states=2, conv_tol=1e-12,
                       conv_tol_grad=1e-7)
    data = be.compute(X_LIH)
    f0 = be.force(data, np.diag([1.0, 0.0]))
    return be, data, f0


def test_coupling_vector_equals_nac_times_gap(setup):
    be, data, f0 = setup
    h = real_direction(coupling_vector(be, data, 0, 1, f0))
    _, nac = be.derivatives(data)
    ref = (data.energies[1] - data.energies[0]) * nac[0, 1]
    assert min(np.abs(h - ref).max(), np.abs(h + ref).max()) < 1e-6 * np.abs(ref).max()


def test_coupling_vector_vs_overlap_finite_differences(setup):
    """|d_01 . e| = lim |<u_0(x)|u_1(x + delta e)>| / delta: the mean of the +-delta values
    cancels the O(delta) term and is independent of every state's sign."""
    be, data, f0 = setup
    d01 = coupling_vector(be, data, 0, 1, f0) / (data.energies[1] - data.energies[0])
    rng = np.random.default_rng(0)
    delta = 1e-3
    for _ in range(2):
        e = rng.normal(size=6)
        e /= np.linalg.norm(e)
        moved = [be.compute(X_LIH + sgn * delta * e, reference=data) for sgn in (1, -1)]
        fd = np.mean([abs(be.overlap(data, b)[0, 1]) for b in moved]) / delta
        assert fd > 0.01 and abs(fd - abs(d01 @ e)) < 1e-4 * fd  # measured 1.6e-6 relative
