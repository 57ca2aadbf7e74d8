"""Swarm observables from trajectories.h5 (pure functions + CSV/HDF5 writers).

* adiabatic populations p_n(t) = mean over trajectories of rho_nn (theory.md, Sec. III A);
* decoherence D_nm(t) = mean of |rho_nm|^2; mean purity Tr rho^2 (must stay 1); for models the
  purity Tr gamma^2 of the ensemble density gamma_el = mean of rho in the diabatic frame (Eq. 65);
* energies: swarm mean of e_kin, e_pot, e_tot (hartree) and per-trajectory drift;
* forces: swarm mean of the mean-field, geometric and quantum-coupling parts (hartree/bohr, norm);
* 1-D models: transmission/reflection per adiabatic state at the final time (x > 0 / x < 0);
* SA-CASSCF active-space switches (discontinuous potentials): one event per flagged step and
  trajectory (trajectory, step, time_fs, active-orbital overlap, jump of e_tot over the step in
  millihartree) in ``active_switch_events`` / ``active_switches.csv``, and the count per
  trajectory in ``active_switch_count``.

Surface hopping runs (``fssh``, ``fssh_qc``; frames carry ``active_state``): ``populations``
is the fraction of trajectories on each active state, ``electronic_populations`` the swarm mean
of rho_nn (their gap is the internal-consistency indicator of surface hopping), hops and
frustrated hops are counted per frame and listed (``hops.csv``), and transmission/reflection
count trajectories by active state.

Means run over the trajectories still active at each time; standard errors are over the same.
"""

from __future__ import annotations

import csv
from pathlib import Path

import h5py
import numpy as np
import yaml

from qhd_aimd.errors import QhdError
from qhd_aimd.io.trajectories import read_trajectories
from qhd_aimd.units import AUT_FS


def _mean_se(values: np.ndarray, active: np.ndarray):
    """Mean and standard error over axis 1 (trajectories) using only active entries."""
    w = active.astype(float).reshape(active.shape + (1,) * (values.ndim - 2))
    n = np.maximum(active.sum(axis=1), 1).reshape((-1,) + (1,) * (values.ndim - 2))
    mean = (values * w).sum(axis=1) / n
    var = (((values - mean[:, None]) ** 2) * w).sum(axis=1) / np.maximum(n - 1, 1)
    return mean, np.sqrt(var / n)


def observables(traj: dict) -> dict:
    """All aggregated observables as arrays (see module docstring)."""
    rho, act = traj["rho"], traj["active"]
    n = rho.shape[2]
    pops = np.real(np.diagonal(rho, axis1=2, axis2=3))  # (F, T, N)
    p_mean, p_se = _mean_se(pops, act)
    iu = np.triu_indices(n, 1)
    coh = np.abs(rho[:, :, iu[0], iu[1]]) ** 2  # (F, T, P)
    d_mean, d_se = _mean_se(coh, act)
    purity = np.real(np.einsum("ftij,ftji->ft", rho, rho))
    e_kin, e_pot = traj["e_kin_hartree"], traj["e_pot_hartree"]
    e_tot = e_kin + e_pot
    out = {
        "time_au": traj["time_au"], "time_fs": traj["time_au"] * AUT_FS,
        "populations": p_mean, "populations_se": p_se,
        "pairs": np.stack(iu, axis=1), "coherence": d_mean, "coherence_se": d_se,
        "purity_mean": _mean_se(purity[..., None], act)[0][:, 0],
        "purity_max_error": np.abs(purity - 1.0).max(axis=1),
        "e_kin": _mean_se(e_kin[..., None], act)[0][:, 0],
        "e_pot": _mean_se(e_pot[..., None], act)[0][:, 0],
        "e_tot": _mean_se(e_tot[..., None], act)[0][:, 0],
        "e_tot_traj": e_tot,
        "energy_drift_traj": e_tot - e_tot[:1],
        "n_active": act.sum(axis=1),
    }
    for part in ("meanfield", "geometric", "qc"):
        fk = traj[f"force_{part}"]
        out[f"force_{part}_mean"] = _mean_se(fk, act)[0]  # (F, D)
        out[f"force_{part}_norm"] = _mean_se(np.linalg.norm(fk, axis=2)[..., None], act)[0][:, 0]
    if "active_state" in traj:
        out.update(_hopping(traj, n))
    out.update(active_switches(traj))
    cfg = yaml.safe_load(traj["attrs"].get("config", "")) or {}
    model = (cfg.get("system") or {}).get("model")
    if model is not None:
        out.update(_model_extras(traj, cfg, model))
    return out


