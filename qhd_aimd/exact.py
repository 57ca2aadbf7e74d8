"""Exact quantum reference for the analytic models: split-operator wavepacket propagation.

The nuclear wavefunction Psi(x) = sum_a psi_a(x) |a> (diabatic components a) is propagated on a
uniform periodic grid with the second-order (Strang) split operator, atomic units, hbar = 1::

    Psi(t + dt) = exp(-i V dt/2) exp(-i T dt) exp(-i V dt/2) Psi(t)

``T = p^2 / 2M`` is applied in momentum space (FFT); ``exp(-i V(x) tau)`` is the exact matrix
exponential of the diabatic Hamiltonian at every grid point (from its eigendecomposition, which
is computed once: the grid does not move). Adjacent half steps inside one sampling interval are
merged, so one internal step costs one forward and one inverse FFT.

Initial state: a Gaussian on the initial *adiabatic* state ``initial.state``::

    Psi(x, 0) = (2 pi sigma^2)^(-D/4) exp(-(x - x0)^2 / (4 sigma^2) + i k (x - x0)) u_n(x)

so that |Psi|^2 has standard deviation ``width_bohr`` = sigma and mean momentum
``momentum_au`` = k. The phase of u_n(x) is fixed by making <u_n(x0)|u_n(x)> real and positive,
which is smooth across the packet (a sign- or phase-jumping eigenvector from ``eigh`` would be a
different, discontinuous initial state). Every reported observable is gauge independent.

Observables (sampled every ``dynamics.dt``): adiabatic populations P_n = int |chi_n|^2 dx with
chi_n(x) = <u_n(x)|Psi(x)>; the decoherence indicator D_12 = int |chi_1|^2 |chi_2|^2 / n dx
(n = |chi_1|^2 + |chi_2|^2, the nuclear density; 0 <= D_12 <= norm/4); norm; <x>; <p>;
<T> + <V>. At the final time: transmission (x > 0) and reflection (x < 0) per adiabatic state,
along the first coordinate; <p_d> and <p_d^2> per adiabatic state, from the projected
wavefunction P_n Psi = u_n chi_n (a diabatic vector field: no eigenvector phase enters), i.e. the
kinetic momentum <chi_n| p - A_nn |chi_n> on adiabat n (Berry connection A_nn = i<u_n|grad u_n>);
outside the coupling region this is the momentum of the diabatic component the adiabat has
become.

Grid (chosen from the config, see ``make_grid``): no absorber is used. The box covers every
point the packet can reach classically within ``t_final`` (its maximal speed follows from
energy conservation, including the energy the lowest adiabat can release and a 6-sigma momentum
tail, or, along a coordinate that enters H only through coupling phases, from the momentum those
phases can transfer: ``DiabaticModel.max_momentum_transfer``) plus 8 spread-widths and a margin;
the spacing resolves that maximal momentum with a factor ``p_factor`` (2.0) to spare. Both are
checked during the run: the probability found beyond the expected region (in x) or in the outer
20 % of the momentum grid (beyond the momentum bound itself where that bound is strict, i.e.
from a declared momentum transfer) is recorded in ``ExactResult.edge_probability`` /
``momentum_edge_probability`` and a ``RuntimeWarning`` is issued if either exceeds 1e-6. The
internal step is the largest divisor of ``dynamics.dt`` not above ``dt_max`` (default 1 a.u.;
halving it changes populations by < 1e-6 for the Tully models, see ``tests/test_exact.py``).

Models and validation (``tests/test_exact.py``): the 1-D Tully models, against a stationary
two-channel scattering calculation, Landau-Zener and closed channels; the complex 2-D
``berry_2d``, against the exact consequences of its twisted-translation symmetry (kick -W / +W on
the lower / upper adiabat after an adiabatic passage, to 3e-10 a.u.; -W / 0 on the lower / upper
part after a non-adiabatic one; <p^2> per state conserved; probability beyond the transverse
momentum bound 5e-10) and against Ehrenfest swarms (docs/physics.md). ``berry_2d`` from
x0 = (-5, 0), k = (20, 0), width 1 bohr, over 650 a.u.: grid 990 x 242 (lower state) or
1500 x 242 (upper: the energy bound includes the 0.2 Ha it can release), 10-16 s on one core,
~0.25 GB.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.fft as sfft

from qhd_aimd.errors import ConfigError
from qhd_aimd.units import AUT_FS

#: threshold of the edge checks (probability outside the region the box was sized for)
EDGE_TOL = 1e-6
#: largest grid ``propagate`` accepts (memory ~0.6 kB per point for two states)
MAX_POINTS = 4_000_000


@dataclass
class Grid:
    """Uniform periodic grid: ``axes`` per dimension (1-D arrays, bohr)."""

    axes: list[np.ndarray]
    inner: list[tuple[float, float]]  # region the packet is expected to stay in, per dim
    p_max: list[float]  # momentum the spacing was chosen to resolve, per dim (a.u.)
    # per dim: p_max is a strict bound (declared momentum transfer, exact symmetry), so the
    # momentum check counts probability beyond p_max itself; else (energy bound, which quantum
    # tails may exceed inside a coupling region) only beyond 80 % of the Nyquist momentum
    strict: list[bool] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a) for a in self.axes)

    @property
    def spacing(self) -> list[float]:
        return [float(a[1] - a[0]) for a in self.axes]

    @property
    def dv(self) -> float:
        return float(np.prod(self.spacing))

    def points(self) -> np.ndarray:
        """(..., D) positions of all grid points."""
        return np.stack(np.meshgrid(*self.axes, indexing="ij"), axis=-1)

    def momenta(self) -> list[np.ndarray]:
        return [2.0 * np.pi * sfft.fftfreq(len(a), d=float(a[1] - a[0])) for a in self.axes]


@dataclass
class ExactResult:
    """Exact (grid) dynamics of one model study; atomic units throughout."""

    model: str
    time_au: np.ndarray  # (T,)
    populations: np.ndarray  # (T, n) adiabatic
    decoherence: np.ndarray  # (T,) D_12 (first two adiabatic states)
    norm: np.ndarray  # (T,)
    mean_position_bohr: np.ndarray  # (T,) in 1-D, (T, D) otherwise
    mean_momentum_au: np.ndarray  # (T,) in 1-D, (T, D) otherwise
    energy: np.ndarray  # (T,) total energy <T> + <V>, hartree
    transmission: np.ndarray  # (n,) probability on adiabat n with x > 0 at t_final
    reflection: np.ndarray  # (n,) probability on adiabat n with x < 0 at t_final
    final_momentum_per_state: np.ndarray  # (n, D) <p_d> per adiabat at t_final, a.u. (nan: empty)
    final_momentum_sq_per_state: np.ndarray  # (n, D) <p_d^2> on each adiabat at t_final, a.u.
    grid_shape: tuple[int, ...]
    grid_spacing: list[float]
    grid_bounds: list[tuple[float, float]]
    dt_internal: float
    edge_probability: float  # max over samples of probability outside the expected region
    # max over samples of the probability in the outer 20 % of the momentum grid, or beyond p_max
    # along coordinates where it is a strict bound (``Grid.strict``)
    momentum_edge_probability: float
    wall_time_s: float = 0.0
    meta: dict = field(default_factory=dict)

    @property
    def time_fs(self) -> np.ndarray:
        return self.time_au * AUT_FS

    @property
    def energy_drift(self) -> float:
        return float(np.max(np.abs(self.energy - self.energy[0])))


# ----------------------------------------------------------------------------- set-up helpers


def _vector(value, dim: int, key: str) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(value, dtype=float))
    if arr.size == 1 and dim > 1:
        arr = np.full(dim, float(arr[0]))
    if arr.shape != (dim,):
        raise ConfigError(f"initial.{key}: expected {dim} value(s) for a {dim}-D model, got {value!r}")
    return arr


def _adiabats(model, pts: np.ndarray):
    """Energies (..., n) and eigenvectors (..., n, n) (columns) of the diabatic H at ``pts``."""
    return np.linalg.eigh(model.h(pts))


def _lowest_energy(model, lo: np.ndarray, hi: np.ndarray, n: int = 801) -> float:
    """min over a box of the lowest adiabatic energy (sampled; box edges included)."""
    axes = [np.linspace(a, b, n if len(lo) == 1 else 121) for a, b in zip(lo, hi)]
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    return float(np.min(np.linalg.eigvalsh(model.h(pts))[..., 0]))


def make_grid(model, x0, k0, sigma, state: int, t_final: float, *, p_factor: float = 2.0,
              margin: float = 5.0, tail: float = 8.0, dx: float | None = None,
              align_origin: bool = True) -> Grid:
    """Grid covering the classically reachable region within ``t_final``.

    Maximal momentum per dimension (a.u.): the energy bound p_E = sqrt(2 M (E_max - min_x E_0(x)))
    with E_max = (|k| + 6 sigma_p)^2 / 2M + E_state(x0) summed over dimensions (no dimension can
    take more kinetic energy than all of it), sigma_p = 1 / (2 sigma), and at least
    |k_d| + 6 sigma_p. Along a coordinate d where the model declares a momentum transfer w_d
    (``model.max_momentum_transfer()``: the coordinate enters H only through coupling phases, an
    exact symmetry), p_max_d = min(p_E, |k_d| + 6 sigma_p + w_d) (``berry_2d``: |k_y| + 3/sigma
    + W along y instead of the total energy). Such a bound is strict at all times, unlike the energy
    bound, which the momentum distribution of the diabatic components exceeds slightly inside a
    coupling region (by 1.5e-4 probability on ``berry_2d``); ``Grid.strict`` flags it and the
    run-time check counts probability beyond it (see ``propagate``). The box is
    x0 +- (p_max / M * t_final + tail * sigma(t_final) + margin), sigma(t) the free-spreading
    width; spacing dx = pi / (p_factor * p_max) unless given; point counts are rounded up to
    FFT-friendly sizes.
    """
    x0, k0, sigma = (np.asarray(v, float) for v in (x0, k0, sigma))
    m = float(model.mass)
    sig_p = 0.5 / sigma
    e_state = float(_adiabats(model, x0[None, :])[0][0, state])
    e_kin = float(np.sum((np.abs(k0) + 6.0 * sig_p) ** 2)) / (2 * m)
    spread = np.sqrt(sigma**2 + (sig_p * t_final / m) ** 2)
    half = np.full_like(x0, abs(float(np.max(np.abs(x0)))) + 50.0)
    p_max = np.abs(k0) + 6 * sig_p
    p_transfer = np.array([np.inf if w is None else abs(k) + 6 * s + w for k, s, w in
                           zip(k0, sig_p, model.max_momentum_transfer())])
    for _ in range(6):  # the reachable region and the energy release depend on each other
        e_min = _lowest_energy(model, x0 - half, x0 + half)
        p_cap = math.sqrt(2 * m * max(e_kin + e_state - e_min, 0.0))
        p_max = np.minimum(np.maximum(np.abs(k0) + 6 * sig_p, p_cap), p_transfer)
        new_half = p_max / m * t_final + tail * spread + margin
        if np.all(new_half <= half):
            break
        half = np.maximum(new_half, half)
    half = p_max / m * t_final + tail * spread + margin
    axes, inner = [], []
    for d in range(len(x0)):
        box = 2 * (half[d] + margin)  # an extra, empty margin beyond the expected region
        h = dx if dx is not None else math.pi / (p_factor * p_max[d])
        npts = sfft.next_fast_len(math.ceil(box / h))
        npts += npts % 2
        spacing = box / npts
        start = x0[d] - box / 2
        if align_origin and start < 0 < start + box:  # put a grid point on x = 0: the models'
            start = spacing * math.floor(start / spacing)  # potentials have kinks there
        ax = start + spacing * np.arange(npts)
        axes.append(ax)
        inner.append((float(x0[d] - half[d]), float(x0[d] + half[d])))
    return Grid(axes=axes, inner=inner, p_max=[float(p) for p in p_max],
                strict=[bool(p >= t) for p, t in zip(p_max, p_transfer)])


def _initial_electronic(vecs: np.ndarray, ref: np.ndarray, state: int) -> np.ndarray:
    """Electronic factor of the initial state, (*S, n): P_n(x) c / |P_n(x) c| with c = u_n(x0).

    Built from the gauge-invariant projector P_n = |u_n><u_n|, so no phase of the solver's
    eigenvectors is ever chosen; it is the adiabatic state continuous with u_n(x0) across the packet.
    """
    u = vecs[..., :, state]
    proj = u * np.einsum("...a,a->...", u.conj(), ref)[..., None]
    return proj / np.maximum(np.linalg.norm(proj, axis=-1, keepdims=True), 1e-300)


# ----------------------------------------------------------------------------- propagation


def propagate(model, x0, k0, sigma, state: int, dt: float, n_samples: int, *,
              dt_max: float = 1.0, grid: Grid | None = None, t_final: float | None = None,
              p_factor: float = 2.0, dx: float | None = None, warn: bool = True,
              max_points: int = MAX_POINTS, snapshot=None, psi0=None) -> ExactResult:
    """Split-operator propagation; samples every ``dt`` for ``n_samples`` intervals.

    ``dt_max`` bounds the internal step (``dt`` is split into ceil(dt/dt_max) equal steps);
    grids of more than ``max_points`` points are refused (``ConfigError``; ~0.6 kB per point).
    ``snapshot(i, psi)``, if given, is called at every sample i with the diabatic wavefunction
    psi (n_states, *grid.shape) on ``make_grid``'s grid (e.g. to evaluate exact fields).
    """
    import time

    wall = time.perf_counter()
    dim, n = int(model.dim), int(model.n_states)
    x0, k0, sigma = (_vector(v, dim, key) for v, key in
                     ((x0, "position_bohr"), (k0, "momentum_au"), (sigma, "width_bohr")))
    if not 0 <= state < n:
        raise ConfigError(f"initial.state {state} out of range for {n}-state model {model.name}")
    t_final = dt * n_samples if t_final is None else t_final
    if grid is None:
        grid = make_grid(model, x0, k0, sigma, state, t_final, p_factor=p_factor, dx=dx)
    if math.prod(grid.shape) > max_points:
        raise ConfigError(f"exact: the grid would have {math.prod(grid.shape)} points "
                          f"{grid.shape} (> {max_points}); shorten dynamics.t_final_au or start "
                          "closer to the coupling region")
    m = float(model.mass)
    pts = grid.points()  # (*S, D)
    S = grid.shape
    dv = grid.dv
    axes_sum = tuple(range(1, dim + 1))  # spatial axes of (n, *S) arrays

    # electronic structure on the grid (once)
    hmat = model.h(pts)  # (*S, n, n)
    energies, vecs = np.linalg.eigh(hmat)
    vecs = np.asarray(vecs, dtype=complex)
    ref = _adiabats(model, x0[None, :])[1][0].astype(complex)[:, state]
    u_dag = np.moveaxis(vecs.conj(), (-1, -2), (0, 1))  # (n_adiab, n_diab, *S): u_n^*(x)_a

    def v_prop(tau):  # (n, n, *S) exact exp(-i H(x) tau) at every point
        p = np.einsum("...an,...n,...bn->...ab", vecs, np.exp(-1j * energies * tau), vecs.conj())
        return np.moveaxis(p, (-2, -1), (0, 1))

    n_sub = max(1, math.ceil(dt / dt_max - 1e-9))
    h = dt / n_sub
    v_half, v_full = v_prop(h / 2), v_prop(h)
    kgrid = np.meshgrid(*grid.momenta(), indexing="ij")
    k2 = sum(kk**2 for kk in kgrid)
    t_prop = np.exp(-1j * k2 / (2 * m) * h)
    h_mat = np.moveaxis(hmat, (-2, -1), (0, 1))  # (n, n, *S)

    # masks for the edge checks
    outside = np.zeros(S, bool)
    for d, (lo, hi) in enumerate(grid.inner):
        c = pts[..., d]
        outside |= (c < lo) | (c > hi)
    p_out = np.zeros(S, bool)  # outer 20 % of the momentum grid (towards Nyquist), and beyond
    for d in range(dim):  # p_max where it is a strict bound (see ``Grid.strict``)
        p_lim = 0.8 * math.pi / grid.spacing[d]
        if grid.strict is not None and grid.strict[d]:
            p_lim = min(p_lim, grid.p_max[d])
        p_out |= np.abs(kgrid[d]) > p_lim
    side = pts[..., 0]
    w_right = np.where(side > 0, 1.0, np.where(side == 0, 0.5, 0.0))

    # initial state
    env = np.exp(np.sum(-((pts - x0) ** 2) / (4 * sigma**2) + 1j * k0 * (pts - x0), axis=-1))
    env *= np.prod((2 * np.pi * sigma**2) ** -0.25)
    psi = _initial_electronic(vecs, ref, state).transpose(-1, *range(dim)) * env[None]  # (n_diab, *S)
    if psi0 is not None:
        psi = np.array(psi0, dtype=complex).reshape(n, *S)
    psi /= math.sqrt(np.sum(np.abs(psi) ** 2) * dv)

    def apply(mat, f):
        return np.einsum("ab...,b...->a...", mat, f)

    fft_axes = tuple(range(1, dim + 1))
    workers = 2

    n_t = n_samples + 1
    pops = np.zeros((n_t, n))
    deco = np.zeros(n_t)
    norm = np.zeros(n_t)
    xm = np.zeros((n_t, dim))
    pm = np.zeros((n_t, dim))
    en = np.zeros(n_t)
    edge, p_edge = 0.0, 0.0

    def measure(i, psi):
        nonlocal edge, p_edge
        chi = apply(u_dag, psi)  # (n_adiab, *S)
        rho_n = np.abs(chi) ** 2
        dens = rho_n.sum(axis=0)
        nrm = float(dens.sum() * dv)
        norm[i] = nrm
        pops[i] = rho_n.sum(axis=axes_sum) * dv
        if n >= 2:
            safe = np.where(dens > 1e-300, dens, 1.0)
            deco[i] = float(np.sum(np.where(dens > 1e-300, rho_n[0] * rho_n[1] / safe, 0.0)) * dv)
        for d in range(dim):
            xm[i, d] = float(np.sum(dens * pts[..., d]) * dv) / nrm
        phik = sfft.fftn(psi, axes=fft_axes, workers=workers)
        rho_k = np.abs(phik) ** 2
        rho_k_tot = rho_k.sum(axis=0)
        tot_k = float(rho_k_tot.sum())
        for d in range(dim):
            pm[i, d] = float(np.sum(rho_k_tot * kgrid[d])) / tot_k
        e_kin = float(np.sum(rho_k_tot * k2)) / (2 * m) / tot_k
        e_pot = float(np.real(np.sum(psi.conj() * apply(h_mat, psi))) * dv) / nrm
        en[i] = e_kin + e_pot
        edge = max(edge, float(dens[outside].sum() * dv))
        p_edge = max(p_edge, float(rho_k_tot[p_out].sum()) / tot_k * nrm)
        return chi

    chi = measure(0, psi)
    if snapshot is not None:
        snapshot(0, psi)
    for i in range(1, n_t):
        psi = apply(v_half, psi)
        for j in range(n_sub):
            phik = sfft.fftn(psi, axes=fft_axes, workers=workers)
            phik *= t_prop
            psi = sfft.ifftn(phik, axes=fft_axes, workers=workers)
            psi = apply(v_full if j < n_sub - 1 else v_half, psi)
        chi = measure(i, psi)
        if snapshot is not None:
            snapshot(i, psi)

    rho_n = np.abs(chi) ** 2
    trans = np.sum(rho_n * w_right, axis=axes_sum) * dv
    refl = np.sum(rho_n * (1.0 - w_right), axis=axes_sum) * dv
    # momentum on every adiabat at t_final from the projected wavefunction P_n Psi = u_n chi_n (a
    # diabatic vector field, gauge invariant: no eigenvector phase enters): <p_d> and <p_d^2>.
    # <P_n Psi| p |P_n Psi> = <chi_n| p - A_nn |chi_n> is the kinetic momentum on adiabat n
    # (A_nn = i<u_n|grad u_n>); <p^2> adds sum_m!=n |d_mn|^2 |chi_n|^2, which vanishes outside
    # the coupling region -- where these are used.
    pfin = np.full((n, dim), np.nan)
    p2fin = np.full((n, dim), np.nan)
    proj = np.moveaxis(vecs, (-1, -2), (0, 1)) * chi[:, None]  # (n_adiab, n_diab, *S)
    wk = np.sum(np.abs(sfft.fftn(proj, axes=tuple(range(2, dim + 2)), workers=workers)) ** 2,
                axis=1)  # (n_adiab, *S) momentum density of P_n Psi
    for a in range(n):
        tot = float(wk[a].sum())
        if pops[-1, a] > 1e-12:
            for d in range(dim):
                pfin[a, d] = float(np.sum(wk[a] * kgrid[d])) / tot
                p2fin[a, d] = float(np.sum(wk[a] * kgrid[d] ** 2)) / tot
    if warn and edge > EDGE_TOL:
        warnings.warn(f"exact: probability {edge:.2e} left the region the grid was sized for "
                      "(periodic wrap-around possible); increase the box", RuntimeWarning,
                      stacklevel=2)
    if warn and p_edge > EDGE_TOL:
        warnings.warn(f"exact: probability {p_edge:.2e} beyond the resolved momentum or beyond a "
                      "declared momentum-transfer bound (model.max_momentum_transfer); refine the "
                      "grid (smaller dx)", RuntimeWarning, stacklevel=2)
    squeeze = (lambda a: a[:, 0]) if dim == 1 else (lambda a: a)
    return ExactResult(
        model=model.name, time_au=dt * np.arange(n_t), populations=pops, decoherence=deco,
        norm=norm, mean_position_bohr=squeeze(xm), mean_momentum_au=squeeze(pm), energy=en,
        transmission=trans, reflection=refl, final_momentum_per_state=pfin,
        final_momentum_sq_per_state=p2fin,
        grid_shape=S, grid_spacing=grid.spacing,
        grid_bounds=[(float(a[0]), float(a[-1])) for a in grid.axes], dt_internal=h,
        edge_probability=edge, momentum_edge_probability=p_edge,
        wall_time_s=time.perf_counter() - wall,
        meta={"x0": x0.tolist(), "k0": k0.tolist(), "sigma": sigma.tolist(), "state": state,
              "mass": m, "n_substeps": n_sub, "p_max": grid.p_max,
              "p_max_strict": [bool(v) for v in (grid.strict or [False] * dim)]},
    )


# ----------------------------------------------------------------------------- public API


def run_exact(cfg, *, dt_max: float = 1.0, p_factor: float = 2.0, dx: float | None = None,
              warn: bool = True) -> ExactResult:
    """Exact wavepacket dynamics for a model study (``StudyConfig``)."""
    from qhd_aimd.electronic.models import get_model

    if cfg.system.model is None:
        raise ConfigError("exact: the exact quantum reference needs an analytic model "
                          "(system.model); molecules have no grid representation")
    model = get_model(cfg.system.model, **cfg.system.model_params)
    ini = cfg.initial
    dyn = cfg.dynamics
    n_samples = dyn.n_steps
    if n_samples < 1:
        raise ConfigError("exact: dynamics.t_final must be at least one dynamics.dt")
    result = propagate(model, ini.position_bohr, ini.momentum_au, ini.width_bohr, ini.state,
                       dyn.dt, n_samples, dt_max=dt_max, p_factor=p_factor, dx=dx, warn=warn)
    result.meta["name"] = cfg.name or ""
    result.meta["model_params"] = dict(cfg.system.model_params)
    return result


def write_exact(result: ExactResult, out_dir) -> Path:
    """Write ``exact.h5`` and the csv tables into ``out_dir``; returns the h5 path.

    Tables (time in fs, everything else atomic units): ``exact_populations.csv`` (time_fs, p0,
    p1, ...: adiabatic populations), ``exact_coherence.csv`` (time_fs, d_0_1: D_12),
    ``exact_scattering.csv`` (state, transmission, reflection: final probability on each adiabat
    at x > 0 / x < 0, first coordinate) and ``exact_momentum.csv`` (state, population, then per
    coordinate c = x, y, ...: mean_p_c_au = <p_c> and mean_p_c_sq_au = <p_c^2> on that adiabat
    at t_final, gauge invariant, empty states nan).
    """
    import h5py

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = result.populations.shape[1]
    t_fs = result.time_fs
    pop_cols = ",".join(f"p{a}" for a in range(n))
    np.savetxt(out / "exact_populations.csv", np.column_stack([t_fs, result.populations]),
               delimiter=",", header="time_fs," + pop_cols, comments="", fmt="%.10g")
    np.savetxt(out / "exact_coherence.csv", np.column_stack([t_fs, result.decoherence]),
               delimiter=",", header="time_fs,d_0_1", comments="", fmt="%.10g")
    with open(out / "exact_scattering.csv", "w") as fh:
        fh.write("state,transmission,reflection\n")
        for a in range(n):
            fh.write(f"{a},{result.transmission[a]:.10g},{result.reflection[a]:.10g}\n")
    labels = "xyz"[: result.final_momentum_per_state.shape[1]]
    with open(out / "exact_momentum.csv", "w") as fh:
        fh.write(",".join(["state", "population"] + [f"mean_p_{c}_au" for c in labels]
                          + [f"mean_p_{c}_sq_au" for c in labels]) + "\n")
        for a in range(n):
            vals = [result.populations[-1, a], *result.final_momentum_per_state[a],
                    *result.final_momentum_sq_per_state[a]]
            fh.write(f"{a}," + ",".join(f"{v:.10g}" for v in vals) + "\n")
    path = out / "exact.h5"
    with h5py.File(path, "w") as f:
        for key in ("time_au", "populations", "decoherence", "norm", "mean_position_bohr",
                    "mean_momentum_au", "energy", "transmission", "reflection",
                    "final_momentum_per_state", "final_momentum_sq_per_state"):
            f.create_dataset(key, data=np.asarray(getattr(result, key)))
        f.create_dataset("time_fs", data=t_fs)
        f.attrs["model"] = result.model
        f.attrs["method"] = "exact split-operator (Strang), uniform periodic grid, no absorber"
        f.attrs["grid_shape"] = np.asarray(result.grid_shape)
        f.attrs["grid_spacing_bohr"] = np.asarray(result.grid_spacing)
        f.attrs["grid_bounds_bohr"] = np.asarray(result.grid_bounds)
        f.attrs["dt_internal_au"] = result.dt_internal
        f.attrs["edge_probability"] = result.edge_probability
        f.attrs["momentum_edge_probability"] = result.momentum_edge_probability
        f.attrs["wall_time_s"] = result.wall_time_s
        for key, val in result.meta.items():
            f.attrs[f"meta_{key}"] = str(val) if isinstance(val, dict) else val
    return path
