"""Shared helper of the analysis tests: a small molecular trajectories.h5 with known data."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from qhd_aimd.io.trajectories import FORMAT, FRAME_KEYS, _atomic_write_h5
from qhd_aimd.units import AMU_ME

SYMBOLS = ["C", "N", "H", "H", "H", "H"]
MASSES_AMU = np.array([12.0, 14.003074, 1.007825, 1.007825, 2.014102, 1.007825])  # one D


def _fake_run(path, n_frames=5, n_traj=3, n_states=3, hopping=False, seed=0):
    """A trajectories.h5 with random but consistent molecular data (6 atoms, 3 states)."""
    rng = np.random.default_rng(seed)
    d = 3 * len(SYMBOLS)
    frames = []
    for k in range(n_frames):
        a = rng.normal(size=(n_traj, n_states, n_states)) + 1j * rng.normal(size=(n_traj, n_states, n_states))
        rho = np.einsum("tij,tkj->tik", a, a.conj())
        rho /= np.trace(rho, axis1=1, axis2=2).real[:, None, None]
        frames.append({
            "step": np.int64(k), "time_au": np.float64(20.0 * k),
            "positions_bohr": rng.normal(scale=2.0, size=(n_traj, d)),
            "momenta_au": rng.normal(scale=5.0, size=(n_traj, d)),
            "rho": rho, "energies_hartree": np.sort(rng.normal(size=(n_traj, n_states)), axis=1),
            "e_kin_hartree": rng.random(n_traj), "e_pot_hartree": -rng.random(n_traj) - 93.0,
            "force_meanfield": np.zeros((n_traj, d)), "force_geometric": np.zeros((n_traj, d)),
            "force_qc": np.zeros((n_traj, d)), "active": np.array([True, k < 3, True][:n_traj]),
        })
        for key in FRAME_KEYS:  # per-trajectory flags this helper does not model (zeros)
            frames[-1].setdefault(key, np.zeros(n_traj))
    extra = {"masses_au": np.repeat(MASSES_AMU * AMU_ME, 3)}
    if hopping:
        extra["active_state"] = rng.integers(0, n_states, size=(n_frames, n_traj))
    cfg = yaml.safe_dump({"system": {"molecule": {"xyz": "nowhere.xyz"}}, "method": "ehrenfest"})
    _atomic_write_h5(path / "trajectories.h5", frames,
                     {"format": FORMAT, "config": cfg, "symbols": SYMBOLS}, {}, extra)
    return {k: np.stack([f[k] for f in frames]) for k in FRAME_KEYS} | extra


@pytest.fixture
def fake_run():
    return _fake_run
