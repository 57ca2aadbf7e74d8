"""Surface-hopping runs through the CLI: kill -9 + restart and 1 vs 2 MPI ranks give bit-identical
files, hops included (the hop random numbers are a pure function of (seed, trajectory id, step),
the active state is part of the checkpoint); the aggregated FSSH outputs (contract names)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest
from runlib import MPIEXEC, assert_same_run, command, env, require_mpiexec, run, study, write_study

N_STEPS = 60


def _cfg(method="fssh"):
    cfg = study(method, n=12, dt=15.0, t_final=15.0 * N_STEPS, every=7)
    cfg["initial"].update(position_bohr=-4.0, momentum_au=20.0)
    cfg["system"]["random_phases"] = True
    cfg["hopping"] = {"frustrated": "reverse"}
    return cfg


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("fssh")
    conf = write_study(d / "study.yaml", _cfg())
    run(["run", "--config", str(conf), "--out", str(d / "ref"), "--quiet"])
    with h5py.File(d / "ref" / "trajectories.h5") as f:
        assert ((f["hop_to"][()] >= 0) & ~f["hop_frustrated"][()]).sum() >= 3  # hops happened
    return conf, d / "ref"


def test_kill_then_restart_identical_with_hops(tmp_path, reference):
    conf, ref = reference
    out = tmp_path / "run"
    proc = subprocess.Popen(command(["run", "--config", str(conf), "--out", str(out), "--quiet"],
                                    inject=True),
                            env=env(QHD_TEST_SLEEP=0.002), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    while not list((out / "run").glob("segment_000000021.h5")):  # past the first hops
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() - t0 < 30, "no segment appeared"
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stderr.close()
    assert not (out / "trajectories.h5").exists()
    ranks = 2 if os.path.exists(MPIEXEC) else None
    run(["run", "--config", str(conf), "--out", str(out), "--restart", "--quiet"], ranks=ranks)
    assert_same_run(ref / "trajectories.h5", out / "trajectories.h5")


@pytest.mark.mpi
def test_two_ranks_identical_with_hops(tmp_path, reference):
    require_mpiexec()
    conf, ref = reference
    run(["run", "--config", str(conf), "--out", str(tmp_path / "n2"), "--quiet"], ranks=2)
    assert_same_run(ref / "trajectories.h5", tmp_path / "n2" / "trajectories.h5")


def test_aggregate_fssh_outputs(tmp_path, reference):
    """populations.csv = fraction on each active state, electronic_populations.csv = mean rho_nn,
    hops.csv lists every attempted hop, scattering.csv counts trajectories by active state."""
    _, ref = reference
    d = tmp_path / "agg"
    d.mkdir()
    (d / "trajectories.h5").symlink_to(ref / "trajectories.h5")
    run(["aggregate", str(d)])
    with h5py.File(ref / "trajectories.h5") as f:
        state, rho = f["active_state"][()], f["rho"][()]
        hop_to, fr = f["hop_to"][()], f["hop_frustrated"][()]
    pops = np.loadtxt(d / "populations.csv", delimiter=",", skiprows=1)
    elec = np.loadtxt(d / "electronic_populations.csv", delimiter=",", skiprows=1)
    for path in ("populations.csv", "electronic_populations.csv"):
        assert (d / path).read_text().splitlines()[0] == "time_fs,p0,p1"
    assert np.allclose(pops[:, 2], (state == 1).mean(axis=1))
    assert np.allclose(elec[:, 2], np.real(rho[:, :, 1, 1]).mean(axis=1))
    with open(d / "hops.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["time_fs", "trajectory", "from_state", "to_state", "frustrated"]
    assert len(rows) == (hop_to >= 0).sum()
    assert sum(int(r["frustrated"]) for r in rows) == fr.sum()
    for r in rows:  # an accepted hop changes the active state in its frame
        frame = int(np.argmin(np.abs(pops[:, 0] - float(r["time_fs"]))))
        if not int(r["frustrated"]):
            assert state[frame, int(r["trajectory"])] == int(r["to_state"])
            assert state[frame - 1, int(r["trajectory"])] == int(r["from_state"])
    with open(d / "scattering.csv") as fh:
        sc = list(csv.DictReader(fh))
    x = h5py.File(ref / "trajectories.h5")["positions_bohr"][-1, :, 0]
    for r in sc:
        n = int(r["state"])
        assert float(r["transmission"]) == pytest.approx(np.mean((state[-1] == n) & (x > 0)))
