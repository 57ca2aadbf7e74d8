"""Communicator: mpi4py's COMM_WORLD under mpiexec/srun, a serial stand-in otherwise.

Trajectories are dealt to ranks round-robin by trajectory index; every collective used by the
swarm (``allgather``, ``bcast``, ``barrier``) returns data ordered by rank, and callers reorder
by trajectory index, so results never depend on the number of ranks.
"""

from __future__ import annotations

import os

_MPI_ENV = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS", "HYDRA_CONTROL_FD")


class SerialComm:
    """The subset of the mpi4py communicator API that qhd_aimd uses, for one process."""

    rank = 0
    size = 1

    def allgather(self, obj):
        return [obj]

    def bcast(self, obj, root=0):
        return obj

    def gather(self, obj, root=0):
        return [obj]

    def barrier(self):
        return None

    def Abort(self, code=1):  # noqa: N802 (mpi4py name)
        os._exit(code)


#: environment variables in which launchers announce how many copies they started
_LAUNCH_SIZE_ENV = ("SLURM_STEP_NUM_TASKS", "PMI_SIZE", "PMIX_SIZE", "OMPI_COMM_WORLD_SIZE",
                    "MPI_LOCALNRANKS")


def launched_copies(environ=None) -> tuple[int, str]:
    """(number of processes the launcher started, the variable that says so), (1, "") if none.

    ``SLURM_STEP_NUM_TASKS`` is set by ``srun`` in a job step (not in a batch script, where one
    process runs ``mpiexec``/``srun`` itself); the others by MPI process managers."""
    environ = os.environ if environ is None else environ
    best = (1, "")
    for key in _LAUNCH_SIZE_ENV:
        try:
            n = int(environ.get(key, ""))
        except ValueError:
            continue
        if n > best[0]:
            best = (n, key)
    return best


def check_single_world(comm, environ=None) -> None:
    """Refuse to run as several independent copies of one program.

    ``srun`` without the right ``--mpi`` plugin (or an ``mpiexec`` of another MPI library)
    starts N processes that each see an MPI world of size 1: they would run the whole swarm N
    times, all writing the same files. Raises ``QhdError`` (before anything is written) when
    the launcher reports N > 1 processes but the world has fewer ranks.
    """
    n, key = launched_copies(environ)
    if n > 1 and comm.size < n:
        from qhd_aimd.errors import QhdError

        raise QhdError(
            f"started as {n} processes ({key}={n}) but the MPI world has {comm.size} rank(s): the "
            "launcher did not connect them into one MPI job (e.g. plain `srun` with the pip mpich "
            "wheel); use `srun --mpi=pmi2` or `mpiexec` (README, 'On a SLURM cluster'); "
            "nothing was written")


def launch_summary(comm, environ=None) -> str:
    """One line for the run log: MPI world size and, under SLURM, the job step and its tasks."""
    environ = os.environ if environ is None else environ
    line = f"MPI world of {comm.size} rank(s)"
    if "SLURM_JOB_ID" in environ:
        line += (f"; SLURM job {environ['SLURM_JOB_ID']} step {environ.get('SLURM_STEP_ID', '-')}"
                 f" with {environ.get('SLURM_STEP_NUM_TASKS', '-')} task(s)")
    return line


def get_comm():
    """COMM_WORLD when launched by an MPI launcher (or already initialised), else ``SerialComm``.

    Also imports MPI when ``srun`` started several tasks without MPI variables, so that
    ``check_single_world`` sees the real world size."""
    if any(k in os.environ for k in _MPI_ENV) or launched_copies()[0] > 1:
        from mpi4py import MPI

        return MPI.COMM_WORLD
    return SerialComm()


def local_ids(n_trajectories: int, rank: int, size: int) -> list[int]:
    """Trajectory indices owned by ``rank``: round-robin."""
    return list(range(rank, n_trajectories, size))
