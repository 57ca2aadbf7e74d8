"""Loading and grouping for the report: aggregated run directories (``observables.h5`` from
``qhd-aimd aggregate``) and exact-reference directories (``exact_populations.csv``,
``exact_coherence.csv``, ``exact_bond.csv``, ``exact_scattering.csv``, ``exact_momentum.csv`` from
``qhd-aimd exact``) read into :class:`Run` and :class:`Exact`, and grouped into one
:class:`Section` per system.

Runs that share system, initial conditions and time grid form one section (every method
overlaid); an exact directory joins the section whose study ``name`` it carries (``exact.h5``
attribute ``meta_name``), else the section of a run in the same parent directory, else the only
section of the same model.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import yaml

from qhd_aimd.errors import QhdError


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
