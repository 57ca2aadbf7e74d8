"""Report tables of one section, as rows for the page template: per-run summary (trajectories,
failures, final populations, energy drift in millihartree, purity error, active-space switches),
transmission / reflection beside the exact ones, and the final mean momentum (atomic units)
beside the exact one.
"""

from __future__ import annotations

import numpy as np

from qhd_aimd.report.sections import Run, Section


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
