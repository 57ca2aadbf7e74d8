"""Report tables: run summary, active-space switches, scattering and momentum rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qhd_aimd.report.sections import Exact, Run, Section
from qhd_aimd.report.tables import _momentum, _scattering, _summary, _switch_summary


def _run(obs, method="ehrenfest", failures=None):
    return Run(Path("r"), method, {"initial": {"n_trajectories": 3}}, "", obs, failures or {})


def _obs(rng):
    e = rng.normal(size=(4, 3)) * 1e-4
    p = rng.random((4, 2))
    return {"time_fs": np.linspace(0.0, 3.0, 4), "energy_drift_traj": e, "e_tot": e.mean(1),
            "n_active": np.array([3, 3, 2, 2]), "populations": p, "populations_se": p / 10,
            "purity_max_error": np.array([1e-14, 3e-13, 2e-14, 0.0])}


def test_summary_and_switches():
    rng = np.random.default_rng(4)
    obs = _obs(rng)
    obs["active_switch_events"] = np.array([[1, 2, 0.5, 0.9, 1.25], [1, 3, 0.75, 0.8, -2.0],
                                            [0, 3, 0.75, 0.9, 0.5]])
    s = _summary(_run(obs, failures={2: "x"}))
    assert (s["n_traj"], s["n_active"], s["n_failed"], s["n_frames"]) == (3, 2, 1, 4)
    assert s["max_drift_mEh"] == 1e3 * np.abs(obs["energy_drift_traj"]).max()
    assert s["mean_drift_mEh"] == 1e3 * (obs["e_tot"][-1] - obs["e_tot"][0])
    assert s["purity_error"] == 3e-13
    p, se = obs["populations"][-1], obs["populations_se"][-1]
    assert s["final_populations"] == f"{p[0]:.3f} ± {se[0]:.3f} / {p[1]:.3f} ± {se[1]:.3f}"
    assert (s["n_switches"], s["n_switch_traj"]) == (3, 2)
    assert s["switches"] == [{"id": 0, "count": 1, "times": "0.75 fs (+0.5 mEh)"},
                             {"id": 1, "count": 2, "times": "0.50 fs (+1.2 mEh), 0.75 fs (-2.0 mEh)"}]
    assert _switch_summary(_run({}))["switches"] == []


def test_scattering_rows_beside_exact():
    ex = Exact(Path("e"), scattering=[{"state": 0.0, "transmission": 0.3, "reflection": 0.1},
                                      {"state": 1.0, "transmission": 0.6, "reflection": 0.0}])
    run = _run({"transmission": np.array([0.35, 0.55]), "reflection": np.array([0.1, 0.0])})
    rows = _scattering(Section("s", "s", [run, _run({})], ex))
    assert [(r["state"], r["transmission"], r["exact_transmission"]) for r in rows] == [
        (0, 0.35, 0.3), (1, 0.55, 0.6)]
    only_exact = _scattering(Section("s", "s", [_run({})], ex))
    assert [(r["method"], r["transmission"], r["exact_reflection"]) for r in only_exact] == [
        ("—", None, 0.1), ("—", None, 0.0)]
    assert _scattering(Section("s", "s", [_run({})])) == []


def test_momentum_rows_population_weighted():
    exact = [{"state": 0.0, "population": 0.6, "mean_p_x_au": 10.0, "mean_p_y_au": -2.0,
              "mean_p_x_sq_au": 1.0, "mean_p_y_sq_au": 1.0},
             {"state": 1.0, "population": 0.4, "mean_p_x_au": 12.0, "mean_p_y_au": 1.0,
              "mean_p_x_sq_au": 1.0, "mean_p_y_sq_au": 1.0}]
    run = _run({"final_mean_momentum": np.array([11.0, -0.5])})
    m = _momentum(Section("b", "b", [run], Exact(Path("e"), momentum=exact)))
    assert m["labels"] == ["x", "y"]
    assert [r["label"] for r in m["rows"]][:2] == ["ehrenfest", "exact"]
    assert np.allclose(m["rows"][1]["p"], [0.6 * 10.0 + 0.4 * 12.0, 0.6 * -2.0 + 0.4 * 1.0])
    assert m["rows"][2]["p"] == [10.0, -2.0] and len(m["rows"]) == 4
    assert _momentum(Section("b", "b", [_run({})])) is None
    assert _momentum(Section("b", "b", [run]))["labels"] == ["x", "y"]
