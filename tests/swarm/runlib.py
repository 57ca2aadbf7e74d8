"""Helpers for the swarm / io tests: small model studies, CLI launches (serial or mpiexec), comparison."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

HERE = Path(__file__).resolve().parent
INJECT = HERE / "inject.py"
MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")
#: attributes allowed to differ between otherwise identical runs
RUN_ATTRS = ("n_ranks",)


def study(method="ehrenfest", n=12, t_final=600.0, dt=10.0, every=10, **extra) -> dict:
    cfg = {"system": {"model": "tully_simple"},
           "initial": {"position_bohr": -8.0, "momentum_au": 15.0, "width_bohr": 1.0,
                       "n_trajectories": n, "seed": 3},
           "method": method, "dynamics": {"dt_au": dt, "t_final_au": t_final},
           "output": {"checkpoint_every": every}}
    cfg.update(extra)
    return cfg


def write_study(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def env(**kw) -> dict:
    e = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    for k in [k for k in e if k.startswith("QHD_TEST_")]:
        del e[k]
    e.update({k: str(v) for k, v in kw.items()})
    return e


def command(args, ranks: int | None = None, inject: bool = False) -> list[str]:
    """``python -m qhd_aimd ARGS``, under ``mpiexec -n ranks python -m mpi4py`` if ranks is given."""
    target = [str(INJECT)] if inject else ["-m", "qhd_aimd"]
    if ranks is None:
        return [sys.executable, *target, *args]
    return [MPIEXEC, "-n", str(ranks), sys.executable, "-m", "mpi4py", *target, *args]


def run(args, ranks=None, inject=False, timeout=60, check=True, **envkw):
    proc = subprocess.run(command(args, ranks, inject), env=env(**envkw), check=False,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def h5_contents(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        data = {k: f[k][()] for k in f if isinstance(f[k], h5py.Dataset)}
        attrs = {k: v for k, v in f.attrs.items() if k not in RUN_ATTRS}
        failures = dict(f["failures"].attrs)
    return {"data": data, "attrs": attrs, "failures": failures}


def assert_same_run(a: Path, b: Path) -> None:
    """Every dataset bit-identical, same attributes (except n_ranks) and failures."""
    ca, cb = h5_contents(Path(a)), h5_contents(Path(b))
    assert sorted(ca["data"]) == sorted(cb["data"])
    for k, va in ca["data"].items():
        vb = cb["data"][k]
        assert va.shape == vb.shape and va.dtype == vb.dtype, k
        assert np.array_equal(va, vb), f"{k}: max |diff| = {np.abs(va - vb).max()}"
    assert sorted(ca["attrs"]) == sorted(cb["attrs"])
    for k, va in ca["attrs"].items():
        assert np.array_equal(np.asarray(va), np.asarray(cb["attrs"][k])), k
    assert ca["failures"] == cb["failures"]


def require_mpiexec():
    if not os.path.exists(MPIEXEC):
        pytest.skip(f"no mpiexec next to {sys.executable}")
    return MPIEXEC
