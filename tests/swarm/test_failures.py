"""A trajectory whose electronic structure fails is stopped and recorded; the others continue."""

from __future__ import annotations

from dataclasses import replace

import h5py
import numpy as np
import pytest
from runlib import study

from qhd_aimd.analysis.aggregate import aggregate
from qhd_aimd.config import parse_config
from qhd_aimd.electronic import models
from qhd_aimd.errors import ConvergenceError
from qhd_aimd.swarm.driver import run_study

X_FAIL = 4.0  # bohr


@pytest.fixture
def failing_backend(monkeypatch):
    orig = models.ModelBackend.compute

    def compute(self, positions, reference=None):
        if float(positions[0]) > X_FAIL:
            raise ConvergenceError(f"SCF stuck at x = {float(positions[0]):.3f}")
        return orig(self, positions, reference)

    monkeypatch.setattr(models.ModelBackend, "compute", compute)


def _nan_energies(orig):
    def compute(self, positions, reference=None):
        d = orig(self, positions, reference)
        return replace(d, energies=d.energies * np.nan) if float(positions[0]) > X_FAIL else d
    return "compute", compute, "non-finite adiabatic energies"


def _raising_force(exc, reason):
    """A force that raises ``exc`` past X_FAIL; ``reason`` is the recorded failure."""
    def inject(orig):
        def force(self, data, rho):
            if float(data.positions[0]) > X_FAIL:
                raise exc
            return orig(self, data, rho)
        return "force", force, reason
    return inject


_singular_force = _raising_force(np.linalg.LinAlgError("injected singular response matrix"),
                                 "force: LinAlgError: injected singular response matrix")


def _nan_force(orig):
    def force(self, data, rho):
        f = orig(self, data, rho)
        return f * np.nan if float(data.positions[0]) > X_FAIL else f
    return "force", force, "force: FloatingPointError: non-finite mean-field force"


# what the PySCF force says about a broken rho
_bad_rho_force = _raising_force(ValueError("rho must have positive trace, got nan"),
                                "force: ValueError: rho must have positive trace")


def _nan_overlap(orig):
    def overlap(self, a, b):
        s = orig(self, a, b)
        return s * np.nan if float(b.positions[0]) > X_FAIL else s
    return "overlap", overlap, "non-finite step overlap"


INJECTIONS = {"nan_energies": _nan_energies, "singular_force": _singular_force,
              "nan_force": _nan_force, "bad_rho_force": _bad_rho_force, "nan_overlap": _nan_overlap}


@pytest.mark.parametrize("kind", sorted(INJECTIONS))
def test_numerical_failure_freezes_one_trajectory_not_the_swarm(tmp_path, monkeypatch, kind):
    """Issue 13 item 10 / issue 11 contract: a LinAlgError, a non-finite energy / overlap /
    force or a failing force solve in one trajectory freezes it with the reason; the rest go on."""
    name, fn, reason = INJECTIONS[kind](getattr(models.ModelBackend, INJECTION_TARGET[kind]))
    monkeypatch.setattr(models.ModelBackend, name, fn)
    _check_frozen_run(tmp_path, "geometric_ehrenfest_qc", reason)


INJECTION_TARGET = {"nan_energies": "compute", "singular_force": "force", "nan_force": "force",
                    "bad_rho_force": "force", "nan_overlap": "overlap"}


@pytest.mark.parametrize("method", ["ehrenfest", "geometric_ehrenfest_qc"])
def test_failed_trajectory_is_frozen_and_recorded(tmp_path, failing_backend, method):
    _check_frozen_run(tmp_path, method, "SCF stuck")


def _check_frozen_run(tmp_path, method, reason):
    cfg = study(method, n=12, dt=15.0, t_final=900.0, every=10)
    cfg["initial"].update(position_bohr=-4.0, momentum_au=20.0)
    path = run_study(parse_config(cfg), tmp_path, progress=False)
    with h5py.File(path) as f:
        failures = {int(k): v for k, v in f["failures"].attrs.items()}
        active, pos, mom, rho = (f[k][()] for k in ("active", "positions_bohr", "momenta_au", "rho"))
        steps, t_au = f["step"][()], f["time_au"][()]
    assert list(steps) == list(range(61))
    assert 0 < len(failures) < 12
    for tid, why in failures.items():
        assert reason in why and why.startswith("t=")
        stop = int(np.argmin(active[:, tid]))  # first inactive frame
        assert stop > 0 and not active[stop:, tid].any() and active[:stop, tid].all()
        t_fail = float(why.split()[0][2:])
        assert t_fail == pytest.approx(t_au[stop])
        assert pos[stop - 1, tid, 0] <= X_FAIL
        # frozen: position, momentum and rho stay at their last good values
        assert np.all(pos[stop:, tid] == pos[stop - 1, tid])
        assert np.all(mom[stop:, tid] == mom[stop - 1, tid])
        assert np.all(rho[stop:, tid] == rho[stop - 1, tid])
    ok = [t for t in range(12) if t not in failures]
    assert active[:, ok].all()
    assert np.all(pos[-1, ok, 0] > pos[0, ok, 0])  # the rest kept moving to the end
    assert np.all(pos[:, ok, 0] <= X_FAIL)

    obs = aggregate(tmp_path)
    assert list(obs["n_active"][-1:]) == [12 - len(failures)]
    with h5py.File(tmp_path / "observables.h5") as f:
        assert {int(k): v for k, v in f["failures"].attrs.items()} == failures
    # populations average over active trajectories only and stay normalised
    assert np.allclose(obs["populations"].sum(axis=1), 1.0)
    assert all(np.isfinite(v).all() for v in (pos, mom, rho))


def test_density_fitted_molecule_is_refused_before_any_work(tmp_path):
    """density_fit has no analytic forces: run must say so at once, not after prepare."""
    from pathlib import Path

    from qhd_aimd.errors import ConfigError

    xyz = str(Path(__file__).resolve().parents[2] / "config" / "molecules" / "lih.xyz")
    cfg = parse_config({
        "system": {"molecule": {"xyz": xyz, "charge": 0, "spin": 0},
                   "electronic": {"method": "sa-casscf", "basis": "sto-3g", "active_space": [2, 2],
                                  "n_states": 2, "density_fit": True}},
        "initial": {"sampling": "wigner", "temperature_K": 0, "n_trajectories": 2, "state": 1},
        "method": "ehrenfest", "dynamics": {"dt_fs": 0.25, "t_final_fs": 1.0}})
    with pytest.raises(ConfigError, match="density_fit"):
        run_study(cfg, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
