"""Report figures: swarm bond length of diatomics, which figures apply, PNG embedding."""

from __future__ import annotations

import base64
from pathlib import Path

import h5py
import numpy as np

from qhd_aimd.report.figures import _save, fig_bond, fig_hopping, swarm_bond_length
from qhd_aimd.report.sections import Exact, Run, Section


def _diatomic(tmp_path, r, active):
    pos = np.zeros(r.shape + (6,))
    pos[..., 3] = r / np.sqrt(2.0)  # bond along x = y: the norm, not one component, is R
    pos[..., 4] = r / np.sqrt(2.0)
    with h5py.File(tmp_path / "trajectories.h5", "w") as f:
        f["positions_bohr"] = pos
        f["active"] = active
    return Run(tmp_path, "ehrenfest", {"system": {"molecule": {"xyz": "x"}}}, "",
               {"time_fs": np.arange(r.shape[0], dtype=float)}, {})


def test_swarm_bond_length_over_active_trajectories(tmp_path):
    r = np.array([[2.0, 3.0, 9.0], [2.5, 3.5, 9.0]])
    active = np.array([[True, True, False], [True, True, True]])
    b = swarm_bond_length(_diatomic(tmp_path, r, active))
    assert np.allclose(b["mean"], [2.5, 5.0]) and np.allclose(b["std"], [0.5, np.std(r[1])])
    model = Run(tmp_path, "ehrenfest", {"system": {"model": "tully_simple"}}, "", {}, {})
    assert swarm_bond_length(model) is None
    ex = Exact(tmp_path, bond={"time_fs": np.arange(2.0), "mean_r_0_bohr": np.full(2, 2.0)})
    fig = fig_bond(Section("d", "d", [_diatomic(tmp_path, r, active)], ex))
    assert len(fig.axes[0].lines) == 2  # swarm mean, exact on state 0 (no populations: no total)
    assert np.allclose(fig.axes[0].lines[0].get_ydata(), b["mean"])


def test_hopping_figure_only_for_surface_hopping(tmp_path):
    t = np.arange(3.0)
    plain = Run(Path("r"), "ehrenfest", {}, "", {"time_fs": t}, {})
    assert fig_hopping(Section("s", "s", [plain])) is None
    pops = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    hop = Run(Path("r"), "fssh", {}, "", {"time_fs": t, "populations": pops,
                                           "electronic_populations": pops,
                                           "hops": np.array([0, 1, 1]),
                                           "frustrated_hops": np.array([0, 0, 2])}, {})
    fig = fig_hopping(Section("s", "s", [plain, hop]))
    assert np.array_equal(fig.axes[1].lines[1].get_ydata(), [0, 0, 2])  # cumulative frustrated
    b64 = _save(fig, tmp_path / "h.png")
    data = (tmp_path / "h.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and base64.b64decode(b64) == data
