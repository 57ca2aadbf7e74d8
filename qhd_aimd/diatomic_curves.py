"""Adiabatic curves of a diatomic and their exact diabatisation: the electronic half of the
exact diatomic reference (:mod:`qhd_aimd.exact_diatomic` propagates on the result).

N >= 2 adiabatic states u_0 .. u_{N-1} and one nuclear coordinate, the bond length R.

1. Curves (``scan_curves``): the backend's SA-CASSCF (same method, basis, active space, charge,
   spin as the swarm) on a grid R_0 < ... < R_{K-1}, each point warm-started from its neighbour,
   walking outwards from the geometry of the study's xyz file; energies E_n(R_i) and the step
   overlaps S_i = <u_n(R_i)|u_m(R_{i+1})> (``backend.overlap``). The solver's sign of every state
   at every point is kept as it comes.
2. Diabatisation (``diabatize``), exact for any N states along one coordinate (one coordinate:
   the ADT matrix A(R) = P exp(-int d dR) has no curl condition to meet): the adiabatic-to-
   diabatic frame (for two states the rotation by the mixing angle theta(R) = int d_01 dR) is
   carried from point to point by
   the orthogonal polar factor of the step overlap, U_i = S_i (S_i^T S_i)^(-1/2) (Loewdin), exactly
   as the swarm carries rho_el:  A_{i+1} = U_i^T A_i, A_0 = 1, where column a of A_i holds diabat a
   in the adiabatic basis of R_i; H_d(R_i) = A_i^T diag(E(R_i)) A_i. A sign flip of u_n at R_i
   flips row n of A_i and nothing else, so H_d is unchanged at every point (a flip at R_0 flips
   one diabat globally: a constant gauge of the diabatic basis); no sign is ever chosen, compared
   or aligned (tests: random signs per grid point). The per-step angle |dtheta_i| = arcsin|U_i,01|
   (N > 2: arcsin of the largest off-diagonal |U_i,nm|) is sign-invariant and gives |d_nm| on the
   mid points; the polar factor of the exact N-state overlap differs from the transport
   P exp(-int d dR) by O(h^3) per step (the out-of-space part of S is symmetric to that order),
   so the frame converges as h^2 and the check is grid refinement.
   Grid (``adaptive_grid``): uniform spacing ``dr`` and every step whose |dtheta| exceeds
   ``max_angle`` bisected until it does not (the coupling peak at an avoided crossing gets
   resolved automatically); convergence in (dr, max_angle) is shown on the populations
   (docs/validation/exact_diatomic_convergence.py).

Diabatic model (``SplineModel``): cubic splines of the N(N+1)/2 diabatic elements (smooth) on
the curve grid, with the model interface of ``qhd_aimd.exact.propagate``.

Units: bohr, hartree, m_e.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import CubicSpline

from qhd_aimd.errors import ConfigError

#: default electronic grid: spacing (bohr) and largest mixing-angle change per step (rad)
DR_BOHR = 0.1
MAX_ANGLE = 0.02


# ----------------------------------------------------------------------------- curves


@dataclass
class DiatomicCurves:
    """N >= 2 adiabatic curves on a grid, with the step overlaps as the solver gave them.

    r_bohr (K,) ascending; energies (K, N) hartree; overlaps (K-1, N, N) real,
    S_i[n, m] = <u_n(R_i)|u_m(R_{i+1})>; reduced_mass (m_e).
    """

    r_bohr: np.ndarray
    energies: np.ndarray
    overlaps: np.ndarray
    reduced_mass: float
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.r_bohr = np.asarray(self.r_bohr, float)
        self.energies = np.asarray(self.energies, float)
        self.overlaps = np.real(np.asarray(self.overlaps))
        k = len(self.r_bohr)
        n = self.energies.shape[1] if self.energies.ndim == 2 else 0
        if n < 2 or self.energies.shape != (k, n) or self.overlaps.shape != (k - 1, n, n):
            raise ValueError("curves: need energies (K, N) and overlaps (K-1, N, N), N >= 2")
        if np.any(np.diff(self.r_bohr) <= 0):
            raise ValueError("curves: r_bohr must be strictly ascending")

    def save(self, path) -> None:
        import h5py
        with h5py.File(path, "w") as f:
            for key in ("r_bohr", "energies", "overlaps"):
                f[key] = getattr(self, key)
            f.attrs["reduced_mass"] = self.reduced_mass
            for key, val in self.meta.items():
                f.attrs[f"meta_{key}"] = str(val)

    @property
    def n_states(self) -> int:
        return int(self.energies.shape[1])

    @classmethod
    def load(cls, path) -> "DiatomicCurves":
        import h5py
        with h5py.File(path, "r") as f:
            meta = {k[5:]: v for k, v in f.attrs.items() if k.startswith("meta_")}
            return cls(f["r_bohr"][()], f["energies"][()], f["overlaps"][()],
                       float(f.attrs["reduced_mass"]), meta)


def bond_positions(x_ref: np.ndarray, r: float) -> np.ndarray:
    """(6,) bohr: the two atoms of ``x_ref`` (6,) moved along their bond axis to distance r about
    their mid point (energies and overlaps depend on r only)."""
    a, b = np.asarray(x_ref, float).reshape(2, 3)
    axis = (b - a) / np.linalg.norm(b - a)
    mid = 0.5 * (a + b)
    return np.concatenate([mid - 0.5 * r * axis, mid + 0.5 * r * axis])


def _compute_chain(backend, x_ref, rs, start: int, info: dict):
    """Electronic data at every r in ``rs``: the point ``start`` first (cold, like the swarm's
    first step), then outwards, each warm-started from its inner neighbour."""
    data = [None] * len(rs)
    data[start] = backend.compute(bond_positions(x_ref, rs[start]))
    for i in range(start + 1, len(rs)):
        data[i] = backend.compute(bond_positions(x_ref, rs[i]), reference=data[i - 1])
    for i in range(start - 1, -1, -1):
        data[i] = backend.compute(bond_positions(x_ref, rs[i]), reference=data[i + 1])
    info["n_points"] = info.get("n_points", 0) + len(rs)
    return data


def step_angle(s: np.ndarray) -> np.ndarray:
    """|dtheta| (rad) of step overlaps s (..., N, N): arcsin of the largest off-diagonal |U_nm|
    of the Loewdin polar factor U = S (S^T S)^(-1/2) (N = 2: arcsin |U_01|, the change of the
    mixing angle). Invariant under any sign of any state at either point."""
    return pair_angles(s).max(axis=(-1, -2))


def pair_angles(s: np.ndarray) -> np.ndarray:
    """(..., N, N) arcsin |U_nm| of the polar factor of step overlaps s (..., N, N), zero on the
    diagonal: per-step rotation between states n and m (rad), sign-invariant; divided by the
    step it is |d_nm| at the mid point to O(h^2)."""
    u = np.abs(polar(s))
    n = u.shape[-1]
    u[..., np.arange(n), np.arange(n)] = 0.0
    return np.arcsin(np.clip(u, 0.0, 1.0))


def polar(s: np.ndarray) -> np.ndarray:
    """Orthogonal polar factor S (S^T S)^(-1/2) of real square matrices (..., n, n) (via SVD)."""
    w, _, vt = np.linalg.svd(np.real(s))
    return w @ vt


def adaptive_grid(compute_pair, r_lo: float, r_hi: float, dr: float = DR_BOHR,
                  max_angle: float = MAX_ANGLE, min_dr: float = 1e-3, min_sv_ratio: float = 0.9):
    """Uniform grid of spacing <= ``dr`` on [r_lo, r_hi], bisected where a step's |dtheta|
    exceeds ``max_angle`` or where the step overlap is far from orthogonal (ratio of its singular
    values below ``min_sv_ratio``: the two-state space itself changes along the step).

    ``compute_pair(r_list)`` returns (energies (K, N), overlaps (K-1, N, N)) for an ascending
    list; it is called again with the refined list until no step needs bisection (steps are
    never made shorter than ``min_dr``). A step of ``min_dr`` whose angle still exceeds
    ``max_angle`` with an orthogonal overlap is an exact crossing (the states swap; the
    transported frame turns through it, H_d stays smooth) and is kept; one whose overlap is still
    not orthogonal is a discontinuity of the solver's two-state space (e.g. an active-space
    switch), where no diabatisation exists: ``ConfigError`` naming R. Returns
    (r (K,), energies, overlaps, rounds).
    """
    n = max(2, math.ceil((r_hi - r_lo) / dr) + 1)
    rs = list(np.linspace(r_lo, r_hi, n))
    for rounds in range(1, 30):
        e, s = compute_pair(rs)
        ang = step_angle(s)
        sv = np.linalg.svd(s, compute_uv=False)
        ratio = sv[:, -1] / np.maximum(sv[:, 0], 1e-300)
        steps = np.diff(rs)
        short = steps <= 2 * min_dr
        broken = np.nonzero(short & (ratio < min_sv_ratio))[0]
        if len(broken):
            i = int(broken[0])
            raise ConfigError(
                f"exact: the electronic states change discontinuously between R = {rs[i]:.4f} "
                f"and {rs[i + 1]:.4f} bohr (step overlap singular values "
                f"{np.array2string(sv[i], precision=3)}): an active-space switch of the solver; "
                "no diabatisation exists there -- choose another active space or scan range")
        bad = np.nonzero(((ang > max_angle) | (ratio < min_sv_ratio)) & ~short)[0]
        if len(bad) == 0:
            return np.asarray(rs), e, s, rounds
        rs = sorted(set(rs) | {0.5 * (rs[i] + rs[i + 1]) for i in bad})
    raise ConfigError(f"exact: the mixing angle did not resolve to {max_angle} rad per step "
                      "(discontinuous electronic states along R?)")


def scan_curves(backend, x_ref, r_lo: float, r_hi: float, *, dr: float = DR_BOHR,
                max_angle: float = MAX_ANGLE, progress=None) -> DiatomicCurves:
    """SA-CASSCF curves of a diatomic (``backend``: ``CasscfBackend`` with N >= 2 states) on an
    adaptive grid (``adaptive_grid``) between ``r_lo`` and ``r_hi`` (bohr); the geometry is
    ``x_ref`` (6,) bohr with the bond stretched along its axis. Points already computed are
    reused when the grid is refined (each new point warm-started from its inner neighbour)."""
    if backend.n_states < 2:
        raise ConfigError("exact: diatomic references need system.electronic.n_states >= 2")
    x_ref = np.asarray(x_ref, float)
    r0 = float(np.linalg.norm(x_ref[3:] - x_ref[:3]))
    cache: dict[float, object] = {}
    info: dict = {}

    def compute_pair(rs):
        new = [r for r in rs if r not in cache]
        if not cache:
            start = int(np.argmin(np.abs(np.asarray(new) - r0)))
            for r, d in zip(new, _compute_chain(backend, x_ref, new, start, info)):
                cache[r] = d
        else:
            for r in new:  # bisection points: warm start from the inner neighbour
                inner = max(q for q in cache if q < r)
                cache[r] = backend.compute(bond_positions(x_ref, r), reference=cache[inner])
            info["n_points"] = len(cache)
        if progress:
            progress(f"exact: {len(cache)} points")
        e = np.array([cache[r].energies for r in rs])
        s = np.array([np.real(backend.overlap(cache[a], cache[b]))
                      for a, b in zip(rs[:-1], rs[1:])])
        return e, s

    wall = time.perf_counter()
    r, e, s, rounds = adaptive_grid(compute_pair, r_lo, r_hi, dr, max_angle)
    m = np.asarray(backend.masses, float)[::3]
    mu = float(m[0] * m[1] / (m[0] + m[1]))
    return DiatomicCurves(r, e, s, mu, meta={"dr": dr, "max_angle": max_angle, "rounds": rounds,
                                             "r_ref": r0, "wall_s": time.perf_counter() - wall,
                                             "masses": m.tolist()})


# ----------------------------------------------------------------------------- diabatisation


@dataclass
class Diabatic:
    """Diabatic representation on the curve grid: h (K, N, N) hartree, frames (K, N, N)
    (column a = diabat a in the adiabatic basis at R_i), abs_coupling (K-1,) |d_01| at the mid
    points (1/bohr), abs_couplings (K-1, N, N) |d_nm| for every pair (zero diagonal)."""

    r_bohr: np.ndarray
    h: np.ndarray
    frames: np.ndarray
    abs_coupling: np.ndarray
    abs_couplings: np.ndarray | None = None


def diabatize(curves: DiatomicCurves) -> Diabatic:
    """Exact N-state diabatisation by overlap transport of the ADT frame (module docstring)."""
    u = polar(curves.overlaps)
    k, n = curves.energies.shape
    frames = np.empty((k, n, n))
    frames[0] = np.eye(n)
    for i in range(k - 1):
        frames[i + 1] = u[i].T @ frames[i]
    h = np.einsum("kna,kn,knb->kab", frames, curves.energies, frames)
    h = 0.5 * (h + np.swapaxes(h, 1, 2))
    abs_d = pair_angles(curves.overlaps) / np.diff(curves.r_bohr)[:, None, None]
    return Diabatic(curves.r_bohr, h, frames, abs_d[:, 0, 1], abs_d)


def coupling_from_diabatic(h: np.ndarray, dh: np.ndarray) -> np.ndarray:
    """|d_01| = |dtheta/dR| (1/bohr) of a real 2x2 diabatic Hamiltonian h (..., 2, 2) with
    derivative dh: theta = atan2(2 H01, H00 - H11) / 2."""
    delta, h01 = h[..., 0, 0] - h[..., 1, 1], h[..., 0, 1]
    ddelta, dh01 = dh[..., 0, 0] - dh[..., 1, 1], dh[..., 0, 1]
    return np.abs((dh01 * delta - h01 * ddelta) / (delta**2 + 4 * h01**2))


@dataclass(frozen=True, eq=False)
class SplineModel:
    """Diabatic 1-D model from a ``Diabatic`` on its grid (cubic splines of the N(N+1)/2
    elements), with the interface ``qhd_aimd.exact.propagate`` needs (``h``, ``dim``, ``n_states``,
    ``mass``, ``name``). ``h(x)`` refuses points outside the curve grid."""

    dia: Diabatic
    mass: float
    name: str = "diatomic"
    dim: int = 1
    n_states: int = 2

    def __post_init__(self):
        r = self.dia.r_bohr
        n = self.dia.h.shape[1]
        object.__setattr__(self, "n_states", n)
        object.__setattr__(self, "_pairs", [(a, b) for a in range(n) for b in range(a, n)])
        object.__setattr__(self, "_spl", [CubicSpline(r, self.dia.h[:, a, b])
                                          for a, b in self._pairs])

    def _assemble(self, vals, shape):
        n = self.n_states
        out = np.empty(shape + (n, n))
        for (a, b), v in zip(self._pairs, vals):
            out[..., a, b] = v
            out[..., b, a] = v
        return out

    def h(self, x):
        x = np.asarray(x, float)[..., 0]
        r = self.dia.r_bohr
        if np.any(x < r[0] - 1e-9) or np.any(x > r[-1] + 1e-9):
            raise ConfigError(f"exact: grid point outside the scanned range "
                              f"[{r[0]:.3f}, {r[-1]:.3f}] bohr")
        return self._assemble([s(x) for s in self._spl], x.shape)

    def dh(self, x):
        x = np.asarray(x, float)[..., 0]
        return self._assemble([s(x, 1) for s in self._spl], x.shape)[..., None, :, :]

    def max_momentum_transfer(self):
        return (None,)
