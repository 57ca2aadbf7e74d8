"""Coordinates in which the swarm fields are estimated: the swarm's own (mass-weighted) subspace.

A molecular swarm in 3N Cartesians is degenerate: the Wigner samples of a diatomic vary along one
direction only, a planar molecule's swarm has no out-of-plane spread, rigid translations and
rotations carry no vibronic information. A kernel or a regression in raw Cartesians then divides
by zero spread (NaN fields). Instead (docs/physics.md, "Swarm estimators on molecules"):

1. mass-weighted displacements from the swarm's mean geometry, q = M^{1/2} (x - <x>);
2. molecules: rigid translations and infinitesimal rotations about the mean geometry (the Eckart
   conditions) projected out of q;
3. principal components of q with variance above ``rel_tol`` times the largest: the columns E
   (D, P) of an orthonormal basis of the subspace in which the swarm actually spreads, and the
   coordinates c = q E (T, P).

The fields are estimated as functions of c and mapped back to Cartesians with the Jacobian
J_jp = d c_p / d x_j = M_j^{1/2} E_jp: d_j f = sum_p J_jp d_p f. Because E is orthonormal in the
mass-weighted metric, the Table II contractions are preserved exactly
(sum_j xi_j d_j a d_j b = sum_p d_p a d_p b), directions without spread get zero derivatives, and
the Cartesian forces sum_p J_kp f_p exert no net force and (at the mean geometry) no torque.
Everything is a function of the swarm's internal geometry: an overall translation + rotation of
the whole swarm rotates J and leaves c (up to the signs of the principal axes, which cancel in
every field) unchanged.

Analytic models with a swarm that spreads in every direction keep their Cartesian coordinates
(J = identity, the estimator of the previous versions, unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SwarmFrame:
    """Coordinates of the active swarm for the field estimators.

    Attributes
    ----------
    coords : (T, P) coordinates c of every trajectory (bohr for ``cartesian``, bohr sqrt(m_e)
        for ``subspace``)
    jacobian : (D, P) J_jp = d c_p / d x_j
    kind : ``cartesian`` (J = identity) or ``subspace`` (mass-weighted principal components)
    """

    coords: np.ndarray
    jacobian: np.ndarray
    kind: str

    @property
    def dim(self) -> int:
        return int(self.coords.shape[1])

    def inverse_metric(self, inv_mass: np.ndarray) -> np.ndarray:
        """(P,) diagonal of J^T diag(xi) J: the inverse masses of the c coordinates (1 for the
        mass-weighted subspace, xi itself for Cartesians); the off-diagonal vanishes in both."""
        return np.einsum("jp,j,jp->p", self.jacobian, inv_mass, self.jacobian)

    def velocity(self, v: np.ndarray) -> np.ndarray:
        """dc/dt = v J for Cartesian velocities v (..., D) -> (..., P)."""
        return v @ self.jacobian if self.kind == "subspace" else v

    def covector(self, f: np.ndarray, masses: np.ndarray) -> np.ndarray:
        """Cartesian momenta / gradients f (..., D) -> their components (..., P) along c:
        f_p = sum_j (dx_j / dc_p) f_j (= sum_j J_jp f_j / M_j in the mass-weighted subspace)."""
        return f if self.kind == "cartesian" else (f / masses) @ self.jacobian

    def first_to_cartesian(self, f: np.ndarray) -> np.ndarray:
        """First derivatives (L, P, ...) in c -> (L, D, ...) in x: d_j = sum_p J_jp d_p."""
        if self.kind == "cartesian":
            return f
        return np.einsum("jp,lp...->lj...", self.jacobian, f)

    def second_to_cartesian(self, s: np.ndarray) -> np.ndarray:
        """Diagonal second derivatives (L, P, ...) in c (cross terms neglected) -> diagonal
        Cartesian ones (L, D, ...): d_j^2 = sum_p J_jp^2 d_p^2, so that sum_j xi_j d_j^2 =
        sum_p (J^T xi J)_pp d_p^2 (the mass-weighted Laplacian)."""
        if self.kind == "cartesian":
            return s
        return np.einsum("jp,lp...->lj...", self.jacobian**2, s)


def rigid_basis(reference: np.ndarray, masses: np.ndarray, tol: float = 1e-8) -> np.ndarray:
    """Orthonormal mass-weighted rigid-motion vectors at ``reference``, (D, R), R = 6 (5 for a
    linear molecule, 3 for an atom).

    Translations M_A^{1/2} e_a and infinitesimal rotations M_A^{1/2} (e_a x (X_A - X_com)) of every
    atom A (the Eckart vectors), orthonormalised by an SVD that drops the null ones.
    """
    x = reference.reshape(-1, 3)
    m = masses.reshape(-1, 3)[:, 0]
    sq = np.sqrt(m)[:, None]
    com = (m[:, None] * x).sum(0) / m.sum()
    r = x - com
    vecs = []
    for a in range(3):
        e = np.zeros(3)
        e[a] = 1.0
        vecs.append((sq * e).ravel())
        vecs.append((sq * np.cross(e, r)).ravel())
    u, sv, _ = np.linalg.svd(np.stack(vecs, axis=1), full_matrices=False)
    return u[:, sv > tol * sv.max()]


#: trajectories per estimated dimension: a subspace swarm keeps at most T // SAMPLES_PER_DIM
#: leading principal components (``max_subspace_dim``)
SAMPLES_PER_DIM = 4


def max_subspace_dim(n_trajectories: int) -> int:
    """Largest number of principal components the fields are estimated in, for T trajectories:
    max(1, T // ``SAMPLES_PER_DIM``).

    The sample covariance of T points in P dimensions has eigenvalues spread by the factor
    (1 +- sqrt(P/T))^2 around the true ones (Marchenko-Pastur); P <= T/4 keeps the smallest
    kept variance within a factor 4 of its true value (the Gaussian tier divides by it) and
    leaves each local regression with >= 4 points per coefficient on average. The components
    dropped are the ones of least mass-weighted spread (the stiffest modes of a Wigner swarm).
    """
    return max(1, int(n_trajectories) // SAMPLES_PER_DIM)


def swarm_frame(positions: np.ndarray, masses: np.ndarray, molecule: bool,
                rel_tol: float = 1e-8, max_dim: int | None = None) -> SwarmFrame:
    """The coordinates of ``positions`` (T, D) bohr in which fields are estimated.

    Parameters
    ----------
    masses : (D,) m_e
    molecule : atoms in 3-D: rigid translations and rotations are projected out first
    rel_tol : principal components with variance below rel_tol x the largest are dropped
    max_dim : keep at most this many leading principal components (``max_subspace_dim``; None:
        all); only for the ``subspace`` frame

    Returns a ``cartesian`` frame for a non-molecular swarm whose covariance has full rank (every
    direction spread: the models' estimator of the previous versions), else the mass-weighted
    ``subspace`` frame (module docstring). P = 0 when the swarm has no spread at all (one
    trajectory, or all at one point): then every field is zero.
    """
    t, d = positions.shape
    if not molecule and t > d:
        cov = np.cov(positions.T, ddof=1).reshape(d, d)
        sd = np.sqrt(np.diag(cov))
        if np.all(sd > 0):
            corr_eig = np.linalg.eigvalsh(cov / np.outer(sd, sd))
            if corr_eig.min() > rel_tol * corr_eig.max():
                return SwarmFrame(positions, np.eye(d), "cartesian")
    sqm = np.sqrt(masses)
    q = (positions - positions.mean(axis=0)) * sqm
    if molecule:
        rig = rigid_basis(positions.mean(axis=0), masses)
        q = q - (q @ rig) @ rig.T
    if t < 2:
        return SwarmFrame(np.zeros((t, 0)), np.zeros((d, 0)), "subspace")
    var, vec = np.linalg.eigh(q.T @ q / (t - 1))
    var, vec = var[::-1], vec[:, ::-1]
    keep = var > max(rel_tol * var[0], 1e-300) if var[0] > 0 else np.zeros(d, bool)
    if max_dim is not None:
        keep &= np.arange(d) < max_dim
    e = vec[:, keep]
    if molecule and e.shape[1]:  # numerical rigid admixture of the eigenvectors
        e = e - rig @ (rig.T @ e)
        e, _ = np.linalg.qr(e)
    return SwarmFrame(q @ e, sqm[:, None] * e, "subspace")
