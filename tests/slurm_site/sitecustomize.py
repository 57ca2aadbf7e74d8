"""Test helper for tests/test_slurm.py (not a test): on PYTHONPATH of the SLURM jobs.

With ``QHD_TEST_SLEEP`` set (and ``QHD_TEST_SLEEP_MATCH`` a substring of the command line,
e.g. one system's run directory), every analytic-model electronic-structure call sleeps that many
seconds - an expensive electronic structure without CPU cost, so that a swarm outlives a one-
minute SLURM time limit on any machine. It changes no number (compare tests/swarm/inject.py).
"""

import os

import sys

if os.environ.get("QHD_TEST_SLEEP") and \
        os.environ.get("QHD_TEST_SLEEP_MATCH", "") in " ".join(sys.argv):
    import time

    from qhd_aimd.electronic import models

    _SLEEP = float(os.environ["QHD_TEST_SLEEP"])
    _orig = models.ModelBackend.compute

    def _compute(self, positions, reference=None):
        time.sleep(_SLEEP)
        return _orig(self, positions, reference)

    models.ModelBackend.compute = _compute
