"""Checkpoint / restart: a run killed with SIGKILL at any moment and continued with ``--restart``
gives a trajectories.h5 bit-identical to an uninterrupted run (no missing or duplicated steps),
whatever the number of ranks before and after."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from runlib import MPIEXEC, assert_same_run, command, env, require_mpiexec, run, study, write_study

from qhd_aimd.config import parse_config
from qhd_aimd.errors import QhdError
from qhd_aimd.io.trajectories import RunStore
from qhd_aimd.swarm.driver import run_study

N_STEPS = 60
SLEEP = 0.002  # s per backend call in the killed runs: ~1.5 s of stepping, a wide window


def _cfg(method):
    cfg = study(method, n=12, dt=15.0, t_final=15.0 * N_STEPS, every=7)  # 7 does not divide 60
    cfg["initial"].update(position_bohr=-4.0, momentum_au=20.0)
    if method != "ehrenfest":  # arbitrary eigenvector signs at every call must restart identically too
        cfg["system"]["random_phases"] = True
    return cfg


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """method -> (study.yaml, uninterrupted trajectories.h5), computed on first use."""
    cache = {}

    def get(method):
        if method not in cache:
            d = tmp_path_factory.mktemp(method)
            conf = write_study(d / "study.yaml", _cfg(method))
            run(["run", "--config", str(conf), "--out", str(d / "ref"), "--quiet"])
            cache[method] = conf, d / "ref" / "trajectories.h5"
        return cache[method]

    return get


@pytest.fixture
def reference(references):
    return references("ehrenfest")


def _kill_when(out: Path, args, ranks=None, segment: int | None = None, delay: float = 0.0):
    """Start ``run`` (slowed down), wait for a segment file (the first, or ``segment_<n>``),
    sleep ``delay`` s, SIGKILL the whole process group; return True if it was still running."""
    proc = subprocess.Popen(command(["run", *args, "--out", str(out), "--quiet"], ranks, inject=True),
                            env=env(QHD_TEST_SLEEP=SLEEP), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pattern = "segment_*.h5" if segment is None else f"segment_{segment:09d}.h5"
    t0 = time.monotonic()
    while not list((out / "run").glob(pattern)):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() - t0 < 30, "no segment appeared"
        time.sleep(0.002)
    time.sleep(delay)
    alive = proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stderr.close()
    return alive


def _steps_on_disk(out: Path) -> list[int]:
    steps = []
    for seg in sorted((out / "run").glob("segment_*.h5")):
        with h5py.File(seg) as f:
            steps += list(f["step"][()])
    return steps


@pytest.mark.parametrize("method,seed", [("ehrenfest", 0), ("ehrenfest", 1),
                                         ("geometric_ehrenfest_qc", 2)])
def test_kill_at_random_moment_then_restart(tmp_path, references, method, seed):
    conf, ref = references(method)
    out = tmp_path / "run"
    delay = random.Random(seed).uniform(0.0, 0.8)
    assert _kill_when(out, ["--config", str(conf)], delay=delay), "run finished before the kill"
    assert not (out / "trajectories.h5").exists()
    steps = _steps_on_disk(out)
    assert steps == list(range(len(steps)))  # segments on disk are complete and consecutive
    run(["run", "--config", str(conf), "--out", str(out), "--restart", "--quiet"])
    assert_same_run(ref, out / "trajectories.h5")
    with h5py.File(out / "trajectories.h5") as f:
        assert list(f["step"][()]) == list(range(N_STEPS + 1))


def test_kill_right_after_segment_then_restart_twice(tmp_path, references):
    """Killed just after segment 14 appears (possibly before its checkpoint), restarted, killed
    again, restarted with 2 ranks (coupled method: the swarm fields must be restored too)."""
    conf, ref = references("geometric_ehrenfest_qc")
    out = tmp_path / "run"
    assert _kill_when(out, ["--config", str(conf)], segment=14)
    assert _kill_when(out, ["--config", str(conf), "--restart"], segment=35)
    ranks = 2 if os.path.exists(MPIEXEC) else None
    run(["run", "--config", str(conf), "--out", str(out), "--restart", "--quiet"], ranks=ranks)
    assert_same_run(ref, out / "trajectories.h5")


@pytest.mark.mpi
def test_kill_mpi_run_then_restart_serial(tmp_path, reference):
    require_mpiexec()
    conf, ref = reference
    out = tmp_path / "run"
    assert _kill_when(out, ["--config", str(conf)], ranks=2, delay=0.3)
    run(["run", "--config", str(conf), "--out", str(out), "--restart", "--quiet"])
    assert_same_run(ref, out / "trajectories.h5")


def test_restart_of_finished_run_is_a_no_op(tmp_path, reference):
    conf, ref = reference
    out = tmp_path / "run"
    run(["run", "--config", str(conf), "--out", str(out), "--quiet"])
    before = (out / "trajectories.h5").stat().st_mtime_ns
    run(["run", "--config", str(conf), "--out", str(out), "--restart", "--quiet"])
    assert_same_run(ref, out / "trajectories.h5")
    assert (out / "trajectories.h5").stat().st_mtime_ns >= before


def test_restart_without_checkpoint_starts_fresh(tmp_path, reference):
    conf, ref = reference
    out = tmp_path / "fresh"
    run(["run", "--config", str(conf), "--out", str(out), "--restart", "--quiet"])
    assert_same_run(ref, out / "trajectories.h5")


def test_existing_checkpoint_without_restart_is_an_error(tmp_path, reference):
    conf, _ = reference
    out = tmp_path / "run"
    run(["run", "--config", str(conf), "--out", str(out), "--quiet"])
    proc = run(["run", "--config", str(conf), "--out", str(out), "--quiet"], check=False)
    assert proc.returncode == 2
    assert "checkpoint.h5 exists" in proc.stderr and "--restart" in proc.stderr


def test_restart_with_different_config_is_an_error(tmp_path):
    cfg = _cfg("ehrenfest")
    cfg["dynamics"]["t_final_au"] = 150.0
    run_study(parse_config(cfg), tmp_path, progress=False)
    cfg["initial"]["seed"] = 4
    with pytest.raises(QhdError, match="different config"):
        run_study(parse_config(cfg), tmp_path, restart=True, progress=False)


def test_runstore_drops_segments_newer_than_checkpoint(tmp_path):
    store = RunStore(tmp_path)
    frame = {"step": np.int64(0), "time_au": 0.0, "positions_bohr": np.zeros((2, 1)),
             "momenta_au": np.zeros((2, 1)), "rho": np.zeros((2, 2, 2), complex),
             "energies_hartree": np.zeros((2, 2)), "e_kin_hartree": np.zeros(2),
             "e_pot_hartree": np.zeros(2), "force_meanfield": np.zeros((2, 1)),
             "force_geometric": np.zeros((2, 1)), "force_qc": np.zeros((2, 1)),
             "active": np.ones(2, bool), "active_switch": np.zeros(2, bool),
             "active_overlap": np.full(2, -1.0), "fields_fallback": np.zeros(2, bool)}
    for s in range(3):
        store.add({**frame, "step": np.int64(s)})
    store.checkpoint({"step": 2})
    store.add({**frame, "step": np.int64(3)})
    store.checkpoint({"step": 3})
    # simulate a kill between the segment of step 5 and its checkpoint
    store.add({**frame, "step": np.int64(4)})
    store.add({**frame, "step": np.int64(5)})
    from qhd_aimd.io.trajectories import _atomic_write_h5

    _atomic_write_h5(store.run_dir / "segment_000000005.h5", store.pending)
    assert len(RunStore(tmp_path).segments()) == 3
    state = RunStore(tmp_path).load_checkpoint()
    assert state["step"] == 3
    assert [p.name for p in RunStore(tmp_path).segments()] == ["segment_000000002.h5",
                                                             "segment_000000003.h5"]
    path = RunStore(tmp_path).finalize({"format": "x"}, {1: "why"}, {})
    with h5py.File(path) as f:
        assert list(f["step"][()]) == [0, 1, 2, 3] and f["failures"].attrs["1"] == "why"
    (store.run_dir / "segment_000000002.h5").unlink()
    with pytest.raises(RuntimeError, match="consecutive"):
        RunStore(tmp_path).finalize({}, {}, {})
