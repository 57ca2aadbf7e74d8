"""extxyz export (read back with ASE) and named internal coordinates."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import yaml

from qhd_aimd.analysis.coordinates import (angle, bond, dihedral, internal_coordinates,
                                           load_coordinates, parse_analysis, pyramidalization,
                                           write_coordinates)
from qhd_aimd.errors import ConfigError, QhdError
from qhd_aimd.io.trajectories import FORMAT, FRAME_KEYS, _atomic_write_h5
from qhd_aimd.units import AMU_ME, AUT_FS, BOHR_ANGSTROM, HARTREE_EV

ase_io = pytest.importorskip("ase.io")

SYMBOLS = ["C", "N", "H", "H", "H", "H"]
MASSES_AMU = np.array([12.0, 14.003074, 1.007825, 1.007825, 2.014102, 1.007825])  # one D


def _fake_run(path, n_frames=5, n_traj=3, n_states=3, hopping=False, seed=0):
    """A trajectories.h5 with random but consistent molecular data (6 atoms, 3 states)."""
    rng = np.random.default_rng(seed)
    d = 3 * len(SYMBOLS)
    frames = []
    for k in range(n_frames):
        a = rng.normal(size=(n_traj, n_states, n_states)) + 1j * rng.normal(size=(n_traj, n_states, n_states))
        rho = np.einsum("tij,tkj->tik", a, a.conj())
        rho /= np.trace(rho, axis1=1, axis2=2).real[:, None, None]
        frames.append({
            "step": np.int64(k), "time_au": np.float64(20.0 * k),
            "positions_bohr": rng.normal(scale=2.0, size=(n_traj, d)),
            "momenta_au": rng.normal(scale=5.0, size=(n_traj, d)),
            "rho": rho, "energies_hartree": np.sort(rng.normal(size=(n_traj, n_states)), axis=1),
            "e_kin_hartree": rng.random(n_traj), "e_pot_hartree": -rng.random(n_traj) - 93.0,
            "force_meanfield": np.zeros((n_traj, d)), "force_geometric": np.zeros((n_traj, d)),
            "force_qc": np.zeros((n_traj, d)), "active": np.array([True, k < 3, True][:n_traj]),
        })
    extra = {"masses_au": np.repeat(MASSES_AMU * AMU_ME, 3)}
    if hopping:
        extra["active_state"] = rng.integers(0, n_states, size=(n_frames, n_traj))
    cfg = yaml.safe_dump({"system": {"molecule": {"xyz": "nowhere.xyz"}}, "method": "ehrenfest"})
    _atomic_write_h5(path / "trajectories.h5", frames,
                     {"format": FORMAT, "config": cfg, "symbols": SYMBOLS}, {}, extra)
    return {k: np.stack([f[k] for f in frames]) for k in FRAME_KEYS} | extra


@pytest.mark.parametrize("hopping", [False, True])
def test_extxyz_read_by_ase(tmp_path, hopping):
    data = _fake_run(tmp_path, hopping=hopping)
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
            assert at.get_chemical_symbols() == SYMBOLS
            np.testing.assert_allclose(at.get_positions(),
                                       data["positions_bohr"][k, t].reshape(-1, 3) * BOHR_ANGSTROM,
                                       rtol=0, atol=1e-9)
            np.testing.assert_allclose(at.get_masses(), MASSES_AMU, rtol=1e-8)
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


# ------------------------------------------------------------------ internal coordinates
def test_geometry_functions_known_values():
    x = np.array([[0.0, 0, 0], [1.5, 0, 0], [1.5, 1.0, 0], [1.5, 1.0, 1.0]])
    assert bond(x, 0, 1) == pytest.approx(1.5)
    assert angle(x, 0, 1, 2) == pytest.approx(90.0)
    assert dihedral(x, 0, 1, 2, 3) == pytest.approx(-90.0)  # IUPAC sign
    x2 = x.copy()
    x2[3, 2] = -1.0
    assert dihedral(x2, 0, 1, 2, 3) == pytest.approx(90.0)
    # trans / cis
    t = np.array([[0.0, 1, 0], [0, 0, 0], [1, 0, 0], [1, -1, 0]])
    assert abs(dihedral(t, 0, 1, 2, 3)) == pytest.approx(180.0)
    c = np.array([[0.0, 1, 0], [0, 0, 0], [1, 0, 0], [1, 1, 0]])
    assert dihedral(c, 0, 1, 2, 3) == pytest.approx(0.0)
    # planar centre: 0 pyramidalization; ammonia-like 20 degrees
    p = np.array([[0.0, 0, 0], [1, 0, 0], [-0.5, 0.8, 0], [-0.5, -0.8, 0]])
    assert pyramidalization(p, 0, 1, 2, 3) == pytest.approx(0.0, abs=1e-12)
    q = p.copy()
    q[1] = [np.cos(np.radians(20)), 0, np.sin(np.radians(20))]
    assert abs(pyramidalization(q, 0, 1, 2, 3)) == pytest.approx(20.0)


def test_coordinates_invariant_under_rigid_motion():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(6, 3))
    from scipy.spatial.transform import Rotation

    y = Rotation.random(random_state=5).apply(x) + rng.normal(size=3)
    spec = parse_analysis({"coordinates": {"bonds": {"r": [0, 1]}, "angles": {"a": [0, 1, 2]},
                                           "dihedrals": {"d": [0, 1, 2, 3]},
                                           "pyramidalizations": {"p": [1, 0, 2, 3]}}}).coordinates
    vx = internal_coordinates(x.reshape(1, 1, -1), spec)
    vy = internal_coordinates(y.reshape(1, 1, -1), spec)
    for k in vx:
        assert vx[k] == pytest.approx(vy[k], abs=1e-10)
    assert vx["r"] == pytest.approx(np.linalg.norm(x[1] - x[0]) * BOHR_ANGSTROM)
    # a mirror image flips the sign of the dihedral only
    vz = internal_coordinates((x * [1, 1, -1]).reshape(1, 1, -1), spec)
    assert vz["d"] == pytest.approx(-vx["d"]) and vz["a"] == pytest.approx(vx["a"])


@pytest.mark.parametrize("bad,msg", [
    ({"bonds": {"CN": [0]}}, "analysis.coordinates.bonds: Value error, CN: needs 2 atom indices"),
    ({"dihedrals": {"t": [0, 1, 1, 2]}}, "t: repeated atom index"),
    ({"torsions": {"t": [0, 1, 2, 3]}}, "analysis.coordinates.torsions: Extra inputs"),
    ({"angles": {"a": [0, -1, 2]}}, "0-based and >= 0"),
])
def test_coordinates_config_errors(bad, msg):
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        parse_analysis({"coordinates": bad})


def test_write_coordinates_csv(tmp_path):
    data = _fake_run(tmp_path)
    conf = tmp_path / "a.yaml"
    conf.write_text(yaml.safe_dump({"analysis": {"coordinates": {
        "bonds": {"CN": [0, 1]}, "dihedrals": {"HCNH": [2, 0, 1, 4]}}}}))
    path = write_coordinates(tmp_path, load_coordinates(conf))
    import csv

    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 5
    x = data["positions_bohr"].reshape(5, 3, 6, 3)
    r = np.linalg.norm(x[:, :, 1] - x[:, :, 0], axis=-1) * BOHR_ANGSTROM
    for k, row in enumerate(rows):
        assert float(row["CN_1"]) == pytest.approx(r[k, 1], rel=1e-9)
        act = data["active"][k]
        assert float(row["CN_mean"]) == pytest.approx(r[k][act].mean(), rel=1e-9)  # active only
    bad = tmp_path / "b.yaml"
    bad.write_text(yaml.safe_dump({"analysis": {"coordinates": {"bonds": {"X": [0, 6]}}}}))
    with pytest.raises(ConfigError, match=r"analysis.coordinates.bonds.X: atom index 6 but the "
                                          r"molecule has 6 atoms"):
        write_coordinates(tmp_path, load_coordinates(bad))
