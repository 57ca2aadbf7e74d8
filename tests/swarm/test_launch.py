"""A swarm launched as several independent copies (e.g. plain ``srun`` with the pip mpich wheel:
every task is its own MPI world of size 1) is refused with one clear error before any file is
written; the launcher variables are read as the scheduler/MPI sets them."""

from __future__ import annotations

import pytest
from runlib import require_mpiexec, run, study, write_study

from qhd_aimd.swarm.comm import SerialComm, check_single_world, launched_copies
from qhd_aimd.errors import QhdError


def test_launched_copies_reads_scheduler_and_mpi_variables():
    assert launched_copies({}) == (1, "")
    assert launched_copies({"SLURM_STEP_NUM_TASKS": "4"}) == (4, "SLURM_STEP_NUM_TASKS")
    # inside `mpiexec` under SLURM: hydra's proxy step has 1 task, PMI announces the world
    assert launched_copies({"SLURM_STEP_NUM_TASKS": "1", "PMI_SIZE": "2"}) == (2, "PMI_SIZE")
    # a batch script (SLURM_NTASKS only) runs one process that launches the ranks itself
    assert launched_copies({"SLURM_NTASKS": "8", "SLURM_STEP_NUM_TASKS": "junk"}) == (1, "")


def test_check_single_world():
    check_single_world(SerialComm(), {"SLURM_STEP_NUM_TASKS": "1"})
    with pytest.raises(QhdError, match=r"started as 3 processes \(SLURM_STEP_NUM_TASKS=3\).*"
                                       r"srun --mpi=pmi2"):
        check_single_world(SerialComm(), {"SLURM_STEP_NUM_TASKS": "3"})


@pytest.mark.parametrize("var", ["SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_SIZE"])
def test_duplicate_copies_refused_no_files(tmp_path, var):
    conf = write_study(tmp_path / "study.yaml", study(n=4, t_final=50.0))
    out = tmp_path / "out"
    proc = run(["run", "--config", str(conf), "--out", str(out)], check=False, **{var: 2})
    assert proc.returncode == 2
    # (mpi4py itself may warn about OMPI_* variables under MPICH before our one error line)
    errors = [ln for ln in proc.stderr.splitlines() if "error" in ln.lower()]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert errors[0].startswith("qhd-aimd run: error: started as 2 processes")
    assert not out.exists()


@pytest.mark.mpi
def test_real_world_accepted_under_announced_size(tmp_path):
    """mpiexec's own PMI_SIZE matches the world: runs normally."""
    require_mpiexec()
    conf = write_study(tmp_path / "study.yaml", study(n=4, t_final=50.0))
    run(["run", "--config", str(conf), "--out", str(tmp_path / "o"), "--quiet"], ranks=2)
    assert (tmp_path / "o" / "trajectories.h5").exists()
