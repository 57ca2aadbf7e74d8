"""Exact quantum reference for a diatomic molecule on its own ab initio (SA-CASSCF) surfaces.

N >= 2 adiabatic states u_0 .. u_{N-1} and one nuclear coordinate, the bond length R (rotation neglected,
J = 0; the centre of mass is separated exactly, so the vibrational mass is the reduced mass
mu = M_A M_B / (M_A + M_B) of the isotopic masses the swarm uses, ``backend.masses``).

1. Curves and 2. diabatisation: :mod:`qhd_aimd.diatomic_curves` (the SA-CASSCF scan on an
   adaptive grid, overlap transport of the adiabatic-to-diabatic frame, diabatic splines); its
   public names are importable from here too.
3. Propagation: the diabatic elements (smooth) are interpolated by cubic splines onto a uniform
   periodic FFT grid and propagated with ``qhd_aimd.exact.propagate`` (Strang split operator,
   exact N x N potential exponential by diagonalisation at every grid point). Initial state: vibrational eigenstates chi_v of the lower
   adiabat E_0(R) (Born-Oppenheimer, no diagonal correction; FFT kinetic matrix on the same grid)
   placed on the adiabatic state ``initial.state`` (the adiabatic electronic factor built from the
   gauge-invariant projector, ``exact._initial_electronic``). 0 K: chi_0 only (what the swarm's
   0 K Wigner sampling represents -- the swarm samples the *harmonic* RHF ground state, see
   docs/physics.md); T > 0: Boltzmann mixture p_v ~ exp(-(E_v - E_0)/kT) over v (states with
   p_v > 1e-6), propagated one by one; populations, densities and bond statistics are averaged
   with p_v, and D_01 is the p_v-average of the per-state D_01.
4. Observables: adiabatic populations P_n(t); D_nm = int |psi_n^ad|^2 |psi_m^ad|^2 / n dR for every
   pair n < m; mean and spread of R on each adiabat (``exact_bond.csv``).

Units: bohr, hartree, m_e, atomic time units inside; fs only in the csv time column.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.fft as sfft

from qhd_aimd.diatomic_curves import (DR_BOHR, MAX_ANGLE, Diabatic, DiatomicCurves, SplineModel,
                                      adaptive_grid, bond_positions, coupling_from_diabatic,
                                      diabatize, pair_angles, polar, scan_curves, step_angle)
from qhd_aimd.errors import ConfigError
from qhd_aimd.exact import EDGE_TOL, Grid, _initial_electronic, propagate
from qhd_aimd.units import AUT_FS, HARTREE_EV, KB_HARTREE_PER_K


# ----------------------------------------------------------------------------- propagation


def vibrational_states(model: SplineModel, grid: Grid, n: int):
    """Lowest ``n`` eigenpairs of -1/(2 mu) d^2/dR^2 + E_0(R) on the periodic grid (FFT kinetic
    matrix): energies (n,) hartree, states (n, G) normalised to sum |chi|^2 dR = 1."""
    from scipy.linalg import eigh

    r = grid.axes[0]
    g = len(r)
    e0 = np.linalg.eigvalsh(model.h(r[:, None]))[:, 0]
    k = grid.momenta()[0]
    t = np.real(sfft.ifft(k[:, None] ** 2 / (2 * model.mass) * sfft.fft(np.eye(g), axis=0), axis=0))
    w, v = eigh(0.5 * (t + t.T) + np.diag(e0), subset_by_index=[0, n - 1])
    return w, v.T / math.sqrt(grid.spacing[0])


def make_diatomic_grid(model: SplineModel, e_ceiling: float, t_final: float, r_start: float,
                       p_factor: float = 2.0, pad: float = 1.0, dx: float | None = None,
                       wall_ev: float = 1.0) -> Grid:
    """Uniform periodic grid inside the scanned range: the momentum bound p_max =
    sqrt(2 mu (e_ceiling - min E_0)), spacing pi / (p_factor p_max); the inner edge where the
    lower adiabat first exceeds e_ceiling + ``wall_ev`` walking inwards from ``r_start``
    (classically forbidden by > 1 eV by default), the outer edge r_start + p_max/mu t_final +
    ``pad`` bohr, both clipped to the scan. ``inner`` (region for the edge check) is [inner edge, outer edge - ``pad``]; a
    scan that does not reach the wall raises ``ConfigError``."""
    r = model.dia.r_bohr
    fine = np.linspace(r[0], r[-1], 4001)
    e_lo = np.linalg.eigvalsh(model.h(fine[:, None]))[:, 0]
    p_max = math.sqrt(2 * model.mass * max(e_ceiling - e_lo.min(), 1e-6))
    inside = fine <= r_start
    high = np.nonzero(inside & (e_lo > e_ceiling + wall_ev / HARTREE_EV))[0]
    if not len(high):
        raise ConfigError(f"exact: the scanned range starts at {r[0]:.3f} bohr, where the lower "
                          f"curve is not yet {wall_ev} eV above the initial energy; scan shorter "
                          "bonds")
    lo = fine[high[-1]]
    hi = min(r[-1], r_start + p_max / model.mass * t_final + pad)
    h = dx if dx is not None else math.pi / (p_factor * p_max)
    npts = sfft.next_fast_len(math.ceil((hi - lo) / h))
    npts += npts % 2
    ax = lo + (hi - lo) / npts * np.arange(npts)
    return Grid(axes=[ax], inner=[(lo, hi - pad)], p_max=[p_max], strict=[False])


@dataclass
class DiatomicResult:
    """Exact diatomic dynamics: time_au (T,), populations (T, N), decoherence (T,) D_01,
    coherence (T, P) D_nm for the P = N(N-1)/2 pairs ``pairs`` (P, 2) (n < m, row order),
    bond_mean / bond_std (T, N) bohr per adiabatic state (nan when empty), energy (T,)
    (p_v-averaged <H>), norm (T,), vib_energies / vib_weights (V,), grid info, per-run results."""

    time_au: np.ndarray
    populations: np.ndarray
    decoherence: np.ndarray
    bond_mean: np.ndarray
    bond_std: np.ndarray
    energy: np.ndarray
    norm: np.ndarray
    vib_energies: np.ndarray
    vib_weights: np.ndarray
    runs: list
    meta: dict = field(default_factory=dict)
    coherence: np.ndarray | None = None
    pairs: np.ndarray | None = None

    @property
    def time_fs(self):
        return self.time_au * AUT_FS

    @property
    def edge_probability(self) -> float:
        return max(r.edge_probability for r in self.runs)


def propagate_diatomic(curves: DiatomicCurves, state: int, dt: float, n_samples: int, *,
                       temperature_K: float = 0.0, dt_max: float = 1.0, p_factor: float = 2.0,
                       pad: float = 1.0, dx: float | None = None, max_vib: int = 30,
                       wall_ev: float = 1.0, warn: bool = True) -> DiatomicResult:
    """Exact dynamics of the vibrational ground state (or Boltzmann mixture) of E_0 placed on the
    adiabatic state ``state``; samples every ``dt`` (a.u.) for ``n_samples`` intervals."""
    n_st = curves.n_states
    if not 0 <= state < n_st:
        raise ConfigError(f"initial.state {state}: this diatomic reference has states 0 .. "
                          f"{n_st - 1} (system.electronic.n_states {n_st})")
    dia = diabatize(curves)
    model = SplineModel(dia, curves.reduced_mass)
    t_final = dt * n_samples
    # energy ceiling: the initial energy on `state` plus a margin for the mixture / spread
    r_eq = curves.r_bohr[np.argmin(curves.energies[:, 0])]
    e_state = float(np.interp(r_eq, curves.r_bohr, curves.energies[:, state]))
    e_ceiling = e_state + 0.5 / HARTREE_EV + 10 * KB_HARTREE_PER_K * temperature_K
    grid = make_diatomic_grid(model, e_ceiling, t_final, r_eq, p_factor, pad, dx, wall_ev)
    n_v = 1 if temperature_K <= 0 else max_vib
    e_v, chi = vibrational_states(model, grid, n_v)
    if temperature_K > 0:
        w = np.exp(-(e_v - e_v[0]) / (KB_HARTREE_PER_K * temperature_K))
        keep = w / w.sum() > 1e-6
        if keep[-1] and n_v > 1:
            raise ConfigError(f"exact: initial.temperature_K {temperature_K} populates more than "
                              f"{max_vib} vibrational states")
        e_v, chi, w = e_v[keep], chi[keep], w[keep] / w[keep].sum()
    else:
        w = np.ones(1)
    r = grid.axes[0]
    _, vecs = np.linalg.eigh(model.h(r[:, None]))
    ref = vecs[int(np.argmax(np.abs(chi[0])))][:, state]
    elec = _initial_electronic(vecs, ref, state)  # (G, N)
    bond_acc = [np.zeros((n_samples + 1, n_st)) for _ in range(3)]  # sum p_v w_n, <R>, <R^2>
    iu = np.triu_indices(n_st, 1)
    coh = np.zeros((n_samples + 1, len(iu[0])))
    u_dag = np.swapaxes(vecs, -1, -2)  # (G, n_ad, n_diab)

    runs = []
    for v, (wv, cv) in enumerate(zip(w, chi)):
        def snap(i, psi, wv=wv):
            rho = np.abs(np.einsum("gna,ag->ng", u_dag, psi)) ** 2  # (N, G) densities
            dens = rho.sum(0)
            safe = np.where(dens > 1e-300, dens, 1.0)
            coh[i] += wv * np.sum(np.where(dens > 1e-300, rho[iu[0]] * rho[iu[1]] / safe, 0.0),
                                  axis=1) * grid.dv
            rho = rho * grid.dv
            bond_acc[0][i] += wv * rho.sum(1)
            bond_acc[1][i] += wv * rho @ r
            bond_acc[2][i] += wv * rho @ r**2
        psi0 = (elec * cv[:, None]).T.astype(complex)
        res = propagate(model, [r_eq], [0.0], [1.0], state, dt, n_samples, dt_max=dt_max,
                        grid=grid, warn=warn, snapshot=snap, psi0=psi0)
        runs.append(res)
    pops = sum(wv * res.populations for wv, res in zip(w, runs))
    deco = sum(wv * res.decoherence for wv, res in zip(w, runs))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(bond_acc[0] > 1e-12, bond_acc[1] / bond_acc[0], np.nan)
        var = np.where(bond_acc[0] > 1e-12, bond_acc[2] / bond_acc[0] - mean**2, np.nan)
    return DiatomicResult(
        time_au=runs[0].time_au, populations=pops, decoherence=deco, bond_mean=mean,
        bond_std=np.sqrt(np.maximum(var, 0.0)),
        energy=sum(wv * res.energy for wv, res in zip(w, runs)),
        norm=sum(wv * res.norm for wv, res in zip(w, runs)), vib_energies=e_v, vib_weights=w,
        runs=runs, coherence=coh, pairs=np.stack(iu, axis=1),
        meta={"grid_points": len(r), "grid_spacing_bohr": grid.spacing[0],
              "grid_bounds_bohr": (float(r[0]), float(r[-1])), "p_max_au": grid.p_max[0],
              "dt_internal_au": runs[0].dt_internal, "reduced_mass_me": curves.reduced_mass,
              "r_eq_bohr": float(r_eq), "state": state, "temperature_K": temperature_K,
              "curve_points": len(curves.r_bohr),
              "edge_probability": max(r_.edge_probability for r_ in runs),
              "momentum_edge_probability": max(r_.momentum_edge_probability for r_ in runs)})


# ----------------------------------------------------------------------------- study level


def scan_range(cfg) -> tuple[float, float]:
    """Scanned range (bohr): ``exact_scan.r_min_bohr`` / ``r_max_bohr``, by default 0.5 R_xyz
    and R_xyz + 12 bohr (``make_diatomic_grid`` refuses a scan that misses the inner wall; the
    edge check warns when the packet reaches the outer end). The xyz bond length must lie
    inside (the scan starts there)."""
    from qhd_aimd.prepare.molecule import read_xyz
    _, x = read_xyz(cfg.system.molecule.xyz)
    r0 = float(np.linalg.norm(x[3:] - x[:3]))
    scan = cfg.exact_scan
    lo = scan.r_min_bohr if scan.r_min_bohr is not None else 0.5 * r0
    hi = scan.r_max_bohr if scan.r_max_bohr is not None else r0 + 12.0
    if not lo < r0 < hi:
        raise ConfigError(f"exact_scan: the range [{lo:g}, {hi:g}] bohr must contain the bond "
                          f"length of system.molecule.xyz, {r0:.4f} bohr")
    return lo, hi


def run_exact_diatomic(cfg, out_dir=None, *, dr: float = DR_BOHR, max_angle: float = MAX_ANGLE,
                       r_range: tuple[float, float] | None = None, dt_max: float = 1.0,
                       p_factor: float = 2.0, pad: float = 1.0, dx: float | None = None,
                       curves: DiatomicCurves | None = None, progress=None,
                       wall_ev: float = 1.0,
                       warn: bool = True) -> tuple[DiatomicCurves, DiatomicResult]:
    """Curves (or ``out_dir/exact_curves.h5`` when it exists with the same dr, max_angle and
    range) and exact dynamics for a diatomic molecule study (``StudyConfig``)."""
    from qhd_aimd.electronic import make_backend
    from qhd_aimd.prepare.molecule import read_xyz

    mol = cfg.system.molecule
    if mol is None:
        raise ConfigError("exact: system.molecule is required for a diatomic reference")
    symbols, x = read_xyz(mol.xyz)
    if len(symbols) != 2:
        raise ConfigError(f"exact: system.molecule.xyz has {len(symbols)} atoms; the exact "
                          "molecular reference is for diatomics only")
    if cfg.system.electronic.n_states < 2:
        raise ConfigError("exact: diatomic references need system.electronic.n_states >= 2")
    r_range = r_range or scan_range(cfg)
    cache = Path(out_dir) / "exact_curves.h5" if out_dir is not None else None
    if curves is None and cache is not None and cache.exists():
        c = DiatomicCurves.load(cache)
        if (float(c.meta.get("dr", -1)) == dr and float(c.meta.get("max_angle", -1)) == max_angle
                and np.allclose([c.r_bohr[0], c.r_bohr[-1]], r_range)
                and c.meta.get("method") == _method_tag(cfg)):
            curves = c
    if curves is None:
        backend = make_backend(cfg, symbols)
        curves = scan_curves(backend, x, *r_range, dr=dr, max_angle=max_angle, progress=progress)
        curves.meta["method"] = _method_tag(cfg)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            curves.save(cache)
    dyn = cfg.dynamics
    res = propagate_diatomic(curves, cfg.initial.state, dyn.dt, dyn.n_steps,
                             temperature_K=cfg.initial.temperature_K, dt_max=dt_max,
                             p_factor=p_factor, pad=pad, dx=dx, wall_ev=wall_ev, warn=warn)
    res.meta["name"] = cfg.name or ""
    res.meta["method"] = _method_tag(cfg)
    return curves, res


def _method_tag(cfg) -> str:
    el, mol = cfg.system.electronic, cfg.system.molecule
    tag = (f"SA{el.n_states}-CASSCF({el.active_space[0]},{el.active_space[1]})/{el.basis} "
           f"charge {mol.charge} 2S {mol.spin}")
    if el.active_orbitals is not None:
        tag += f" active MOs {list(el.active_orbitals)}"
    if getattr(el, "symmetry", None):
        tag += f" symmetry {el.symmetry}"
    return tag


def write_exact_diatomic(curves: DiatomicCurves, res: DiatomicResult, out_dir) -> Path:
    """``exact_populations.csv`` (time_fs, p0 .. p{N-1}), ``exact_coherence.csv`` (time_fs,
    d_n_m for every pair n < m), ``exact_bond.csv`` (time_fs, mean_r_n_bohr, std_r_n_bohr for
    each adiabat n), ``exact_curves.csv`` (r_bohr, e{n}_hartree, h{a}{b}_hartree diabatic for
    a <= b, abs_d{n}{m}_per_bohr for n < m at the step to the next point) and ``exact.h5`` in
    ``out_dir``. N = 2: p0, p1; d_0_1; ...; e0, e1, h00, h01, h11, abs_d01."""
    import h5py

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t = res.time_fs
    n = res.populations.shape[1]
    pairs = (res.pairs if res.pairs is not None else np.array([[0, 1]]))
    coh = res.coherence if res.coherence is not None else res.decoherence[:, None]
    np.savetxt(out / "exact_populations.csv", np.column_stack([t, res.populations]),
               delimiter=",", header="time_fs," + ",".join(f"p{a}" for a in range(n)),
               comments="", fmt="%.10g")
    np.savetxt(out / "exact_coherence.csv", np.column_stack([t, coh]), delimiter=",",
               header="time_fs," + ",".join(f"d_{a}_{b}" for a, b in pairs), comments="",
               fmt="%.10g")
    bond = [c for a in range(n) for c in (res.bond_mean[:, a], res.bond_std[:, a])]
    np.savetxt(out / "exact_bond.csv", np.column_stack([t] + bond), delimiter=",",
               header="time_fs," + ",".join(f"mean_r_{a}_bohr,std_r_{a}_bohr" for a in range(n)),
               comments="", fmt="%.10g")
    dia = diabatize(curves)
    iu = np.triu_indices(n)
    iu1 = np.triu_indices(n, 1)
    d = np.vstack([dia.abs_couplings[:, iu1[0], iu1[1]], np.full((1, len(iu1[0])), np.nan)])
    np.savetxt(out / "exact_curves.csv",
               np.column_stack([curves.r_bohr, curves.energies, dia.h[:, iu[0], iu[1]], d]),
               delimiter=",",
               header="r_bohr," + ",".join(f"e{a}_hartree" for a in range(n)) + ","
                      + ",".join(f"h{a}{b}_hartree" for a, b in zip(*iu)) + ","
                      + ",".join(f"abs_d{a}{b}_per_bohr" for a, b in zip(*iu1)),
               comments="", fmt="%.12g")
    path = out / "exact.h5"
    with h5py.File(path, "w") as f:
        for key in ("time_au", "populations", "decoherence", "coherence", "pairs", "bond_mean",
                    "bond_std", "energy", "norm", "vib_energies", "vib_weights"):
            if getattr(res, key) is None:
                continue
            f.create_dataset(key, data=np.asarray(getattr(res, key)))
        f.create_dataset("time_fs", data=t)
        f.attrs["model"] = "diatomic"
        f.attrs["method"] = ("exact split-operator (Strang) on diabatised ab initio curves, J = 0, "
                             "uniform periodic grid, no absorber")
        for key, val in res.meta.items():
            f.attrs[f"meta_{key}"] = str(val) if isinstance(val, (dict, tuple, list)) else val
    return path


__all__ = ["DiatomicCurves", "Diabatic", "SplineModel", "DiatomicResult", "scan_curves",
           "adaptive_grid", "diabatize", "step_angle", "pair_angles", "polar", "coupling_from_diabatic",
           "propagate_diatomic", "run_exact_diatomic", "write_exact_diatomic", "bond_positions",
           "vibrational_states", "make_diatomic_grid", "EDGE_TOL"]
