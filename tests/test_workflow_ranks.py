"""Workflow rank counts: locally a swarm's ranks are lowered to --cores; inside a cluster job
(Snakemake's remote mode, which the SLURM job step runs with `--cores all`) they are the job's
tasks from the config - never shrunk to the CPUs the job's own Snakemake sees. `ranks` is capped
by the trajectories; one-rank swarms have no launcher."""

from __future__ import annotations

import re

from test_workflow import REPO, snakemake

CONFIG = REPO / "tests" / "data" / "slurm_config.yaml"
MPI_TARGET = "results/slurm/tully_mpi/geometric_ehrenfest_qc/trajectories.h5"
ONE_TARGET = "results/slurm/tully/ehrenfest/trajectories.h5"


def _launch(tmp_path, *args):
    proc = snakemake("--configfile", str(CONFIG), "-n", "-p", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [ln for ln in proc.stdout.splitlines() if "qhd_aimd run" in ln]


def test_local_ranks_lowered_to_cores(tmp_path):
    (line,) = _launch(tmp_path, "--cores", "1", MPI_TARGET)
    assert re.search(r"mpiexec -n 1 python -m mpi4py -m qhd_aimd run", line), line


def test_cluster_job_keeps_its_tasks(tmp_path):
    # ranks: 16 in the config, capped to the system's 2 trajectories; --cores 1 does not shrink it
    (line,) = _launch(tmp_path, "--cores", "1", "--mode", "remote", MPI_TARGET)
    assert re.search(r"mpiexec -n 2 python -m mpi4py -m qhd_aimd run", line), line


def test_one_rank_swarm_has_no_launcher(tmp_path):
    (line,) = _launch(tmp_path, "--cores", "2", ONE_TARGET)
    assert "mpiexec" not in line and "srun" not in line and "mpi4py" not in line
    assert "python -m qhd_aimd run" in line