def active_switches(traj: dict) -> dict:
    """Active-space switch events (K, 5): trajectory, step, time_fs, active_overlap, e_tot jump
    over the step (mEh); and the count per trajectory (T,). Empty for files without flags."""
    n_traj = traj["rho"].shape[1]
    sw = traj.get("active_switch")
    if sw is None:
        return {"active_switch_events": np.zeros((0, 5)), "active_switch_count": np.zeros(n_traj, int)}
    f_idx, t_idx = np.nonzero(sw)
    e_tot = traj["e_kin_hartree"] + traj["e_pot_hartree"]
    jump = np.where(f_idx > 0, e_tot[f_idx, t_idx] - e_tot[np.maximum(f_idx - 1, 0), t_idx], np.nan)
    events = np.stack([t_idx, traj["step"][f_idx], traj["time_au"][f_idx] * AUT_FS,
                       traj["active_overlap"][f_idx, t_idx], 1e3 * jump], axis=1).astype(float)
    return {"active_switch_events": events.reshape(-1, 5), "active_switch_count": sw.sum(axis=0)}


def _model_extras(traj, cfg, model_name) -> dict:
    """Ensemble purity in the diabatic frame and (1-D) transmission/reflection per state."""
    from qhd_aimd.electronic.models import get_model

    model = get_model(model_name, **(cfg["system"].get("model_params") or {}))
    pos, rho, act = traj["positions_bohr"], traj["rho"], traj["active"]
    _, vecs = np.linalg.eigh(model.h(pos))  # (F, T, n, n); any phases: V rho V^dag is invariant
    rho_d = vecs @ rho @ np.swapaxes(vecs.conj(), -1, -2)
    w = act[..., None, None] / np.maximum(act.sum(axis=1), 1)[:, None, None, None]
    gamma = (rho_d * w).sum(axis=1)
    extra = {"ensemble_purity": np.real(np.einsum("fij,fji->f", gamma, gamma))}
    final_p = np.real(np.diagonal(rho[-1], axis1=1, axis2=2))  # (T, N)
    if "active_state" in traj:  # surface hopping: count trajectories by active state
        final_p = (traj["active_state"][-1][:, None] == np.arange(rho.shape[2])).astype(float)
    right = pos[-1, :, 0] > 0
    a = act[-1]
    n_act = max(a.sum(), 1)
    extra["transmission"] = (final_p * (right & a)[:, None]).sum(axis=0) / n_act
    extra["reflection"] = (final_p * (~right & a)[:, None]).sum(axis=0) / n_act
    if pos.shape[2] > 1:
        mom = traj["momenta_au"][-1]
        extra["final_mean_momentum"] = mom[a].mean(axis=0)
    return extra


def _hopping(traj, n_states) -> dict:
    """Active-state fractions (replacing ``populations``), mean rho_nn, hop counts and events."""
    act = traj["active"]
    on = (traj["active_state"][..., None] == np.arange(n_states)).astype(float)  # (F, T, N)
    frac, frac_se = _mean_se(on, act)
    rho_mean, rho_se = _mean_se(np.real(np.diagonal(traj["rho"], axis1=2, axis2=3)), act)
    out = {"electronic_populations": rho_mean, "electronic_populations_se": rho_se,
           "populations": frac, "populations_se": frac_se}
    tried = traj["hop_to"] >= 0
    fr = traj["hop_frustrated"].astype(bool)
    out["hops"] = (tried & ~fr).sum(axis=1)
    out["frustrated_hops"] = (tried & fr).sum(axis=1)
    f_idx, t_idx = np.nonzero(tried)
    out["hop_events"] = np.stack(  # (K, 5): frame, trajectory, from, to, frustrated
        [f_idx, t_idx, traj["hop_from"][f_idx, t_idx], traj["hop_to"][f_idx, t_idx],
         fr[f_idx, t_idx].astype(int)], axis=1) if len(f_idx) else np.zeros((0, 5), int)
    return out


