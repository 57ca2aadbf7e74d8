"""Coupled methods on the whole Tully grid with the *exact* fields: method error vs estimator error.

Usage:
    python docs/validation/oracle_fields_grid.py [--n 100] [--dt 4] [--cases simple:10,extended:8,...]
        [--variants qc_exact,gqc_exact,gqc_exact_fq,...] [--width W] [--t-final T] [key=value ...]
        > docs/validation/oracle_fields_grid.txt
    python docs/validation/oracle_fields_grid.py --check     (sanity checks of the oracle, printed)

Same grid, swarm and scoring as ``tully_grid.py`` (Tully 1 k = 10, 15, 20, 30; Tully 2 k = 20, 30,
40, 50; Tully 3 k = 8, 10, 25, 30; Wigner sampling, seed 1, width 20/k bohr, 100 trajectories,
dt 4 a.u., 10 electronic sub-steps, the package's energy correction ``rescale``). In the oracle
variants the swarm estimators are replaced by the fields of the exact split-operator solution
(``qhd_aimd.exact.propagate``, run in lock-step with the swarms: every sample of psi drives one step
of every variant) evaluated at each trajectory's position:

* psi and its first three derivatives at x by spectral (Fourier) interpolation of the grid psi
  (no interpolation error beyond the grid's own resolution);
* n = psi^+ psi, d ln n, rho = psi psi^+ / n and its first two derivatives (diabatic frame,
  analytic in psi, d psi, d^2 psi), d rho and d^2 rho carried to the trajectory's own adiabatic
  basis, v^+ (.) v with v the backend's eigenvectors at x (whatever their phases);
* the metric g_kj of the Table II forces from the trajectory's own rho and the exact d rho (as
  the package does with its estimates), its gradient d g from the exact field
  g(x) = Re Tr(rho d rho d rho): d g = Re Tr(d rho^3) + 2 Re Tr(rho d^2 rho d rho);
* optionally (``*_fq``) the quantum force of Eq. 68, F_q = (1/4 M n) d(n d^2 ln n), from the
  exact n (d^3 n from d^3 psi), added to the quantum-coupling force;
* where n < 1e-6 max_x n all fields are zero (an Ehrenfest step).

The generator X - H and the forces are then the Table II formulas (``methods.extra_generator``,
``methods.extra_forces``); everything else (integrator, co-rotating electronic step, energy
rescaling) is the package's ``Propagator.step``. The closed-state clip of the default estimator
(``decoherence.closed_states``) is a rule on the coupling rates K_nm of the adiabatic-momentum
route and has no counterpart in the Table II form: not applied.

Variants: ``qc`` / ``gqc`` = ehrenfest_qc / geometric_ehrenfest_qc with the package's default
swarm estimators (rows identical to tully_grid.py); ``qc_exact``, ``gqc_exact`` = the same methods
with the exact fields; ``gqc_exact_fq`` = geometric_ehrenfest_qc with the exact fields and the
exact quantum force (classical Wigner swarm otherwise); ``ehrenfest``, ``ehrenfest_oracle``
(Ehrenfest through the oracle's field hook: must equal ``ehrenfest``). ``*_none`` / ``nc``: without
the energy correction (``energy_correction=none``); the quantum-force variant is always run without
it, since in 1-D the rescaling fixes |p| from E_kin + Tr(rho H) and would undo the quantum force's
work (it does so for every extra force: with ``rescale`` a 1-D force acts, to first order in dt,
only by turning a trajectory back). Columns as tully_grid.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tully_grid as tg  # noqa: E402

from qhd_aimd.config import parse_config  # noqa: E402
from qhd_aimd.dynamics import fields as fl  # noqa: E402
from qhd_aimd.dynamics.integrator import Propagator  # noqa: E402
from qhd_aimd.dynamics.methods import extra_forces, extra_generator  # noqa: E402
from qhd_aimd.electronic.models import ModelBackend, get_model  # noqa: E402
from qhd_aimd.exact import make_grid, propagate  # noqa: E402
from qhd_aimd.prepare.wavepacket import sample_wavepacket  # noqa: E402

N_MIN = 1e-6  # fields are zero where n < N_MIN * max n
GAP_EVERY = 10  # steps between samples of the rho gap (``rho_gap``)
MODE_MIN = 1e-13  # Fourier modes of psi below this fraction of the largest are dropped
NONE = {"energy_correction": "none"}
VARIANTS = {  # label: (method, oracle?, quantum force?, Propagator options over the defaults)
    "ehrenfest": ("ehrenfest", False, False, {}),
    "ehrenfest_oracle": ("ehrenfest", True, False, {}),
    "qc": ("ehrenfest_qc", False, False, {}),
    "gqc": ("geometric_ehrenfest_qc", False, False, {}),
    "qc_exact": ("ehrenfest_qc", True, False, {}),
    "gqc_exact": ("geometric_ehrenfest_qc", True, False, {}),
    "qc_exact_none": ("ehrenfest_qc", True, False, NONE),
    "gqc_exact_none": ("geometric_ehrenfest_qc", True, False, NONE),
    # the quantum force does work that the rescaling would undo (in 1-D it fixes |p| from
    # E_kin + Tr(rho H)), so with it the energy is not corrected
    "gqc_exact_fq": ("geometric_ehrenfest_qc", True, True, NONE),
}
LABEL = {"qc": "ehrenfest_qc", "gqc": "geometric_ehrenfest_qc", "qc_exact": "ehrenfest_qc[exact]",
         "gqc_exact": "geo_ehr_qc[exact]", "qc_exact_none": "ehrenfest_qc[exact,nc]",
         "gqc_exact_none": "geo_ehr_qc[exact,nc]", "gqc_exact_fq": "geo_ehr_qc[ex+Fq,nc]",
         "ehrenfest": "ehrenfest", "ehrenfest_oracle": "ehrenfest[oracle]"}


class ExactFields:
    """The exact solution's fields at arbitrary positions, for the current sample of psi.

    axis (G,) bohr, the exact grid (uniform); ``set(psi)`` with psi (N, G) diabatic;
    ``at(x)`` -> dict of (T,) / (T, N, N) arrays (diabatic frame), see ``fields_from_psi``.
    """

    def __init__(self, axis, mass):
        self.axis = np.asarray(axis, float)
        self.mass = float(mass)
        g = len(self.axis)
        dx = self.axis[1] - self.axis[0]
        self.kk = 2 * np.pi * np.fft.fftfreq(g, dx)
        if g % 2 == 0:
            self.kk[g // 2] = 0.0  # Nyquist mode: no derivative (the grid resolves psi well below it)
        self.phi = None
        self.n_max = None

    def set(self, psi):
        phi = np.fft.fft(psi, axis=1)
        amp = np.abs(phi).max(axis=0)
        keep = amp > MODE_MIN * amp.max()  # modes that carry the packet (the sum is then cheaper)
        self.phi, self.k_sel = phi[:, keep], self.kk[keep]
        self.n_max = float(np.max(np.sum(np.abs(psi) ** 2, axis=0)))

    def psi_derivatives(self, x, order=3):
        """psi^(m)(x), m = 0..order, (order + 1, T, N) by Fourier interpolation."""
        e = np.exp(1j * np.outer(np.asarray(x, float) - self.axis[0], self.k_sel)) / len(self.axis)
        return np.stack([(self.phi * (1j * self.k_sel) ** m) @ e.T for m in range(order + 1)]).transpose(0, 2, 1)

    def at(self, x):
        """Fields at x (T,); zero outside the grid (the Fourier sum would wrap around)."""
        x = np.asarray(x, float)
        out = fields_from_psi(self.psi_derivatives(x), self.mass, N_MIN * self.n_max)
        inside = (x >= self.axis[0]) & (x <= self.axis[-1])
        if not inside.all():
            for key in ("dlnn", "drho", "d2rho", "g", "dg", "fq"):
                out[key][~inside] = 0.0
            out["ok"] = out["ok"] & inside
        return out


def fields_from_psi(d, mass, n_floor):
    """Exact fields from psi and its derivatives d (4, T, N) (diabatic components at T points).

    Returns dict: n, dlnn (T,) 1/bohr; rho, drho, d2rho (T, N, N); g, dg (T,) (the field
    g = Re Tr(rho d rho d rho) and its derivative); fq (T,) hartree/bohr (Eq. 68); ok (T,) bool
    (n >= n_floor; elsewhere every derivative field is zero).
    """
    p0, p1, p2, p3 = d
    dot = lambda a, b: np.einsum("ta,ta->t", a.conj(), b)  # noqa: E731
    outer = lambda a, b: np.einsum("ta,tb->tab", a, b.conj())  # noqa: E731
    n = np.real(dot(p0, p0))
    ok = n >= n_floor
    ns = np.where(ok, n, 1.0)
    dn = 2 * np.real(dot(p0, p1))
    d2n = 2 * np.real(dot(p0, p2)) + 2 * np.real(dot(p1, p1))
    d3n = 2 * np.real(dot(p0, p3)) + 6 * np.real(dot(p1, p2))
    a0 = outer(p0, p0)
    a1 = outer(p1, p0) + outer(p0, p1)
    a2 = outer(p2, p0) + 2 * outer(p1, p1) + outer(p0, p2)
    c = lambda v: v[:, None, None]  # noqa: E731
    rho = a0 / c(ns)
    drho = a1 / c(ns) - a0 * c(dn / ns**2)
    d2rho = a2 / c(ns) - 2 * a1 * c(dn / ns**2) - a0 * c(d2n / ns**2) + 2 * a0 * c(dn**2 / ns**3)
    mm = lambda a, b: np.einsum("tab,tbc->tac", a, b)  # noqa: E731
    tr = lambda a: np.real(np.einsum("taa->t", a))  # noqa: E731
    g = tr(mm(rho, mm(drho, drho)))
    dg = tr(mm(drho, mm(drho, drho))) + 2 * tr(mm(rho, mm(d2rho, drho)))
    fq = (d3n - 2 * dn * d2n / ns + dn**3 / ns**2) / (4 * mass * ns)
    out = {"n": n, "dlnn": dn / ns, "rho": rho, "drho": drho, "d2rho": d2rho, "g": g, "dg": dg,
           "fq": fq, "ok": ok}
    for key in ("dlnn", "drho", "d2rho", "g", "dg", "fq"):
        out[key] = np.where(ok.reshape((-1,) + (1,) * (out[key].ndim - 1)), out[key], 0.0)
    return out


def oracle_update(prop, s, source: ExactFields, quantum_force=False):
    """Replacement of ``Propagator._update_fields``: s.extra, s.f_geometric, s.f_qc of the active
    trajectories from the exact fields at their positions (1-D models)."""
    s.fields_fallback = np.zeros(len(s.ids), bool)
    method = prop._method
    if not method.coupled:
        return
    s.extra = np.zeros_like(s.rho)
    s.f_geometric = np.zeros_like(s.positions)
    s.f_qc = np.zeros_like(s.positions)
    local = np.flatnonzero(s.active)
    if not len(local):
        return
    f = source.at(s.positions[local, 0])
    v = np.stack([s.elec[i].handle for i in local])  # (L, N_diab, N_adiab)
    to_adiabatic = lambda m: np.einsum("tan,tab,tbm->tnm", v.conj(), m, v)  # noqa: E731
    drho = to_adiabatic(f["drho"])[:, None]  # (L, D=1, N, N)
    d2rho = to_adiabatic(f["d2rho"])[:, None]
    dl = f["dlnn"][:, None]
    gm = fl.metrics(s.rho[local], drho)
    dg = f["dg"][:, None, None, None]
    inv_mass = 1.0 / prop.masses
    s.extra[local] = extra_generator(method, inv_mass, dl, drho, d2rho)
    s.f_geometric[local], s.f_qc[local] = extra_forces(method, inv_mass, dl, gm, dg)
    if quantum_force:
        s.f_qc[local] += f["fq"][:, None]
    s.fields_fallback[local] = ~f["ok"]


def run_case(name, k, x0, variants, n_traj, dt, width=None, options=None, t_final=None,
             backend=None):
    """Rows (tully_grid format) for one case: the exact one, then one per variant (with its
    final ``Swarm`` under "state"); the exact propagation drives every variant's steps (one
    sample of psi per step). Defaults as tully_grid.py: width 20/k, t_final M (|x0| + 15)/k,
    ``ModelBackend(get_model(name))``."""
    width = 20.0 / k if width is None else width
    if t_final is None:
        t_final = dt * round(tg.MASS * (abs(x0) + 15.0) / k / dt)
    cfg = parse_config({"system": {"model": name},
                        "initial": {"position_bohr": x0, "momentum_au": k, "width_bohr": width,
                                    "n_trajectories": n_traj},
                        "dynamics": {"dt_au": dt, "t_final_au": t_final}})
    n_steps = cfg.dynamics.n_steps
    model = get_model(name)
    backend = ModelBackend(model) if backend is None else backend
    grid = make_grid(model, [x0], [k], [width], 0, n_steps * dt)
    source = ExactFields(grid.axes[0], model.mass)
    pos, mom = sample_wavepacket(x0, k, width, n_traj, 1)
    kw = {**tg.package_options(cfg), **(options or {})}
    runs = []
    for label in variants:
        method, oracle, fq, extra = VARIANTS[label]
        opts = {**kw, **extra}
        if oracle:  # the package's estimators are bypassed; don't accumulate adiabatic momenta
            opts["coherence_gradient"] = "regression"
        prop = Propagator(backend, method, dt, 10, **opts)
        if oracle:
            prop._update_fields = (lambda p, q: lambda s: oracle_update(p, s, source, q))(prop, fq)
        runs.append({"label": label, "prop": prop, "s": None, "e": [], "d12": [], "gap": [],
                     "wall": 0.0})

    def drive(i, psi):
        source.set(psi[:, :])
        for r in runs:
            t0 = time.perf_counter()
            p = r["prop"]
            r["s"] = p.initialize(np.arange(n_traj), pos, mom, np.zeros(n_traj, int)) if i == 0 \
                else p.step(r["s"])
            r["e"].append(np.add(*r["s"].energies(p.masses)))
            r["d12"].append(np.mean(np.abs(r["s"].rho[:, 0, 1]) ** 2))
            r["wall"] += time.perf_counter() - t0
            if i % GAP_EVERY == 0:
                r["gap"].append(rho_gap(r["s"], source))

    ex = propagate(model, x0, k, width, 0, dt, n_steps, grid=grid, snapshot=drive)
    rows = [{"method": "exact", "T": ex.transmission, "R": ex.reflection,
             "d12_fin": ex.decoherence[n_steps], "wall": ex.wall_time_s}]
    for r in runs:
        row = tg.score(LABEL[r["label"]], r["s"], r["e"], r["d12"], ex, n_steps, r["wall"])
        rows.append({**row, "state": r["s"], "gap": np.mean(r["gap"], axis=0)})
    return rows


def rho_gap(s, source: ExactFields):
    """(mean ||rho_i - rho_exact(x_i)||_F, mean |rho_i,11 - rho_exact,11(x_i)|) over the active
    trajectories where n >= N_MIN max n: how far each trajectory's own rho is from the exact
    conditional density operator at its position (both in its adiabatic basis)."""
    act = np.flatnonzero(s.active)
    p0 = source.psi_derivatives(s.positions[act, 0], 0)[0]
    n = np.sum(np.abs(p0) ** 2, axis=1)
    ok = n >= N_MIN * source.n_max
    if not ok.any():
        return np.zeros(2)
    v = np.stack([s.elec[i].handle for i in act[ok]])
    c = np.einsum("tan,ta->tn", v.conj(), p0[ok]) / np.sqrt(n[ok])[:, None]
    rho_ex = np.einsum("tn,tm->tnm", c, c.conj())
    diff = s.rho[act[ok]] - rho_ex
    return np.array([np.sqrt(np.sum(np.abs(diff) ** 2, axis=(1, 2))).mean(),
                     np.abs(np.real(diff[:, 1, 1])).mean()])


def check():
    """Sanity checks of the oracle, printed (tested in tests/test_oracle_fields.py)."""
    model = get_model("tully_simple")
    x0, k, width = -10.0, 10.0, 2.0
    grid = make_grid(model, [x0], [k], [width], 0, 100.0)
    src = ExactFields(grid.axes[0], model.mass)
    ax = grid.axes[0]
    psi = np.zeros((2, len(ax)), complex)
    psi[0] = np.exp(-((ax - x0) ** 2) / (4 * width**2) + 1j * k * ax)
    psi[1] = 0.3 * np.exp(-((ax - x0 - 1) ** 2) / (4 * width**2) + 1j * (k - 3) * ax)
    src.set(psi)
    pos, _ = sample_wavepacket(x0, k, width, 100, 1)
    x = pos[:, 0]
    d = src.psi_derivatives(x)
    print(f"Fourier psi at x vs analytic: {np.abs(d[0, :, 0] - np.exp(-((x - x0) ** 2) / (4 * width**2) + 1j * k * x)).max():.2e}")
    f = src.at(x)
    h = 1e-4
    fp, fm = src.at(x + h), src.at(x - h)
    print(f"d rho vs central difference of rho: {np.abs(f['drho'] - (fp['rho'] - fm['rho']) / (2 * h)).max():.2e}"
          f" (|d rho| max {np.abs(f['drho']).max():.2f});"
          f" d^2 rho vs difference of d rho: {np.abs(f['d2rho'] - (fp['drho'] - fm['drho']) / (2 * h)).max():.2e};"
          f" d g: {np.abs(f['dg'] - (fp['g'] - fm['g']) / (2 * h)).max():.2e};"
          f" d ln n: {np.abs(f['dlnn'] - (np.log(fp['n']) - np.log(fm['n'])) / (2 * h)).max():.2e}")
    herm = max(np.abs(f[key] - np.swapaxes(f[key].conj(), 1, 2)).max() for key in ("drho", "d2rho"))
    print(f"Hermiticity of d rho, d^2 rho: {herm:.2e}; trace of d rho: {np.abs(np.trace(f['drho'], axis1=1, axis2=2)).max():.2e}")
    # one Gaussian: exact d ln n = -(x - x0)/s^2, F_q = (x - x0)/(4 M s^4); kernel estimate
    psi[1] = 0.0
    src.set(psi)
    f = src.at(x)
    h_k = fl.bandwidth(pos)
    w = fl.kernel_matrix(pos, h_k)
    kern = fl.grad_log_density_at(pos, w, h_k, np.arange(len(x)))[:, 0]
    ana = -(x - x0) / width**2
    print(f"Gaussian d ln n: exact-field vs analytic max {np.abs(f['dlnn'] - ana).max():.2e}; "
          f"kernel vs analytic rms {np.sqrt(np.mean((kern - ana) ** 2)):.3f} (rms analytic "
          f"{np.sqrt(np.mean(ana ** 2)):.3f}), correlation {np.corrcoef(kern, ana)[0, 1]:.3f}; "
          f"F_q vs analytic {np.abs(f['fq'] - (x - x0) / (4 * model.mass * width**4)).max():.2e}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--dt", type=float, default=4.0)
    ap.add_argument("--width", type=float, default=None, help="packet width, bohr (default 20/k)")
    ap.add_argument("--t-final", type=float, default=None, help="a.u. (default M (|x0| + 15)/k)")
    ap.add_argument("--variants", default="qc_exact,gqc_exact,gqc_exact_fq")
    ap.add_argument("--cases", default=None, help="e.g. simple:10,dual:20,extended:8")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("options", nargs="*", help="key=value Propagator options (all variants)")
    a = ap.parse_args(argv)
    if a.check:
        return check()
    sel = None
    if a.cases:
        sel = [f"{tg.SHORT.get(m, m).replace('tully_', '')}:{int(float(kv))}"
               for m, kv in (c.split(":") for c in a.cases.split(","))]
    todo = tg.cases(set(sel)) if sel else tg.cases()
    if sel:  # in the order given
        todo.sort(key=lambda c: sel.index(f"{c[0].replace('tully_', '')}:{int(c[1])}"))
    opts = tg.propagator_options(a.options)
    print(f"# {a.n} trajectories, width {'20/k' if a.width is None else a.width} bohr, dt {a.dt:g} a.u., "
          f"seed 1, options {opts or 'defaults'}; [exact] = Table II with the exact fields, "
          "[exact+Fq] = and the quantum force of Eq. 68")
    print("# energies in mHa; dE_* = drift of E_kin + Tr(rho H_el); wall_s excludes the exact propagation;"
          " gap = time mean (every 10 steps) of the swarm mean of ||rho_i - rho_exact(x_i)||_F and of"
          " |p1_i - p1_exact(x_i)|")
    print(tg.HEADER, flush=True)
    for name, k, x0 in todo:
        for r in run_case(name, k, x0, a.variants.split(","), a.n, a.dt, a.width, opts, a.t_final):
            gap = "" if r["method"] == "exact" else f"  gap {r['gap'][0]:.3f} {r['gap'][1]:.3f}"
            print(tg.format_row(name, k, r) + gap, flush=True)


if __name__ == "__main__":
    main()
