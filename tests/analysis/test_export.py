"""extxyz export (qhd_aimd/analysis/export.py), read back with ASE."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import yaml

from qhd_aimd.errors import QhdError
from qhd_aimd.io.trajectories import FORMAT, FRAME_KEYS, _atomic_write_h5
from qhd_aimd.units import AMU_ME, AUT_FS, BOHR_ANGSTROM, HARTREE_EV

ase_io = pytest.importorskip("ase.io")

@pytest.mark.parametrize("hopping", [False, True])
def test_extxyz_read_by_ase(tmp_path, hopping, fake_run):
    data = fake_run(tmp_path, hopping=hopping)
    proc = subprocess.run([sys.executable, "-m", "qhd_aimd", "export", str(tmp_path),
                           "--format", "extxyz", "--out", str(tmp_path / "x")],
                          capture_output=True, text=True, check=True)
    assert "3 trajectories" in proc.stdout
    files = sorted((tmp_path / "x").glob("traj_*.extxyz"))
    assert [f.name for f in files] == ["traj_000.extxyz", "traj_001.extxyz", "traj_002.extxyz"]
    for t, f in enumerate(files):
        frames = ase_io.read(f, index=":")
        assert len(frames) == 5
        for k, at in enumerate(frames):
            assert at.get_chemical_symbols() == ["C", "N", "H", "H", "H", "H"]
            np.testing.assert_allclose(at.get_positions(),
                                       data["positions_bohr"][k, t].reshape(-1, 3) * BOHR_ANGSTROM,
                                       rtol=0, atol=1e-9)
            np.testing.assert_allclose(at.get_masses(), data["masses_au"][::3] / AMU_ME, rtol=1e-12)
            assert at.get_masses()[4] == pytest.approx(2.014102)  # the deuterium survives
            # velocities in Å/fs from ASE units == p / M converted from atomic units
            v_ref = (data["momenta_au"][k, t] / data["masses_au"]).reshape(-1, 3) * BOHR_ANGSTROM / AUT_FS
            from ase import units

            np.testing.assert_allclose(at.get_velocities() * units.fs, v_ref, rtol=1e-8, atol=1e-14)
            info = at.info
            assert info["Time"] == pytest.approx(20.0 * k * AUT_FS, rel=1e-9)
            e_tot = data["e_kin_hartree"][k, t] + data["e_pot_hartree"][k, t]
            assert info["e_tot_hartree"] == pytest.approx(e_tot, rel=1e-11)
            assert info["e_tot_eV"] == pytest.approx(e_tot * HARTREE_EV, rel=1e-11)
            np.testing.assert_allclose(info["energies_eV"],
                                       data["energies_hartree"][k, t] * HARTREE_EV, rtol=1e-9)
            pops = np.real(np.diagonal(data["rho"][k, t]))
            np.testing.assert_allclose(info["populations"], pops, rtol=1e-9, atol=1e-12)
            assert sum(info["populations"]) == pytest.approx(1.0, abs=1e-9)
            assert info["active"] == bool(data["active"][k, t])
            if hopping:
                assert info["active_state"] == data["active_state"][k, t]
            else:
                assert "active_state" not in info


def test_export_model_run_refused(tmp_path):
    from qhd_aimd.analysis.export import export_extxyz

    cfg = yaml.safe_dump({"system": {"model": "tully_simple"}})
    frame = {k: np.zeros((2, 1)) for k in FRAME_KEYS}
    frame.update(step=np.int64(0), time_au=np.float64(0.0), rho=np.zeros((2, 2, 2)),
                 energies_hartree=np.zeros((2, 2)), e_kin_hartree=np.zeros(2),
                 e_pot_hartree=np.zeros(2), active=np.ones(2, bool))
    _atomic_write_h5(tmp_path / "trajectories.h5", [frame], {"format": FORMAT, "config": cfg})
    with pytest.raises(QhdError, match="analytic-model run"):
        export_extxyz(tmp_path)
    with pytest.raises(QhdError, match="not found"):
        export_extxyz(tmp_path / "nothing")
