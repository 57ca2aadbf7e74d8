"""Report figures of one :class:`~qhd_aimd.report.sections.Section` (matplotlib, Agg): populations,
decoherence and purity, force decomposition, energy conservation, surface hopping, and the bond
length of diatomics; each ``fig_*`` returns a figure (``fig_hopping``: None when it does not
apply), ``_save`` writes it as PNG and returns the base64 text the page embeds.

Units: time in fs, energies in hartree (drifts in millihartree), forces in hartree/bohr, bond
lengths in bohr.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import h5py
import numpy as np

from qhd_aimd.report.sections import Run, Section

_FORCE_PARTS = (("meanfield", "mean-field"), ("geometric", "geometric"), ("qc", "quantum coupling"))


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
