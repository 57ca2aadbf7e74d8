"""MPI swarm: results independent of the number of ranks; a crashing rank aborts the job.

Trajectories are dealt round-robin to ranks, random streams are per trajectory, and every
cross-trajectory quantity (kernel density, local regression of rho, metric gradient) is computed
from data gathered and re-ordered by trajectory id, so each floating-point operation happens in
the same order whatever the number of ranks: the files are compared bit for bit (``n_ranks``
attribute aside).
"""

from __future__ import annotations

import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from runlib import assert_same_run, command, env, require_mpiexec, run, study, write_study

METHODS = ("ehrenfest", "geometric_ehrenfest_qc")


def _cfg(method, **kw):
    # 12 trajectories, 60 steps through the avoided crossing of Tully's simple model
    cfg = study(method, n=12, dt=15.0, t_final=900.0, every=10, **kw)
    cfg["initial"].update(position_bohr=-4.0, momentum_au=20.0)
    return cfg


@pytest.mark.mpi
@pytest.mark.parametrize("method", METHODS)
def test_ranks_give_identical_files(tmp_path, method):
    require_mpiexec()
    conf = write_study(tmp_path / "study.yaml", _cfg(method))
    out = {}
    for n in (1, 2, 3):
        out[n] = tmp_path / f"n{n}"
        run(["run", "--config", str(conf), "--out", str(out[n]), "--quiet"], ranks=n)
    ref = out[1] / "trajectories.h5"
    with h5py.File(ref) as f:
        assert f.attrs["n_ranks"] == 1 and f["step"].shape == (61,)
        assert 0.2 < np.real(f["rho"][-1, :, 1, 1]).mean() < 0.8  # the swarm did cross the coupling
    for n in (2, 3):
        assert_same_run(ref, out[n] / "trajectories.h5")
        with h5py.File(out[n] / "trajectories.h5") as f:
            assert f.attrs["n_ranks"] == n


@pytest.mark.mpi
@pytest.mark.parametrize("kind,code", [("runtime", None), ("qhd", 2)])
def test_failing_rank_aborts_without_hanging(tmp_path, kind, code):
    """Rank 1 raises while rank 0 waits in a collective: mpi4py's runner calls MPI_Abort."""
    require_mpiexec()
    conf = write_study(tmp_path / "study.yaml", _cfg("geometric_ehrenfest_qc"))
    t0 = time.monotonic()
    proc = subprocess.run(command(["run", "--config", str(conf), "--out", str(tmp_path / "o")],
                                  ranks=2, inject=True),
                          env=env(QHD_TEST_FAIL_RANK=1, QHD_TEST_FAIL_KIND=kind),
                          check=False, capture_output=True, text=True, timeout=30)
    assert time.monotonic() - t0 < 30
    assert proc.returncode != 0
    if code is not None:
        assert proc.returncode == code
    assert "injected" in proc.stderr  # the failing rank's message reaches the user
    assert not (tmp_path / "o" / "trajectories.h5").exists()


@pytest.mark.mpi
def test_abort_script_minimal(tmp_path):
    """The mechanism itself, without qhd_aimd: rank 1 raises inside an allgather loop."""
    mpiexec = require_mpiexec()
    script = tmp_path / "crash.py"
    script.write_text(
        "from mpi4py import MPI\n"
        "c = MPI.COMM_WORLD\n"
        "for i in range(100000):\n"
        "    if c.rank == 1 and i == 50:\n"
        "        raise ValueError('boom')\n"
        "    c.allgather(i)\n")
    proc = subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "mpi4py", str(script)],
                          env=env(), check=False, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode != 0 and "boom" in proc.stderr


@pytest.mark.mpi
def test_electronic_failure_recorded_same_on_any_ranks(tmp_path):
    """Trajectories stepping beyond x = 4 bohr raise ConvergenceError: they stop, are recorded
    in ``failures`` with the reason, the others go on; identical on 1 and 3 ranks."""
    require_mpiexec()
    conf = write_study(tmp_path / "study.yaml", _cfg("geometric_ehrenfest_qc"))
    args = ["run", "--config", str(conf), "--quiet"]
    run([*args, "--out", str(tmp_path / "s")], inject=True, QHD_TEST_FAIL_X=4.0)
    run([*args, "--out", str(tmp_path / "m")], ranks=3, inject=True, QHD_TEST_FAIL_X=4.0)
    assert_same_run(tmp_path / "s" / "trajectories.h5", tmp_path / "m" / "trajectories.h5")
    with h5py.File(tmp_path / "s" / "trajectories.h5") as f:
        failures = {int(k): v for k, v in f["failures"].attrs.items()}
        active = f["active"][()]
    assert 0 < len(failures) < 12
    assert all("injected: no convergence" in why for why in failures.values())
    assert set(np.flatnonzero(~active[-1])) == set(failures)
    assert active[-1].sum() == 12 - len(failures)


@pytest.mark.mpi
@pytest.mark.parametrize("var,reason", [("QHD_TEST_FORCE_FAIL_X", "LinAlgError: injected: singular"),
                                        ("QHD_TEST_FORCE_NAN_X", "non-finite mean-field force")])
def test_numerical_failure_frozen_same_on_one_and_two_ranks(tmp_path, var, reason):
    """A failing force (response) solve or a NaN force freezes the trajectory with its reason,
    the swarm goes on, and the files are bit-identical on 1 and 2 ranks."""
    require_mpiexec()
    conf = write_study(tmp_path / "study.yaml", _cfg("geometric_ehrenfest_qc"))
    args = ["run", "--config", str(conf), "--quiet"]
    run([*args, "--out", str(tmp_path / "s")], inject=True, **{var: 4.0})
    run([*args, "--out", str(tmp_path / "m")], ranks=2, inject=True, **{var: 4.0})
    assert_same_run(tmp_path / "s" / "trajectories.h5", tmp_path / "m" / "trajectories.h5")
    with h5py.File(tmp_path / "s" / "trajectories.h5") as f:
        failures = {int(k): v for k, v in f["failures"].attrs.items()}
        active = f["active"][()]
    assert 0 < len(failures) < 12 and all(reason in why for why in failures.values())
    assert active[-1].sum() == 12 - len(failures)
