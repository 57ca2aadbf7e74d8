"""One self-contained HTML page for a study: figures, tables, failures, configs, provenance.

Input: aggregated run directories (``observables.h5`` from ``qhd-aimd aggregate``) and, for the
analytic models and diatomic molecules, exact-reference directories (``exact_populations.csv``,
``exact_coherence.csv``, ``exact_bond.csv`` (diatomics: overlaid on the swarm bond length),
``exact_scattering.csv`` from ``qhd-aimd exact``). Runs that share system, initial conditions and
time grid are shown together (one section per system, every method overlaid); an exact
directory joins the section whose study ``name`` it carries (``exact.h5`` attribute
``meta_name``), else the section of a run in the same parent directory, else the only section
of the same model.

Output, in ``out_dir``: ``index.html`` (figures embedded as base64 PNG, so the page is the
whole report) and the same figures as ``figures/<section>_<kind>.png``.

Units: time in fs, energies in hartree (drifts in millihartree), forces in hartree/bohr.
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import importlib.metadata as _md
import io
import json
import platform
import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import yaml

from qhd_aimd import __version__
from qhd_aimd.errors import QhdError

#: packages whose versions the report records
VERSIONED = ("qhd_aimd", "numpy", "scipy", "pyscf", "h5py", "pydantic", "mpi4py", "matplotlib",
             "jinja2", "snakemake")
_FORCE_PARTS = (("meanfield", "mean-field"), ("geometric", "geometric"), ("qc", "quantum coupling"))


# ---------------------------------------------------------------------------------- loading
@dataclass
class Run:
    """One aggregated run directory."""

    path: Path
    method: str
    config: dict
    config_yaml: str
    obs: dict
    failures: dict[int, str]
    run_attrs: dict = field(default_factory=dict)

    @property
    def system(self) -> dict:
        return self.config.get("system", {})

    @property
    def n_trajectories(self) -> int:
        return int(self.config.get("initial", {}).get("n_trajectories", 0))


@dataclass
class Exact:
    """One exact-reference directory (any table may be missing)."""

    path: Path
    populations: dict | None = None  # {"time_fs": (F,), "p": (F, N)}
    coherence: dict | None = None  # {"time_fs": (F,), "d_0_1": (F,)}
    scattering: list[dict] | None = None
    momentum: list[dict] | None = None  # exact_momentum.csv rows (2-D models)
    bond: dict | None = None  # exact_bond.csv columns (diatomic molecules)
    attrs: dict = field(default_factory=dict)


@dataclass
class Section:
    """Runs of one system (same system, initial conditions and dynamics), every method."""

    label: str
    slug: str
    runs: list[Run]
    exact: Exact | None = None


def _read_csv(path: Path) -> tuple[list[str], np.ndarray] | None:
    if not path.exists():
        return None
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return None
    header = [h.strip() for h in rows[0]]
    data = np.array([[float(v) for v in r] for r in rows[1:] if r], float).reshape(-1, len(header))
    return header, data


def load_run(path: str | Path) -> Run:
    """Read ``observables.h5`` (and, if present, the attributes of ``trajectories.h5``)."""
    path = Path(path)
    obs_path = path / "observables.h5"
    if not obs_path.exists():
        raise QhdError(f"{obs_path} not found: run 'qhd-aimd aggregate {path}' first")
    with h5py.File(obs_path, "r") as f:
        obs = {k: f[k][()] for k in f if isinstance(f[k], h5py.Dataset)}
        method = str(f.attrs.get("method", "?"))
        cfg_yaml = str(f.attrs.get("config", ""))
        failures = {int(k): str(v) for k, v in f["failures"].attrs.items()} if "failures" in f else {}
    run_attrs = {}
    traj = path / "trajectories.h5"
    if traj.exists():
        with h5py.File(traj, "r") as f:
            run_attrs = {k: _plain(f.attrs[k]) for k in ("version", "n_ranks", "complete", "format")
                         if k in f.attrs}
    cfg = yaml.safe_load(cfg_yaml) or {}
    return Run(path, method, cfg, cfg_yaml, obs, failures, run_attrs)


def load_exact(path: str | Path) -> Exact:
    path = Path(path)
    ex = Exact(path)
    pops = _read_csv(path / "exact_populations.csv")
    if pops is not None:
        header, data = pops
        cols = [i for i, h in enumerate(header) if re.fullmatch(r"p\d+", h)]
        ex.populations = {"time_fs": data[:, header.index("time_fs")], "p": data[:, cols]}
    coh = _read_csv(path / "exact_coherence.csv")
    if coh is not None:
        header, data = coh
        ex.coherence = {h: data[:, i] for i, h in enumerate(header)}
    sc = _read_csv(path / "exact_scattering.csv")
    if sc is not None:
        header, data = sc
        ex.scattering = [dict(zip(header, row)) for row in data]
    mom = _read_csv(path / "exact_momentum.csv")
    if mom is not None:
        header, data = mom
        ex.momentum = [dict(zip(header, row)) for row in data]
    bond = _read_csv(path / "exact_bond.csv")
    if bond is not None:
        ex.bond = {h: bond[1][:, i] for i, h in enumerate(bond[0])}
    if (path / "exact.h5").exists():
        with h5py.File(path / "exact.h5", "r") as f:
            ex.attrs = {k: _plain(v) for k, v in f.attrs.items()}
    if all(t is None for t in (ex.populations, ex.coherence, ex.scattering, ex.bond)):
        raise QhdError(f"{path}: no exact_*.csv tables found (run 'qhd-aimd exact')")
    return ex


def _plain(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


# ---------------------------------------------------------------------------------- grouping
def _system_label(run: Run) -> str:
    if run.config.get("name"):
        return str(run.config["name"])
    sysc = run.system
    if sysc.get("model"):
        return str(sysc["model"])
    mol = sysc.get("molecule") or {}
    return Path(str(mol.get("xyz", "molecule"))).stem


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "system"


def group_runs(runs: Iterable[Run]) -> list[Section]:
    """Sections of runs sharing system, initial conditions and dynamics (order of first use)."""
    sections: dict[str, Section] = {}
    keys: dict[str, str] = {}
    for run in runs:
        key = json.dumps([run.config.get(k) for k in ("system", "initial", "dynamics")],
                         sort_keys=True, default=str)
        if key not in keys:
            label = _system_label(run)
            taken = {s.label for s in sections.values()}
            base, i = label, 2
            while label in taken:
                label, i = f"{base} ({i})", i + 1
            keys[key] = label
            slugs = {s.slug for s in sections.values()}
            slug, j = _slug(label), 2
            while slug in slugs:
                slug, j = f"{_slug(label)}_{j}", j + 1
            sections[label] = Section(label, slug, [])
        sections[keys[key]].runs.append(run)
    return list(sections.values())


def attach_exact(sections: list[Section], exacts: Iterable[Exact]) -> list[Exact]:
    """Give each exact reference to its section; return the ones that matched none. A named
    reference goes to every section of that name (runs of one system split into sections by
    their dynamics or initial settings, e.g. a coupled method at a longer time step or with fewer
    trajectories than Ehrenfest)."""
    unmatched = []
    for ex in exacts:
        name = str(ex.attrs.get("meta_name", "") or "")
        named = [s for s in sections if name and s.runs[0].config.get("name") == name
                 and s.exact is None]
        if named:
            for s in named:
                s.exact = ex
            continue
        target = None
        if target is None:
            parent = ex.path.resolve().parent
            target = next((s for s in sections
                           if any(r.path.resolve().parent == parent for r in s.runs)), None)
        if target is None:
            model = ex.attrs.get("model")
            cands = [s for s in sections if s.runs[0].system.get("model")
                     and (model is None or s.runs[0].system.get("model") == model)]
            target = cands[0] if len(cands) == 1 else None
        if target is None or target.exact is not None:
            unmatched.append(ex)
        else:
            target.exact = ex
    return unmatched


# ---------------------------------------------------------------------------------- figures
def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _colors(n):
    plt = _plt()
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return [cycle[i % len(cycle)] for i in range(n)]


_STYLES = ("-", "--", ":", "-.")


def fig_populations(sec: Section):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for run, c in zip(sec.runs, _colors(len(sec.runs))):
        t, p, se = run.obs["time_fs"], run.obs["populations"], run.obs["populations_se"]
        for n in range(p.shape[1]):
            ax.plot(t, p[:, n], _STYLES[n % 4], color=c, lw=1.6, label=f"{run.method}: state {n}")
            ax.fill_between(t, p[:, n] - se[:, n], p[:, n] + se[:, n], color=c, alpha=0.2, lw=0)
    if sec.exact is not None and sec.exact.populations is not None:
        ep = sec.exact.populations
        for n in range(ep["p"].shape[1]):
            ax.plot(ep["time_fs"], ep["p"][:, n], _STYLES[n % 4], color="k", lw=1.0,
                    label=f"exact: state {n}")
    ax.set(xlabel="time (fs)", ylabel="adiabatic population", ylim=(-0.03, 1.03))
    ax.set_title(f"{sec.label}: populations (bands: ±1 standard error)", wrap=True)
    ax.legend(fontsize=7, ncol=2, loc="best")
    fig.tight_layout()
    return fig


def fig_decoherence(sec: Section):
    plt = _plt()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4))
    colors = _colors(len(sec.runs))
    for run, c in zip(sec.runs, colors):
        t, d, se, pairs = (run.obs[k] for k in ("time_fs", "coherence", "coherence_se", "pairs"))
        for k, (a, b) in enumerate(pairs):
            ax.plot(t, d[:, k], _STYLES[k % 4], color=c, label=f"{run.method}: D{a}{b}")
            ax.fill_between(t, d[:, k] - se[:, k], d[:, k] + se[:, k], color=c, alpha=0.2, lw=0)
        bx.plot(t, run.obs["purity_mean"], color=c, label=f"{run.method}: mean Tr ρ²")
        if "ensemble_purity" in run.obs:
            bx.plot(t, run.obs["ensemble_purity"], "--", color=c, label=f"{run.method}: Tr γ²")
    if sec.exact is not None and sec.exact.coherence is not None:
        ec = sec.exact.coherence
        for key in [k for k in ec if k.startswith("d_")]:
            a, b = key.split("_")[1:3]
            ax.plot(ec["time_fs"], ec[key], color="k", lw=1.0, label=f"exact: D{a}{b}")
    ax.set(xlabel="time (fs)", ylabel="D_nm = ⟨|ρ_nm|²⟩", title="decoherence indicator")
    bx.set(xlabel="time (fs)", ylabel="purity", title="purity: local (=1) and ensemble")
    _purity_axis(bx, sec)
    ax.legend(fontsize=7)
    bx.legend(fontsize=7)
    fig.suptitle(sec.label, wrap=True)
    fig.tight_layout()
    return fig


def _purity_axis(ax, sec: Section) -> None:
    """Plain tick labels (no '1e-12 + 1' offset when Tr rho^2 = 1 to round-off) and a range that
    shows the allowed interval [1/N, 1] rather than the round-off."""
    from matplotlib.ticker import ScalarFormatter

    ax.yaxis.set_major_formatter(ScalarFormatter(useOffset=False))
    lows = [np.nanmin(r.obs[k]) for r in sec.runs for k in ("purity_mean", "ensemble_purity")
            if k in r.obs and np.size(r.obs[k])]
    n_states = max(r.obs["populations"].shape[1] for r in sec.runs)
    ax.set_ylim(min([1.0 / n_states] + lows) - 0.03, 1.03)


def fig_forces(sec: Section):
    plt = _plt()
    n = len(sec.runs)
    fig, axes = plt.subplots(1, n, figsize=(max(4.0 * n, 7.5), 3.8), squeeze=False, sharey=True)
    for run, ax in zip(sec.runs, axes[0]):
        t = run.obs["time_fs"]
        for (part, name), c in zip(_FORCE_PARTS, _colors(3)):
            ax.plot(t, run.obs[f"force_{part}_norm"], color=c, label=name)
        ax.set(xlabel="time (fs)", title=run.method)
        ax.set_yscale("symlog", linthresh=1e-6)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("swarm mean |F| (hartree/bohr)")
    fig.suptitle(f"{sec.label}: force decomposition", wrap=True)
    fig.tight_layout()
    return fig


def fig_energy(sec: Section):
    plt = _plt()
    n = len(sec.runs)
    fig, axes = plt.subplots(1, n, figsize=(max(4.0 * n, 7.5), 3.8), squeeze=False)
    for run, ax in zip(sec.runs, axes[0]):
        t, drift = run.obs["time_fs"], 1e3 * run.obs["energy_drift_traj"]
        ax.plot(t, drift, color="0.6", lw=0.5)
        ax.plot(t, 1e3 * (run.obs["e_tot"] - run.obs["e_tot"][0]), color="C3", lw=1.8,
                label="swarm mean")
        for tid in run.failures:
            if tid < drift.shape[1]:
                ax.plot(t, drift[:, tid], color="C1", lw=1.0)
        ax.set(xlabel="time (fs)", title=run.method)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("E_tot(t) − E_tot(0)  (millihartree)")
    fig.suptitle(f"{sec.label}: energy conservation per trajectory (grey; failed: orange)",
                 wrap=True)
    fig.tight_layout()
    return fig


def swarm_bond_length(run: Run) -> dict | None:
    """Diatomic runs: time_fs (F,), swarm mean and standard deviation of the bond length (F,)
    bohr over active trajectories, from ``trajectories.h5``; None for other systems."""
    traj = run.path / "trajectories.h5"
    if not traj.exists() or not run.system.get("molecule"):
        return None
    with h5py.File(traj, "r") as f:
        if "positions_bohr" not in f or f["positions_bohr"].shape[-1] != 6:
            return None
        pos, act = f["positions_bohr"][()], f["active"][()].astype(bool)
    r = np.linalg.norm(pos[..., 3:] - pos[..., :3], axis=-1)  # (F, T)
    n = np.maximum(act.sum(axis=1), 1)
    mean = (r * act).sum(axis=1) / n
    std = np.sqrt(np.maximum((r**2 * act).sum(axis=1) / n - mean**2, 0.0))
    return {"time_fs": run.obs["time_fs"][: len(mean)], "mean": mean, "std": std}


def fig_bond(sec: Section):
    """Diatomics: swarm mean bond length (band: spread) and the exact <R> per adiabat."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for run, c in zip(sec.runs, _colors(len(sec.runs))):
        b = swarm_bond_length(run)
        if b is None:
            continue
        ax.plot(b["time_fs"], b["mean"], color=c, lw=1.6, label=f"{run.method}: mean R")
        ax.fill_between(b["time_fs"], b["mean"] - b["std"], b["mean"] + b["std"], color=c,
                        alpha=0.15, lw=0)
    eb = sec.exact.bond if sec.exact is not None else None
    if eb is not None:
        states = [n for n in range(len(eb)) if f"mean_r_{n}_bohr" in eb]
        for n in states:
            ax.plot(eb["time_fs"], eb[f"mean_r_{n}_bohr"], _STYLES[n % 4], color="k", lw=1.0,
                    label=f"exact: <R> on state {n}")
        pops = sec.exact.populations
        if (pops is not None and len(pops["time_fs"]) == len(eb["time_fs"])
                and pops["p"].shape[1] == len(states)):
            p = pops["p"]
            tot = np.nansum(p * np.column_stack([eb[f"mean_r_{n}_bohr"] for n in states]), axis=1)
            ax.plot(eb["time_fs"], tot, color="0.4", lw=1.0, label="exact: <R>")
    ax.set(xlabel="time (fs)", ylabel="bond length (bohr)",
           title=f"{sec.label}: bond length (bands: swarm spread)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def fig_hopping(sec: Section):
    """Surface-hopping runs: fraction on each active state beside the mean rho_nn (their gap is
    the internal-consistency indicator), and accepted / frustrated hops per frame; None if the
    section has no surface-hopping run."""
    runs = [r for r in sec.runs if "electronic_populations" in r.obs]
    if not runs:
        return None
    plt = _plt()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    for run, c in zip(runs, _colors(len(runs))):
        t, frac, rho = run.obs["time_fs"], run.obs["populations"], run.obs["electronic_populations"]
        for n in range(frac.shape[1]):
            ax.plot(t, frac[:, n], _STYLES[n % 4], color=c, lw=1.6, label=f"{run.method}: on state {n}")
            ax.plot(t, rho[:, n], _STYLES[n % 4], color=c, lw=0.8, alpha=0.6,
                    label=f"{run.method}: mean ρ_{n}{n}")
        bx.plot(t, np.cumsum(run.obs["hops"]), color=c, label=f"{run.method}: hops")
        bx.plot(t, np.cumsum(run.obs["frustrated_hops"]), "--", color=c,
                label=f"{run.method}: frustrated")
    ax.set(xlabel="time (fs)", ylabel="population", ylim=(-0.03, 1.03),
           title="active-state fraction (thick) vs mean ρ_nn (thin)")
    bx.set(xlabel="time (fs)", ylabel="cumulative count", title="hops and frustrated hops")
    ax.legend(fontsize=7, ncol=2)
    bx.legend(fontsize=7)
    fig.suptitle(sec.label)
    fig.tight_layout()
    return fig


FIGURES = (("populations", fig_populations, "Adiabatic populations"),
           ("decoherence", fig_decoherence, "Decoherence and purity"),
           ("forces", fig_forces, "Force decomposition"),
           ("energy", fig_energy, "Energy conservation"),
           ("hopping", fig_hopping, "Surface hopping: active-state fractions vs mean ρ_nn; hops "
            "and frustrated hops over time"))


def _save(fig, path: Path) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    _plt().close(fig)
    data = buf.getvalue()
    path.write_bytes(data)
    return base64.b64encode(data).decode("ascii")


# ---------------------------------------------------------------------------------- tables
def _summary(run: Run) -> dict:
    o = run.obs
    drift = np.abs(o["energy_drift_traj"])
    n_states = o["populations"].shape[1]
    return {
        "method": run.method, "path": str(run.path),
        "n_traj": run.n_trajectories or int(o["energy_drift_traj"].shape[1]),
        "n_active": int(o["n_active"][-1]), "n_failed": len(run.failures),
        "n_frames": len(o["time_fs"]), "t_final_fs": float(o["time_fs"][-1]),
        "final_populations": " / ".join(
            f"{o['populations'][-1, n]:.3f} ± {o['populations_se'][-1, n]:.3f}"
            for n in range(n_states)),
        "max_drift_mEh": float(1e3 * drift.max()) if drift.size else 0.0,
        "mean_drift_mEh": float(1e3 * (o["e_tot"][-1] - o["e_tot"][0])),
        "purity_error": float(np.max(o["purity_max_error"])),
        "ranks": run.run_attrs.get("n_ranks", "?"), "version": run.run_attrs.get("version", "?"),
        **_switch_summary(run),
    }


def _switch_summary(run: Run) -> dict:
    """Active-space switches (discontinuous SA-CASSCF potentials): total, trajectories hit, and
    per trajectory the count and times (fs) with the e_tot jump (mEh)."""
    ev = np.asarray(run.obs.get("active_switch_events", np.zeros((0, 5)))).reshape(-1, 5)
    per = {}
    for tid, _, t_fs, _, jump in ev:
        per.setdefault(int(tid), []).append(f"{t_fs:.2f} fs ({jump:+.1f} mEh)")
    return {"n_switches": len(ev), "n_switch_traj": len(per),
            "switches": [{"id": k, "count": len(v), "times": ", ".join(v)}
                         for k, v in sorted(per.items())]}


def _scattering(sec: Section) -> list[dict]:
    rows = []
    exact = {int(r["state"]): r for r in (sec.exact.scattering or [])} if sec.exact else {}
    for run in sec.runs:
        if "transmission" not in run.obs:
            continue
        for n, (tr, rf) in enumerate(zip(run.obs["transmission"], run.obs["reflection"])):
            ex = exact.get(n)
            rows.append({"method": run.method, "state": n, "transmission": float(tr),
                         "reflection": float(rf),
                         "exact_transmission": None if ex is None else float(ex["transmission"]),
                         "exact_reflection": None if ex is None else float(ex["reflection"])})
    if not rows and exact:
        rows = [{"method": "—", "state": n, "transmission": None, "reflection": None,
                 "exact_transmission": float(r["transmission"]),
                 "exact_reflection": float(r["reflection"])} for n, r in sorted(exact.items())]
    return rows


def _momentum(sec: Section) -> dict | None:
    """Final swarm-mean momentum of each run and the exact one (population-weighted over the
    adiabats of ``exact_momentum.csv``, per state too): the Berry-force deflection of 2-D models."""
    runs = [r for r in sec.runs if "final_mean_momentum" in r.obs]
    exact = sec.exact.momentum if sec.exact is not None else None
    if not runs and not exact:
        return None
    if exact:
        labels = [k[len("mean_p_"):-len("_au")] for k in exact[0]
                  if k.startswith("mean_p_") and not k.endswith("_sq_au")]
    else:
        labels = list("xyz")[:len(runs[0].obs["final_mean_momentum"])]
    rows = [{"label": r.method, "p": [float(v) for v in r.obs["final_mean_momentum"]]} for r in runs]
    if exact:
        total = np.zeros(len(labels))
        for e in exact:
            p_n = np.array([e[f"mean_p_{c}_au"] for c in labels])
            if e["population"] > 0 and np.all(np.isfinite(p_n)):
                total += e["population"] * p_n
            rows.append({"label": f"exact, state {int(e['state'])} (population {e['population']:.3g})",
                         "p": [float(v) for v in p_n]})
        rows.insert(len(runs), {"label": "exact", "p": [float(v) for v in total]})
    return {"labels": labels, "rows": rows}


# ---------------------------------------------------------------------------------- provenance
def package_versions() -> dict[str, str]:
    out = {}
    for name in VERSIONED:
        try:
            out[name] = _md.version(name)
        except _md.PackageNotFoundError:
            out[name] = "not installed"
    out["qhd_aimd (module)"] = __version__
    out["python"] = sys.version.split()[0]
    out["platform"] = platform.platform()
    return out


def git_revision(where: str | Path | None = None) -> str:
    """``<commit>[-dirty]`` of the checkout holding ``where`` (default: this package), or a note."""
    where = Path(where) if where is not None else Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], check=False,
                             capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return "not a git checkout"
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain",
                                "--untracked-files=no"], check=False, capture_output=True,
                               text=True, timeout=10)
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "git not available"


