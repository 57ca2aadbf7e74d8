"""SA-CASSCF active-space switches (issue 13, item 9): every flagged step is recorded in
trajectories.h5 (``active_switch``, ``active_overlap``), counted per trajectory with times by
``aggregate`` and the report, and warned about in the run log; ``active_switch: stop`` still
stops the trajectory. The switch test itself is the backend's (smallest singular value of the
active-orbital overlap < ``active_overlap_min``); ``active_overlap_min: 1.0`` flags every
warm-started step of LiH, which exercises the whole path cheaply."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from qhd_aimd.analysis.aggregate import aggregate
from qhd_aimd.cli import main
from qhd_aimd.config import parse_config
from qhd_aimd.io.trajectories import read_trajectories
from qhd_aimd.report.html import write_report
from qhd_aimd.swarm.driver import run_study

LIH = str(Path(__file__).parents[2] / "config" / "molecules" / "lih.xyz")


def _cfg(**electronic):
    return parse_config({
        "name": "lih",
        "system": {"molecule": {"xyz": LIH},
                   "electronic": {"basis": "sto-3g", "active_space": [2, 2], "n_states": 2,
                                  **electronic}},
        "initial": {"n_trajectories": 1, "state": 1, "seed": 1},
        "dynamics": {"dt_fs": 0.5, "t_final_fs": 1.0}})


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """initial_conditions.h5 of the LiH study (prepared once; copied into each run)."""
    pytest.importorskip("pyscf")
    from qhd_aimd.prepare.molecule import prepare_molecule
    return prepare_molecule(_cfg(), tmp_path_factory.mktemp("lih_ic"))


def _with_ic(out: Path, ic: Path) -> Path:
    out.mkdir(exist_ok=True)
    shutil.copy(ic, out / "initial_conditions.h5")
    return out


@pytest.mark.pyscf
def test_switch_flagged_counted_reported_and_logged(tmp_path, capfd, prepared):
    _with_ic(tmp_path, prepared)
    path = run_study(_cfg(active_overlap_min=1.0), tmp_path, progress=False)
    err = capfd.readouterr().err
    t = read_trajectories(path)
    assert t["active_switch"].tolist() == [[False], [True], [True]]  # not at t = 0 (cold start)
    assert t["active_overlap"][0, 0] == -1.0  # not measured at t = 0
    assert np.all((t["active_overlap"][1:] > 0.98) & (t["active_overlap"][1:] < 1.0))
    assert err.count("active-space switch in trajectory 0") == 2 and "step 1 (t = 0.500 fs)" in err
    obs = aggregate(tmp_path)
    assert obs["active_switch_count"].tolist() == [2]
    ev = obs["active_switch_events"]
    np.testing.assert_allclose(ev[:, :3], [[0, 1, 0.5], [0, 2, 1.0]])
    e_tot = t["e_kin_hartree"][:, 0] + t["e_pot_hartree"][:, 0]
    np.testing.assert_allclose(ev[:, 4], 1e3 * np.diff(e_tot))
    csv = (tmp_path / "active_switches.csv").read_text().splitlines()
    assert csv[0] == "trajectory,step,time_fs,active_overlap,e_tot_jump_mEh" and len(csv) == 3
    html = write_report([tmp_path], tmp_path / "report").read_text()
    assert "2 in 1 traj." in html and 'class="switches"' in html and "0.50 fs" in html


@pytest.mark.pyscf
def test_active_switch_stop_still_stops(tmp_path, prepared):
    _with_ic(tmp_path, prepared)
    t = read_trajectories(run_study(_cfg(active_overlap_min=1.0, active_switch="stop"), tmp_path,
                                    progress=False))
    assert t["active"][:, 0].tolist() == [True, False, False]
    assert "active space switched" in t["failures"][0]
    assert not t["active_switch"].any()  # the stopped step is a failure, not a recorded step


def test_aggregate_without_trajectories_is_one_line_error(tmp_path, capsys):
    assert main(["aggregate", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trajectories.h5 not found" in err[0]
    (tmp_path / "trajectories.h5").write_bytes(b"")
    assert main(["aggregate", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a readable trajectories file" in err[0]
