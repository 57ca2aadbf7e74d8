"""The swarm's own coordinates (mass-weighted principal subspace, rigid motions projected out)."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from qhd_aimd.dynamics.coordinates import rigid_basis, swarm_frame

M_LI, M_H = 7.016 * 1822.888, 1.008 * 1822.888


def _bent(rng, n, masses):
    """Planar triatomic swarm (xy plane): random internal displacements only."""
    x0 = np.array([[0.0, 0.0, 0.0], [1.8, 0.0, 0.0], [-0.5, 1.7, 0.0]])
    rig = rigid_basis(x0.ravel(), masses)
    planar = np.zeros((9, 6))
    for k in range(6):
        v = np.zeros((3, 3))
        v[k // 2, k % 2] = 1.0  # in-plane Cartesian directions
        planar[:, k] = v.ravel()
    q = (planar * np.sqrt(masses)[:, None])  # mass-weighted in-plane vectors
    q = q - rig @ (rig.T @ q)  # internal (in-plane: 3 of them)
    u, sv, _ = np.linalg.svd(q, full_matrices=False)
    internal = u[:, sv > 1e-8 * sv.max()]
    assert internal.shape[1] == 3
    c = rng.normal(size=(n, 3)) * np.array([30.0, 20.0, 10.0])
    return x0.ravel() + (c @ internal.T) / np.sqrt(masses)


def test_diatomic_swarm_has_one_coordinate_the_reduced_bond():
    masses = np.repeat([M_LI, M_H], 3)
    rng = np.random.default_rng(0)
    r = 3.0 + 0.05 * rng.normal(size=20)
    z1, z2 = -M_H / (M_LI + M_H) * r, M_LI / (M_LI + M_H) * r
    pos = np.zeros((20, 6))
    pos[:, 2], pos[:, 5] = z1, z2
    pos[:, [0, 1, 3, 4]] = 1e-16 * rng.normal(size=(20, 4))  # round-off "spread"
    fr = swarm_frame(pos, masses, molecule=True)
    assert fr.kind == "subspace" and fr.dim == 1
    mu = M_LI * M_H / (M_LI + M_H)
    c = fr.coords[:, 0] * np.sign(fr.coords[0, 0] * (r[0] - r.mean()))
    assert np.allclose(c, np.sqrt(mu) * (r - r.mean()), rtol=1e-10, atol=1e-12)
    assert np.allclose(fr.inverse_metric(1 / masses), 1.0)


def test_planar_swarm_coordinates_are_internal_and_invariant_under_rigid_motion():
    masses = np.repeat([16.0, 1.0, 1.0], 3) * 1822.888
    rng = np.random.default_rng(1)
    pos = _bent(rng, 40, masses)
    fr = swarm_frame(pos, masses, molecule=True)
    assert fr.dim == 3  # 9 Cartesians - 6 rigid motions = 3 in-plane internal motions
    rig = rigid_basis(pos.mean(0), masses)
    # the Jacobian's columns have no rigid component: no net force, no torque at the mean
    assert np.abs(rig.T @ (fr.jacobian / np.sqrt(masses)[:, None])).max() < 1e-10
    rot = Rotation.from_rotvec([0.3, -1.1, 0.7]).as_matrix()
    moved = (pos.reshape(-1, 3, 3) @ rot.T + np.array([2.0, -1.0, 5.0])).reshape(-1, 9)
    fr2 = swarm_frame(moved, masses, molecule=True)
    signs = np.sign(np.sum(fr.coords * fr2.coords, axis=0))
    assert np.allclose(fr.coords, fr2.coords * signs, atol=1e-9 * np.abs(fr.coords).max())
    # Jacobians rotate with the swarm
    j_rot = (fr.jacobian.T.reshape(3, 3, 3) @ rot.T).reshape(3, 9).T
    assert np.allclose(j_rot, fr2.jacobian * signs, atol=1e-9 * np.abs(fr.jacobian).max())


@pytest.mark.parametrize("n", [1, 5])
def test_swarm_without_spread_has_no_coordinates(n):
    masses = np.repeat([M_LI, M_H], 3)
    pos = np.tile([0.0, 0.0, 0.0, 0.0, 0.0, 3.0], (n, 1))
    assert swarm_frame(pos, masses, molecule=True).dim == 0


def test_spread_model_swarm_keeps_cartesians_and_degenerate_one_does_not():
    rng = np.random.default_rng(2)
    pos = rng.normal(size=(50, 2))
    fr = swarm_frame(pos, np.full(2, 1000.0), molecule=False)
    assert fr.kind == "cartesian" and fr.coords is pos and np.array_equal(fr.jacobian, np.eye(2))
    pos[:, 1] = 0.5  # no spread along y
    fr = swarm_frame(pos, np.full(2, 1000.0), molecule=False)
    assert fr.kind == "subspace" and fr.dim == 1
    assert np.allclose(np.abs(fr.jacobian[:, 0]), [np.sqrt(1000.0), 0.0])


def test_linear_molecule_has_five_rigid_motions():
    masses = np.repeat([12.0, 16.0, 16.0], 3)
    x = np.array([0, 0, 0, 0, 0, 2.2, 0, 0, -2.2], float)
    assert rigid_basis(x, masses).shape == (9, 5)
    assert rigid_basis(x + 0.3 * np.arange(9), masses).shape == (9, 6)
