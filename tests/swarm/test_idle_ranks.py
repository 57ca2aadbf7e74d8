"""More MPI ranks than trajectories (issue 13 item 6): ranks without trajectories take part in
every collective and the files equal the serial run bit for bit, also after a restart (the
checkpoint is dealt to a rank that owns nothing)."""

from __future__ import annotations

import pytest
from runlib import assert_same_run, require_mpiexec, run, study, write_study


@pytest.mark.mpi
@pytest.mark.parametrize("method", ("ehrenfest", "geometric_ehrenfest_qc"))
def test_three_ranks_two_trajectories_equal_serial(tmp_path, method):
    require_mpiexec()
    cfg = study(method, n=2, dt=15.0, t_final=300.0, every=5)
    cfg["initial"].update(position_bohr=-4.0, momentum_au=20.0)
    conf = write_study(tmp_path / "study.yaml", cfg)
    args = ["run", "--config", str(conf), "--quiet"]
    run([*args, "--out", str(tmp_path / "serial")])
    run([*args, "--out", str(tmp_path / "mpi3")], ranks=3)
    ref = tmp_path / "serial" / "trajectories.h5"
    assert_same_run(ref, tmp_path / "mpi3" / "trajectories.h5")
    # resume from the last checkpoint on 3 ranks: rank 2 unpacks an empty share
    (tmp_path / "mpi3" / "trajectories.h5").unlink()
    run([*args, "--out", str(tmp_path / "mpi3"), "--restart"], ranks=3)
    assert_same_run(ref, tmp_path / "mpi3" / "trajectories.h5")
