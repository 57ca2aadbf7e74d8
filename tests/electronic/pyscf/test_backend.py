"""CasscfBackend: construction (masses, labels, config, validation) and the protocol's gauge
covariance (overlaps and force under a sign flip of a state)."""

import numpy as np
import pytest

pyscf = pytest.importorskip("pyscf")

from lih_casscf import X_LIH  # noqa: E402
from qhd_aimd.electronic.base import ElectronicData  # noqa: E402
from qhd_aimd.electronic.pyscf import CasscfBackend  # noqa: E402
from qhd_aimd.units import AMU_ME  # noqa: E402

pytestmark = pytest.mark.pyscf


def test_masses_labels(backend):
    assert backend.masses.shape == (6,)
    assert backend.masses[0] == pytest.approx(7.016004 * AMU_ME, rel=1e-7)  # 7Li
    assert backend.masses[3] == pytest.approx(1.007825 * AMU_ME, rel=1e-7)
    assert backend.labels == ["Li1.x", "Li1.y", "Li1.z", "H1.x", "H1.y", "H1.z"]


def test_from_config():
    from qhd_aimd.config import SystemSpec
    spec = SystemSpec.model_validate({"molecule": {"xyz": "x.xyz"},
                                      "electronic": {"basis": "sto-3g", "active_space": [2, 2],
                                                     "n_states": 2, "force": "term_by_term"}})
    b = CasscfBackend.from_config(spec, ["Li", "H"])
    assert (b.nelecas, b.ncas, b.n_states, b.force_mode, b.ncore) == (2, 2, 2, "term_by_term", 1)


def test_active_switch_from_config():
    from qhd_aimd.config import SystemSpec
    spec = SystemSpec.model_validate({"molecule": {"xyz": "x.xyz"},
                                      "electronic": {"basis": "sto-3g", "active_switch": "stop",
                                                     "active_overlap_min": 0.9}})
    b = CasscfBackend.from_config(spec, ["Li", "H"])
    assert (b.active_switch, b.active_overlap_min) == ("stop", 0.9)


@pytest.mark.parametrize("orbitals,msg", [([4], "need 2 distinct"), ([4, 4], "need 2 distinct"),
                                          ([0, 7], "1..11"), ([4, 99], "1..11")])
def test_active_orbitals_validated_against_the_basis(orbitals, msg):
    from qhd_aimd.errors import ConfigError

    with pytest.raises(ConfigError, match=f"electronic.active_orbitals.*{msg}"):
        CasscfBackend(symbols=["Li", "H"], basis="6-31g", ncas=2, nelecas=2,
                      active_orbitals=orbitals)


def test_gauge_covariance(backend, data0):
    """Flip the sign of state 1 in a handle: overlaps transform as P S, the force with P rho P
    is unchanged."""
    b = backend.compute(X_LIH + np.array([0, 0, 0.05, 0, 0, -0.05]), reference=data0)
    h = data0.handle
    flipped = h.with_ci([h.ci[0], -h.ci[1]])
    d2 = ElectronicData(positions=data0.positions, energies=data0.energies, handle=flipped)
    p = np.diag([1.0, -1.0])
    np.testing.assert_allclose(backend.overlap(d2, b), p @ backend.overlap(data0, b), atol=1e-14)
    rho = np.array([[0.7, 0.2 - 0.3j], [0.2 + 0.3j, 0.3]])
    f = backend.force(data0, rho)
    f2 = backend.force(d2, p @ rho @ p)
    np.testing.assert_allclose(f2, f, atol=1e-10)
    assert np.abs(backend.force(d2, rho) - f).max() > 1e-4  # the flip is not a no-op
