"""Fixtures of the SA-CASSCF backend tests: the LiH backend, its solution at X_LIH and its
analytic derivatives (computed once per test module)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # lih_casscf


@pytest.fixture(scope="module")
def backend():
    pytest.importorskip("pyscf")
    from lih_casscf import lih
    return lih()


@pytest.fixture(scope="module")
def data0(backend):
    from lih_casscf import X_LIH
    return backend.compute(X_LIH)


@pytest.fixture(scope="module")
def derivs(backend, data0):
    return backend.derivatives(data0)
