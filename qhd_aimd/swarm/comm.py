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


def get_comm():
    """COMM_WORLD when launched by an MPI launcher (or already initialised), else ``SerialComm``."""
    if any(k in os.environ for k in _MPI_ENV):
        from mpi4py import MPI

        return MPI.COMM_WORLD
    return SerialComm()


def local_ids(n_trajectories: int, rank: int, size: int) -> list[int]:
    """Trajectory indices owned by ``rank``: round-robin."""
    return list(range(rank, n_trajectories, size))
