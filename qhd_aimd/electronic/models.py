"""Analytic model Hamiltonians as electronic-structure backends.

Every model is a diabatic matrix H(x) with analytic derivatives; the backend diagonalises it and
returns the adiabatic states *as numpy's eigh gives them* or, with ``random_phases=True``, each
eigenvector multiplied by a fresh random phase (e^{i phi} for complex models and for real models
when ``phase_kind='complex'``, +-1 when ``phase_kind='sign'``) at every call. The dynamics must
not notice: that is the gauge-invariance proof.

Models (atomic units)
---------------------
``tully_simple``, ``tully_dual``, ``tully_extended``
    J. C. Tully, J. Chem. Phys. 93, 1061 (1990), parameters of that paper; mass 2000 m_e.
``berry_2d``
    Two-state, two-dimensional model with a complex coupling carrying the phase e^{iWy}:
    H = A [[-cos t, sin t e^{iWy}], [sin t e^{-iWy}, cos t]], t = (pi/2)(erf(Bx) + 1),
    the form used by G. Miao, N. Bellonzi, J. Subotnik, J. Chem. Phys. 150, 124101 (2019).
    Our default parameters (chosen here, not taken from that paper): A = 0.10 Ha, B = 1.0 /bohr,
    W = 5.0 /bohr, mass 1000 m_e (both coordinates): for p_x ~ 20 a.u. the passage is adiabatic,
    so the Berry force is the whole story; smaller A / larger B make it non-adiabatic
    (``system.model_params``). Time-reversal symmetry is broken for W != 0: the adiabatic states cannot be
    made real, and the Berry curvature integrated across the crossing gives a transverse
    momentum kick dp_y = -W on the lower and +W on the upper adiabat (adiabatic passage from
    x = -inf to +inf; see ``berry_kick``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import erf

from qhd_aimd.electronic.base import ElectronicData, meanfield_force
from qhd_aimd.errors import ConfigError


@dataclass(frozen=True)
class DiabaticModel:
    """Base for analytic diabatic models: subclasses implement ``h`` and ``dh``.

    ``h(x)`` takes positions (..., D) and returns (..., n, n); ``dh(x)`` returns (..., D, n, n).
    """

    name: str = "model"
    dim: int = 1
    n_states: int = 2
    mass: float = 2000.0

    @property
    def masses(self) -> np.ndarray:
        return np.full(self.dim, float(self.mass))

    def h(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def dh(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def max_momentum_transfer(self) -> tuple[float | None, ...]:
        """Largest momentum (a.u., = 1/bohr) the electronic coupling can give the nuclei along
        each coordinate, or ``None`` where only energy conservation bounds it (the default).

        A number w_d is declared only for a coordinate d along which H is covariant under
        translations, H(x + a e_d) = U(a) H(x) U(a)^dag with U(a) = diag(e^{-i a w_dj}) (the
        coordinate enters H only through phases of the couplings). Then the "twisted" translation
        U(a) exp(-i a p_d) commutes with H, so p_d + w_dj of diabatic component j is conserved
        exactly (quantum mechanically, at any speed): the momentum along d of any component
        changes by at most max_j w_dj - min_j w_dj. ``qhd_aimd.exact.make_grid`` uses it to bound
        the grid's transverse momentum.
        """
        return (None,) * self.dim


def _tully_simple_v(x, A=0.01, B=1.6, C=0.005, D=1.0):
    v11 = np.sign(x) * A * (1.0 - np.exp(-B * np.abs(x)))
    dv11 = A * B * np.exp(-B * np.abs(x))
    v12 = C * np.exp(-D * x**2)
    dv12 = -2.0 * D * x * v12
    return v11, dv11, v12, dv12


@dataclass(frozen=True)
class TullySimple(DiabaticModel):
    """Tully's simple avoided crossing (model 1): A=0.01, B=1.6, C=0.005, D=1.0."""

    name: str = "tully_simple"

    def h(self, x):
        x = np.asarray(x, float)[..., 0]
        v11, _, v12, _ = _tully_simple_v(x)
        return _sym2(v11, -v11, v12)

    def dh(self, x):
        x = np.asarray(x, float)[..., 0]
        _, dv11, _, dv12 = _tully_simple_v(x)
        return _sym2(dv11, -dv11, dv12)[..., None, :, :]


