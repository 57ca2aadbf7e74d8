"""Run the ``qhd-aimd`` CLI with faults injected into the model backend (test helper, not a test).

Usage (serial or under MPI)::

    python tests/swarm/inject.py run --config study.yaml --out DIR
    mpiexec -n 2 python -m mpi4py tests/swarm/inject.py run --config study.yaml --out DIR

Environment variables (all optional):

``QHD_TEST_SLEEP``       seconds to sleep in every backend call (widens the window for kill tests;
                         does not change any number)
``QHD_TEST_FAIL_X``      raise ``ConvergenceError`` whenever a trajectory steps to x > this (bohr)
``QHD_TEST_FORCE_FAIL_X`` the mean-field force raises ``LinAlgError`` (a failing response solve)
                         for x > this (bohr)
``QHD_TEST_FORCE_NAN_X``  the mean-field force is NaN for x > this (bohr)
``QHD_TEST_FAIL_RANK``   this rank raises ``QHD_TEST_FAIL_KIND`` (``runtime``: RuntimeError in a
                         step; ``qhd``: ConvergenceError at t = 0, which the CLI turns into exit 2)
"""

import os
import sys
import time

import numpy as np

from qhd_aimd.electronic import models
from qhd_aimd.errors import ConvergenceError
from qhd_aimd.swarm.comm import get_comm

_RANK = get_comm().rank
_SLEEP = float(os.environ.get("QHD_TEST_SLEEP", "0"))
_FAIL_X = os.environ.get("QHD_TEST_FAIL_X")
_FAIL_RANK = os.environ.get("QHD_TEST_FAIL_RANK")
_FAIL_KIND = os.environ.get("QHD_TEST_FAIL_KIND", "runtime")
_FORCE_FAIL_X = os.environ.get("QHD_TEST_FORCE_FAIL_X")
_FORCE_NAN_X = os.environ.get("QHD_TEST_FORCE_NAN_X")
_orig = models.ModelBackend.compute
_orig_force = models.ModelBackend.force


def compute(self, positions, reference=None):
    if _SLEEP:
        time.sleep(_SLEEP)
    if _FAIL_RANK is not None and int(_FAIL_RANK) == _RANK:
        if _FAIL_KIND == "qhd" and reference is None:
            raise ConvergenceError(f"injected convergence failure on rank {_RANK}")
        if _FAIL_KIND == "runtime" and reference is not None:
            raise RuntimeError(f"injected crash on rank {_RANK}")
    if _FAIL_X is not None and float(positions[0]) > float(_FAIL_X):
        raise ConvergenceError(f"injected: no convergence at x = {float(positions[0]):.3f} bohr")
    return _orig(self, positions, reference)


def force(self, data, rho):
    x = float(data.positions[0])
    if _FORCE_FAIL_X is not None and x > float(_FORCE_FAIL_X):
        raise np.linalg.LinAlgError(f"injected: singular response at x = {x:.3f} bohr")
    f = _orig_force(self, data, rho)
    if _FORCE_NAN_X is not None and x > float(_FORCE_NAN_X):
        return f * np.nan
    return f


models.ModelBackend.compute = compute
models.ModelBackend.force = force

if __name__ == "__main__":
    from qhd_aimd.cli import main

    raise SystemExit(main(sys.argv[1:]))