# ---------------------------------------------------------------------------------- page
def write_report(run_dirs, out_dir, exact_dirs=(), title: str = "qhd_aimd study",
                 study_config: str | Path | None = None) -> Path:
    """Write ``out_dir/index.html`` (+ ``out_dir/figures/*.png``); return the page's path.

    Parameters
    ----------
    run_dirs : iterable of paths
        Aggregated run directories (each with ``observables.h5``).
    out_dir : path
        Report directory (created).
    exact_dirs : iterable of paths
        Exact-reference directories (``exact_*.csv``), matched to sections (module docstring).
    title : str
        Page title.
    study_config : path, optional
        The workflow-level study config, shown verbatim.
    """
    from jinja2 import Environment, PackageLoader, select_autoescape

    runs = [load_run(d) for d in run_dirs]
    if not runs:
        raise QhdError("report: no run directories given")
    sections = group_runs(runs)
    unmatched = attach_exact(sections, [load_exact(d) for d in exact_dirs])
    out = Path(out_dir)
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)

    page_sections = []
    for sec in sections:
        figs = []
        extra = ()
        if (sec.exact is not None and sec.exact.bond is not None) or any(
                swarm_bond_length(r) is not None for r in sec.runs):
            extra = (("bond", fig_bond, "Bond length (diatomics)"),)
        for kind, make, caption in FIGURES + extra:
            name = f"{sec.slug}_{kind}.png"
            fig = make(sec)
            if fig is None:  # figure does not apply to this section's runs
                continue
            figs.append({"file": f"figures/{name}", "caption": caption,
                         "b64": _save(fig, figdir / name)})
        from qhd_aimd.report.extras import section_extras

        more, exports = section_extras(sec, out, figdir, _save)
        figs += more
        page_sections.append({
            "label": sec.label, "slug": sec.slug, "figures": figs, "exports": exports,
            "summaries": [_summary(r) for r in sec.runs], "scattering": _scattering(sec),
            "momentum": _momentum(sec),
            "exact": None if sec.exact is None else {"path": str(sec.exact.path),
                                                     "attrs": sec.exact.attrs},
            "failures": [{"method": r.method, "path": str(r.path), "id": tid, "reason": why}
                         for r in sec.runs for tid, why in sorted(r.failures.items())],
            "configs": [{"method": r.method, "path": str(r.path), "yaml": r.config_yaml}
                        for r in sec.runs],
        })
    study_yaml = None
    if study_config is not None:
        study_yaml = Path(study_config).read_text()
    env = Environment(loader=PackageLoader("qhd_aimd.report", "templates"),
                      autoescape=select_autoescape(["html"]))
    html = env.get_template("report.html").render(
        title=title, sections=page_sections, versions=package_versions(),
        git=git_revision(), cwd_git=git_revision(Path.cwd()), command=" ".join(sys.argv),
        created=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        unmatched=[str(e.path) for e in unmatched], study_yaml=study_yaml,
        n_failures=sum(len(r.failures) for r in runs))
    path = out / "index.html"
    tmp = path.with_name("index.html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path
