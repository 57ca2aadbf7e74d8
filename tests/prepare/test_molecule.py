from pathlib import Path

import numpy as np
import pytest

from qhd_aimd.errors import ConfigError
from qhd_aimd.prepare.molecule import read_xyz, wigner_sample
from qhd_aimd.units import ANGSTROM_BOHR, KB_HARTREE_PER_K

ROOT = Path(__file__).parents[2]


def test_read_xyz(tmp_path):
    syms, x = read_xyz(ROOT / "config" / "molecules" / "lih.xyz")
    assert syms == ["Li", "H"]
    assert x[5] == pytest.approx(1.595 * ANGSTROM_BOHR)
    bad = tmp_path / "bad.xyz"
    bad.write_text("3\ncomment\nH 0 0 0\n")
    with pytest.raises(ConfigError, match="header says 3"):
        read_xyz(bad)
    with pytest.raises(ConfigError, match="not found"):
        read_xyz(tmp_path / "nope.xyz")


@pytest.mark.parametrize("temperature", [0.0, 2000.0])
def test_wigner_moments(temperature):
    freqs = np.array([0.01, 0.02])
    masses = np.array([1000.0, 3000.0])
    modes = np.diag(1 / np.sqrt(masses))  # mass-weighted -> Cartesian
    n = 20000
    pos, mom = wigner_sample(freqs, modes, masses, n, temperature, seed=7)
    q = pos * np.sqrt(masses)
    p = mom / np.sqrt(masses)
    w = 1 / np.tanh(freqs / (2 * KB_HARTREE_PER_K * temperature)) if temperature else 1.0
    q2, p2 = w / (2 * freqs), w * freqs / 2
    tol = 4 * np.sqrt(2 / n)  # 4 sigma on a variance estimate
    np.testing.assert_allclose((q**2).mean(0), q2, rtol=tol)
    np.testing.assert_allclose((p**2).mean(0), p2, rtol=tol)
    if temperature:
        assert np.all(w > 1.05)  # the thermal factor was really tested


def test_wigner_streams_independent_of_n():
    freqs, modes, masses = np.array([0.01]), np.array([[0.03]]), np.array([1000.0])
    a = wigner_sample(freqs, modes, masses, 3, seed=5)
    b = wigner_sample(freqs, modes, masses, 10, seed=5)
    np.testing.assert_array_equal(a[0], b[0][:3])


@pytest.mark.pyscf
def test_prepare_lih(tmp_path):
    from qhd_aimd.config import parse_config
    from qhd_aimd.prepare.molecule import load_initial_conditions, prepare_molecule
    cfg = parse_config({
        "system": {"molecule": {"xyz": str(ROOT / "config" / "molecules" / "lih.xyz")},
                   "electronic": {"basis": "sto-3g", "active_space": [2, 2], "n_states": 2}},
        "initial": {"n_trajectories": 4, "seed": 3, "state_window_eV": [0.5, 10.0]},
        "dynamics": {"dt_au": 5.0, "t_final_au": 10.0}})
    ic = load_initial_conditions(prepare_molecule(cfg, tmp_path))
    assert ic["positions_bohr"].shape == (4, 6) and ic["momenta_au"].shape == (4, 6)
    assert ic["symbols"] == ["Li", "H"]
    assert list(ic["states"]) == [1] * 4
    (f,) = ic["frequencies_cm1"]
    assert 1500 < f < 2300  # RHF/STO-3G LiH stretch
    # total momentum ~ 0 (no translation sampled)
    np.testing.assert_allclose(ic["momenta_au"].reshape(4, 2, 3).sum(1), 0, atol=1e-8)