def _write_csv(path: Path, header: list[str], columns: list[np.ndarray]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for row in zip(*columns):
            w.writerow([f"{v:.12g}" for v in row])


def _write_drift_csv(path: Path, e_tot: np.ndarray, active: np.ndarray) -> None:
    """Per-trajectory drift of e_tot (hartree) over the frames where the trajectory is active:
    trajectory, e_tot_initial, drift_final (last active frame minus the first), drift_max_abs."""
    drift = e_tot - e_tot[:1]
    masked = np.where(active, np.abs(drift), 0.0)
    last = np.maximum(active.shape[0] - 1 - np.argmax(active[::-1], axis=0), 0)
    cols = [np.arange(e_tot.shape[1]), e_tot[0], drift[last, np.arange(e_tot.shape[1])], masked.max(axis=0)]
    _write_csv(path, ["trajectory", "e_tot_initial", "drift_final", "drift_max_abs"], cols)


def aggregate(run_dir: str | Path) -> dict:
    """Write populations.csv, coherence.csv, energy.csv, energy_drift.csv (per trajectory),
    forces.csv (+ scattering.csv for 1-D models) and observables.h5 into ``run_dir``; return the
    observables. e_tot = e_kin + e_pot = sum p^2/2M + Tr(rho H_el), the energy every method
    conserves (coupled methods: with ``dynamics.energy_correction: rescale``; docs/physics.md)."""
    run_dir = Path(run_dir)
    if not (run_dir / "trajectories.h5").exists():
        raise QhdError(f"{run_dir / 'trajectories.h5'} not found: run 'qhd-aimd run --out "
                       f"{run_dir}' first (or give the directory that holds trajectories.h5)")
    try:
        traj = read_trajectories(run_dir / "trajectories.h5")
    except (OSError, ValueError, KeyError) as exc:
        raise QhdError(f"{run_dir / 'trajectories.h5'}: not a readable trajectories file ({exc})") from None
    obs = observables(traj)
    t = obs["time_fs"]
    n = obs["populations"].shape[1]
    _write_csv(run_dir / "populations.csv", ["time_fs"] + [f"p{i}" for i in range(n)],
               [t] + [obs["populations"][:, i] for i in range(n)])
    pairs = [f"d_{a}_{b}" for a, b in obs["pairs"]]
    _write_csv(run_dir / "coherence.csv", ["time_fs"] + pairs,
               [t] + [obs["coherence"][:, k] for k in range(len(pairs))])
    _write_csv(run_dir / "energy.csv", ["time_fs", "e_kin", "e_pot", "e_tot"],
               [t, obs["e_kin"], obs["e_pot"], obs["e_tot"]])
    _write_drift_csv(run_dir / "energy_drift.csv", obs["e_tot_traj"], traj["active"])
    _write_csv(run_dir / "forces.csv", ["time_fs", "meanfield", "geometric", "qc"],
               [t, obs["force_meanfield_norm"], obs["force_geometric_norm"], obs["force_qc_norm"]])
    if "electronic_populations" in obs:
        _write_csv(run_dir / "electronic_populations.csv",
                   ["time_fs"] + [f"p{i}" for i in range(n)],
                   [t] + [obs["electronic_populations"][:, i] for i in range(n)])
        ev = obs["hop_events"]
        with open(run_dir / "hops.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["time_fs", "trajectory", "from_state", "to_state", "frustrated"])
            for f_i, tid, a, b, fr in ev:
                w.writerow([f"{t[f_i]:.12g}", int(tid), int(a), int(b), int(fr)])
    if "transmission" in obs:
        _write_csv(run_dir / "scattering.csv", ["state", "transmission", "reflection"],
                   [np.arange(n), obs["transmission"], obs["reflection"]])
    ev = obs["active_switch_events"]
    _write_csv(run_dir / "active_switches.csv",
               ["trajectory", "step", "time_fs", "active_overlap", "e_tot_jump_mEh"],
               [ev[:, k] for k in range(5)])
    with h5py.File(run_dir / "observables.h5", "w") as f:
        for k, v in obs.items():
            f.create_dataset(k, data=np.asarray(v))
        f.attrs["method"] = traj["attrs"]["method"]
        f.attrs["config"] = traj["attrs"]["config"]
        f.create_group("failures").attrs.update({str(k): v for k, v in traj["failures"].items()})
    return obs