@dataclass(frozen=True)
class TullyDual(DiabaticModel):
    """Tully's dual avoided crossing (model 2): A=0.1, B=0.28, E0=0.05, C=0.015, D=0.06."""

    name: str = "tully_dual"
    A: float = 0.1
    B: float = 0.28
    E0: float = 0.05
    C: float = 0.015
    D: float = 0.06

    def h(self, x):
        x = np.asarray(x, float)[..., 0]
        v22 = -self.A * np.exp(-self.B * x**2) + self.E0
        v12 = self.C * np.exp(-self.D * x**2)
        return _sym2(np.zeros_like(x), v22, v12)

    def dh(self, x):
        x = np.asarray(x, float)[..., 0]
        dv22 = 2.0 * self.A * self.B * x * np.exp(-self.B * x**2)
        dv12 = -2.0 * self.C * self.D * x * np.exp(-self.D * x**2)
        return _sym2(np.zeros_like(x), dv22, dv12)[..., None, :, :]


@dataclass(frozen=True)
class TullyExtended(DiabaticModel):
    """Tully's extended coupling with reflection (model 3): A=6e-4, B=0.1, C=0.9."""

    name: str = "tully_extended"
    A: float = 6e-4
    B: float = 0.1
    C: float = 0.9

    def h(self, x):
        x = np.asarray(x, float)[..., 0]
        e = np.exp(-self.C * np.abs(x))
        v12 = np.where(x < 0, self.B * e, self.B * (2.0 - e))
        a = np.full_like(x, self.A)
        return _sym2(a, -a, v12)

    def dh(self, x):
        x = np.asarray(x, float)[..., 0]
        dv12 = self.B * self.C * np.exp(-self.C * np.abs(x))
        z = np.zeros_like(x)
        return _sym2(z, z, dv12)[..., None, :, :]


@dataclass(frozen=True)
class Berry2D(DiabaticModel):
    """Complex two-state 2-D model (see module docstring); positions (x, y) in bohr."""

    name: str = "berry_2d"
    dim: int = 2
    mass: float = 1000.0
    A: float = 0.10
    B: float = 1.0
    W: float = 5.0

    def _theta(self, x):
        t = 0.5 * np.pi * (erf(self.B * x) + 1.0)
        dt = np.sqrt(np.pi) * self.B * np.exp(-((self.B * x) ** 2))
        return t, dt

    def h(self, q):
        q = np.asarray(q, float)
        x, y = q[..., 0], q[..., 1]
        t, _ = self._theta(x)
        c = self.A * np.sin(t) * np.exp(1j * self.W * y)
        return _herm2(-self.A * np.cos(t), self.A * np.cos(t), c)

    def dh(self, q):
        q = np.asarray(q, float)
        x, y = q[..., 0], q[..., 1]
        t, dt = self._theta(x)
        ph = np.exp(1j * self.W * y)
        dx = _herm2(self.A * np.sin(t) * dt, -self.A * np.sin(t) * dt, self.A * np.cos(t) * dt * ph)
        dy = _herm2(np.zeros_like(x), np.zeros_like(x), 1j * self.W * self.A * np.sin(t) * ph)
        return np.stack([dx, dy], axis=-3)

    def max_momentum_transfer(self) -> tuple[float | None, ...]:
        """y enters only through the coupling phase e^{iWy}: H(x, y + a) = U H(x, y) U^dag with
        U = diag(1, e^{-iWa}), so the momentum along y changes by at most |W| (along x only
        energy conservation bounds it)."""
        return (None, abs(self.W))

    def berry_kick(self, state: int) -> float:
        """Transverse momentum change dp_y (a.u.) for adiabatic passage on ``state`` (0 or 1)."""
        return -self.W if state == 0 else self.W


def _sym2(a, d, c):
    out = np.empty(np.shape(a) + (2, 2), dtype=float)
    out[..., 0, 0], out[..., 1, 1], out[..., 0, 1], out[..., 1, 0] = a, d, c, c
    return out


