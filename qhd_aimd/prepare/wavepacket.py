"""Initial conditions for model systems: Wigner sampling of a Gaussian wavepacket."""

from __future__ import annotations

import numpy as np


def trajectory_rng(seed: int, index: int) -> np.random.Generator:
    """Random stream of trajectory ``index``: SeedSequence(seed) spawned by trajectory index, so a
    trajectory's numbers do not depend on the swarm size or the number of MPI ranks."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def sample_wavepacket(position_bohr, momentum_au, width_bohr, n_trajectories: int, seed: int,
                      hydrodynamic: bool = False):
    """Wigner sampling of psi(x) ∝ exp(-(x-x0)^2/(4 s^2) + i k x) per degree of freedom.

    The Wigner function is Gaussian in x (std ``width_bohr`` = s) and p (std 1/(2 s), hbar = 1).
    With ``hydrodynamic`` the momenta are all k (the phase gradient of psi: the fluid elements of
    the packet) and the positions are the same draws as the Wigner sampling's.

    Returns
    -------
    positions (T, D) bohr, momenta (T, D) a.u.
    """
    x0 = np.atleast_1d(np.asarray(position_bohr, float))
    k = np.broadcast_to(np.asarray(momentum_au, float), x0.shape)
    s = np.broadcast_to(np.asarray(width_bohr, float), x0.shape)
    pos = np.empty((n_trajectories, x0.size))
    mom = np.empty_like(pos)
    for i in range(n_trajectories):
        z = trajectory_rng(seed, i).standard_normal((2, x0.size))
        pos[i] = x0 + s * z[0]
        mom[i] = k if hydrodynamic else k + z[1] / (2.0 * s)
    return pos, mom
