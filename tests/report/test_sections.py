"""Report loading and grouping: run and exact directories read, runs grouped into sections, exact
references matched to sections by name, parent directory or model."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from qhd_aimd.errors import QhdError
from qhd_aimd.report.sections import Exact, Run, attach_exact, group_runs, load_exact, load_run


def _run(path, name, model="tully_simple", dt=20.0, method="ehrenfest", n=4):
    cfg = {"name": name, "system": {"model": model}, "initial": {"n_trajectories": n},
           "dynamics": {"dt_au": dt}}
    return Run(Path(path), method, cfg, "", {}, {})


def test_load_run_and_exact_tables(tmp_path):
    with pytest.raises(QhdError, match="qhd-aimd aggregate"):
        load_run(tmp_path)
    with h5py.File(tmp_path / "observables.h5", "w") as f:
        f["time_fs"] = np.arange(3.0)
        f.attrs["method"] = "fssh"
        f.attrs["config"] = "name: a\ninitial: {n_trajectories: 5}\n"
        f.create_group("failures").attrs["2"] = "diverged"
    run = load_run(tmp_path)
    assert run.method == "fssh" and run.n_trajectories == 5 and run.failures == {2: "diverged"}
    assert np.array_equal(run.obs["time_fs"], np.arange(3.0))

    ex_dir = tmp_path / "exact"
    ex_dir.mkdir()
    with pytest.raises(QhdError, match="no exact"):
        load_exact(ex_dir)
    t = np.linspace(0.0, 2.0, 5)
    np.savetxt(ex_dir / "exact_populations.csv", np.column_stack([t, 1 - t / 4, t / 4]),
               delimiter=",", header="time_fs,p0,p1", comments="")
    (ex_dir / "exact_scattering.csv").write_text("state,transmission,reflection\n0,0.25,0.5\n")
    with h5py.File(ex_dir / "exact.h5", "w") as f:
        f.attrs["meta_name"] = np.bytes_(b"a")
    ex = load_exact(ex_dir)
    assert ex.populations["p"].shape == (5, 2) and np.allclose(ex.populations["p"][:, 1], t / 4)
    assert ex.scattering == [{"state": 0.0, "transmission": 0.25, "reflection": 0.5}]
    assert ex.attrs == {"meta_name": "a"} and ex.coherence is None and ex.bond is None


def test_group_runs_by_system_with_unique_labels_and_slugs(tmp_path):
    # grouped by system, initial and dynamics settings (not by name); labels from the name
    runs = [_run(tmp_path / "a1", "x y"), _run(tmp_path / "a2", "x y", method="fssh"),
            _run(tmp_path / "b", "x y", dt=10.0), _run(tmp_path / "c", "z", n=8)]
    secs = group_runs(runs)
    assert [s.label for s in secs] == ["x y", "x y (2)", "z"]
    assert [s.slug for s in secs] == ["x_y", "x_y_2", "z"]
    assert [[r.method for r in s.runs] for s in secs] == [["ehrenfest", "fssh"], ["ehrenfest"],
                                                         ["ehrenfest"]]


def test_attach_exact_by_name_parent_and_model(tmp_path):
    secs = group_runs([_run(tmp_path / "s" / "r1", "s"), _run(tmp_path / "s" / "r2", "s", dt=5.0),
                       _run(tmp_path / "p" / "r", "p", model="berry_2d")])
    named = Exact(tmp_path / "elsewhere", attrs={"meta_name": "s"})
    by_model = Exact(tmp_path / "m", attrs={"model": "berry_2d"})
    stray = Exact(tmp_path / "n", attrs={"model": "tully_dual"})
    assert attach_exact(secs, [named, by_model, stray]) == [stray]
    assert secs[0].exact is named and secs[1].exact is named  # every section of the name
    assert secs[2].exact is by_model
    secs = group_runs([_run(tmp_path / "q" / "r", "q"), _run(tmp_path / "w" / "r", "w", n=8)])
    by_parent = Exact(tmp_path / "w" / "exact")
    assert attach_exact(secs, [by_parent]) == [] and secs[1].exact is by_parent
    assert secs[0].exact is None