def _herm2(a, d, c):
    out = np.empty(np.shape(a) + (2, 2), dtype=complex)
    out[..., 0, 0], out[..., 1, 1], out[..., 0, 1], out[..., 1, 0] = a, d, c, np.conj(c)
    return out


MODELS = {m.name: m for m in (TullySimple(), TullyDual(), TullyExtended(), Berry2D())}


def get_model(name: str, **params) -> DiabaticModel:
    """Model by config name; ``params`` override the model's parameters (e.g. ``W`` or ``mass``)."""
    if name not in MODELS:
        raise ConfigError(f"system.model: unknown model {name!r}; choose one of {sorted(MODELS)}")
    model = MODELS[name]
    if params:
        try:
            model = type(model)(**{**model.__dict__, **params})
        except TypeError as exc:
            raise ConfigError(f"system: bad parameter for model {name!r}: {exc}") from None
    return model


@dataclass
class ModelBackend:
    """Electronic backend for a ``DiabaticModel``.

    Parameters
    ----------
    model : DiabaticModel
    random_phases : bool
        Multiply every eigenvector by a random phase at every call (gauge-invariance tests). The
        phases are drawn from a generator seeded with ``seed`` and the bytes of the geometry:
        arbitrary from step to step, yet the same after a restart or on another MPI rank.
    phase_kind : {'auto', 'sign', 'complex'}
        'sign' draws +-1, 'complex' draws e^{i phi}; 'auto' = sign for real models, complex
        otherwise.
    seed : int
        Seed of the phase generator (the phases are *meant* to be arbitrary).
    """

    model: DiabaticModel
    random_phases: bool = False
    phase_kind: str = "auto"
    seed: int = 12345

    def __post_init__(self):
        if self.phase_kind not in ("auto", "sign", "complex"):
            raise ConfigError(f"phase_kind must be auto, sign or complex, not {self.phase_kind!r}")

    @property
    def n_states(self) -> int:
        return self.model.n_states

    @property
    def masses(self) -> np.ndarray:
        return self.model.masses

    @property
    def labels(self) -> list[str]:
        return ["x", "y", "z"][: self.model.dim]

    def compute(self, positions, reference=None) -> ElectronicData:
        """Diagonalise H(x): energies (N,), eigenvectors (handle) and dhdx (D, N, N)."""
        x = np.asarray(positions, float)
        h = self.model.h(x)
        energies, vecs = np.linalg.eigh(h)
        if self.random_phases:
            vecs = vecs * self._phases(x, vecs.shape[1], np.iscomplexobj(h))
        dhdx = np.einsum("an,kab,bm->knm", vecs.conj(), self.model.dh(x), vecs)
        return ElectronicData(positions=x.copy(), energies=energies, handle=vecs, dhdx=dhdx)

    def _phases(self, x, n, complex_model):
        rng = np.random.default_rng([self.seed, *np.frombuffer(np.ascontiguousarray(x).tobytes(), np.uint32)])
        kind = self.phase_kind
        if kind == "auto":
            kind = "complex" if complex_model else "sign"
        if kind == "sign":
            return rng.choice([-1.0, 1.0], size=n)
        return np.exp(2j * np.pi * rng.random(n))

    def overlap(self, a: ElectronicData, b: ElectronicData) -> np.ndarray:
        """<u_n(a)|u_m(b)>: exact, since the diabatic basis is complete and common."""
        return a.handle.conj().T @ b.handle

    def overlaps(self, a: ElectronicData, others: list) -> np.ndarray:
        """Batched ``overlap`` of a with every element of ``others``: (K, N, N)."""
        return np.einsum("an,kam->knm", a.handle.conj(), np.stack([b.handle for b in others]))

    #: overlaps between any two geometries are exactly unitary (complete common diabatic
    #: basis): the swarm fields skip their polar factorisation
    unitary_overlaps = True

    def overlap_pairs(self, elec: list, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Batched ``overlap`` for index pairs: (K, N, N) <u(elec[a_k])|u(elec[b_k])>."""
        h = np.stack([e.handle for e in elec])
        return np.einsum("kan,kam->knm", h[a].conj(), h[b])

    def force(self, data: ElectronicData, rho: np.ndarray) -> np.ndarray:
        return meanfield_force(data.dhdx, rho)
