"""Named internal coordinates (qhd_aimd/analysis/coordinates.py): known geometries, invariance
under rigid motions, mirror symmetry, config errors naming the key, the CSV."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from qhd_aimd.analysis.coordinates import (angle, bond, dihedral, internal_coordinates,
                                           load_coordinates, parse_analysis, pyramidalization,
                                           write_coordinates)
from qhd_aimd.errors import ConfigError
from qhd_aimd.units import BOHR_ANGSTROM


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


def test_write_coordinates_csv(tmp_path, fake_run):
    data = fake_run(tmp_path)
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
