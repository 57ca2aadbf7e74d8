"""Report parts for molecular runs: internal-coordinate figures (``coordinates.csv`` from
``qhd-aimd coordinates``) and links to the exported trajectories (``extxyz/`` from
``qhd-aimd export``), both found in the run directories when present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import yaml


def read_coordinates(run_dir: Path) -> dict | None:
    """{"time_fs": (F,), "names": [...], "mean": {name: (F,)}, "traj": {name: (F, T)},
    "units": {name: unit}} from ``run_dir/coordinates.csv``; None when absent."""
    import csv

    path = Path(run_dir) / "coordinates.csv"
    if not path.exists():
        return None
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    header, data = rows[0], np.array(rows[1:], float).reshape(-1, len(rows[0]))
    col = {h: i for i, h in enumerate(header)}
    names = [h[:-len("_mean")] for h in header if h.endswith("_mean")]
    out = {"time_fs": data[:, col["time_fs"]], "names": names, "mean": {}, "traj": {}}
    for name in names:
        out["mean"][name] = data[:, col[f"{name}_mean"]]
        ids = [h for h in header if h.startswith(f"{name}_") and h[len(name) + 1:].isdigit()]
        out["traj"][name] = data[:, [col[h] for h in ids]]
    units = Path(run_dir) / "coordinates_units.yaml"
    out["units"] = yaml.safe_load(units.read_text()) if units.exists() else {}
    return out


def fig_coordinates(label: str, runs: list):
    """One panel per coordinate: every trajectory (thin) and the swarm mean (thick) per method.
    ``runs``: [(method, coordinates dict)]."""
    from qhd_aimd.report.figures import _colors, _plt

    plt = _plt()
    names = list(dict.fromkeys(n for _, c in runs for n in c["names"]))
    ncol = min(3, len(names))
    nrow = -(-len(names) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(max(4.0 * ncol, 7.5), 3.4 * nrow), squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        for (method, c), color in zip(runs, _colors(len(runs))):
            if name not in c["names"]:
                continue
            t = c["time_fs"]
            ax.plot(t, c["traj"][name], color=color, lw=0.5, alpha=0.35)
            ax.plot(t, c["mean"][name], color=color, lw=2.0, label=f"{method}: swarm mean")
        unit = next((c["units"].get(name) for _, c in runs if name in c["units"]), "")
        ax.set(xlabel="time (fs)", ylabel=f"{name} ({unit})" if unit else name, title=name)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(names):]:
        ax.set_visible(False)
    fig.suptitle(f"{label}: internal coordinates (thin: trajectories)", wrap=True)
    fig.tight_layout()
    return fig


def exported_files(run_dir: Path, out_dir: Path) -> list[dict]:
    """[{"name", "href"}] of ``run_dir/extxyz/*.extxyz``, hrefs relative to the report dir."""
    files = sorted((Path(run_dir) / "extxyz").glob("*.extxyz"))
    return [{"name": f.name, "href": os.path.relpath(f, out_dir)} for f in files]


def section_extras(sec, out_dir: Path, figdir: Path, save) -> tuple[list[dict], list[dict]]:
    """(extra figures, export links per run) of one report section."""
    figs = []
    coords = [(r.method, c) for r in sec.runs if (c := read_coordinates(r.path)) is not None]
    if coords:
        name = f"{sec.slug}_coordinates.png"
        figs.append({"file": f"figures/{name}", "caption": "Internal coordinates (analysis.coordinates)",
                     "b64": save(fig_coordinates(sec.label, coords), figdir / name)})
    exports = [{"method": r.method, "files": files} for r in sec.runs
               if (files := exported_files(r.path, out_dir))]
    return figs, exports
