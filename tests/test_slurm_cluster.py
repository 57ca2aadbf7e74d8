"""tests/slurm_cluster.py's clean-up of mpich shared memory (no SLURM needed).

mpich names a node's shared-memory segment after the FNV-1a hash of the PMI KVS name; under
``srun --mpi=pmi2`` that name is ``<jobid>.<stepid>``. The expected hex value below is the
file mpich 5.0.2 (pip wheel) created for SLURM job 1, step 0 on the test VM (measured)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slurm_cluster import mpich_kvs_hash, mpich_segments  # noqa: E402


def test_kvs_hash_matches_mpich_shm_name():
    assert f"{mpich_kvs_hash('1.0'):x}" == "eb421bf2"
    assert mpich_kvs_hash("1.0") != mpich_kvs_hash("1.1") != mpich_kvs_hash("10.0")


def test_segments_of_own_jobs_only(tmp_path):
    mine = [f"mpich_shm_{mpich_kvs_hash('7.0'):x}_0", f"mpich_vci_{mpich_kvs_hash('8.2'):x}_0"]
    others = [f"mpich_shm_{mpich_kvs_hash('9.0'):x}_0",  # a job of another range
              f"mpich_shm_{mpich_kvs_hash('kvs_123_0'):x}_0",  # an mpiexec (hydra) run
              f"mpich_shm_{mpich_kvs_hash('7.0'):x}0_0", "unrelated"]
    for n in mine + others:
        (tmp_path / n).write_bytes(b"x")
    found = sorted(p.name for p in mpich_segments(range(5, 9), shm_dir=tmp_path))
    assert found == sorted(mine)
    assert mpich_segments([1], shm_dir=tmp_path / "missing") == []
