"""Run a study: initial conditions -> lock-step swarm (serial or MPI) -> trajectories.h5.

Every rank owns the trajectories ``local_ids(T, rank, size)``; rank 0 alone writes files.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import numpy as np

from qhd_aimd import __version__
from qhd_aimd.config import StudyConfig, config_to_yaml
from qhd_aimd.dynamics.hopping import HoppingOptions
from qhd_aimd.dynamics.integrator import Propagator
from qhd_aimd.dynamics.swarm_state import Swarm
from qhd_aimd.electronic import make_backend
from qhd_aimd.errors import ConfigError, QhdError
from qhd_aimd.io.trajectories import (FORMAT, RunStore, frame_from_parts, local_frame,
                                      warn_active_switch)
from qhd_aimd.swarm.comm import check_single_world, get_comm, launch_summary, local_ids

_SWARM_FIELDS = ("positions", "momenta", "rho", "f_meanfield", "f_geometric", "f_qc", "extra", "active",
                 "adiabatic_momenta")
_HOP_FIELDS = ("active_state", "hop_from", "hop_to", "hop_frustrated")  # surface hopping only


def initial_conditions(cfg: StudyConfig, out_dir: Path, comm) -> dict:
    """positions (T, D), momenta (T, D), states (T,), symbols (molecules) for the whole swarm."""
    ini = cfg.initial
    if cfg.system.model is not None:
        from qhd_aimd.prepare.wavepacket import sample_wavepacket

        pos, mom = sample_wavepacket(ini.position_bohr, ini.momentum_au, ini.width_bohr,
                                     ini.n_trajectories, ini.seed,
                                     hydrodynamic=ini.sampling == "hydrodynamic")
        return {"positions": pos, "momenta": mom, "states": np.full(len(pos), ini.state), "symbols": None}
    from qhd_aimd.prepare.molecule import load_initial_conditions, prepare_molecule

    path = out_dir / "initial_conditions.h5"
    if comm.rank == 0 and not path.exists():
        prepare_molecule(cfg, out_dir)
    comm.barrier()
    ic = load_initial_conditions(path)
    n = ini.n_trajectories
    if len(ic["positions_bohr"]) < n:
        raise QhdError(f"{path} holds {len(ic['positions_bohr'])} trajectories, config asks for {n}")
    return {"positions": ic["positions_bohr"][:n], "momenta": ic["momenta_au"][:n],
            "states": ic["states"][:n], "symbols": list(ic["symbols"])}


def _pack(swarm: Swarm) -> dict:
    """Per-trajectory checkpoint data of this rank, keyed by trajectory id."""
    keys = _SWARM_FIELDS + (_HOP_FIELDS if swarm.active_state is not None else ())
    return {int(t): {**{k: getattr(swarm, k)[i] for k in keys}, "elec": swarm.elec[i]}
            for i, t in enumerate(swarm.ids)}


def _unpack(state: dict, ids: list[int]) -> Swarm:
    per = state["trajectories"]
    any_t = next(iter(per.values()))  # shapes for a rank without trajectories
    arrays = {k: np.stack([per[t][k] for t in ids]) if ids else
              np.zeros((0,) + np.shape(any_t[k]), np.asarray(any_t[k]).dtype)
              for k in _SWARM_FIELDS + _HOP_FIELDS
              if k in any_t}  # adiabatic_momenta: absent in older checkpoints
    return Swarm(ids=np.asarray(ids, int), step=state["step"], time_au=state["time_au"],
                 elec=[per[t]["elec"] for t in ids], failures=dict(state["failures"]), **arrays)


def run_study(cfg: StudyConfig, out_dir: str | Path, restart: bool = False, progress: bool = True,
              stale: str = "error") -> Path | None:
    """Propagate the study's swarm; returns the path of trajectories.h5 on rank 0 (None elsewhere).

    With ``restart`` the run continues from ``out_dir/run/checkpoint.h5`` when present (and
    starts from scratch when absent; ``RunStore.restart_state`` verifies checkpoints and
    segments); without it an existing checkpoint is an error. A checkpoint written with another
    config or other initial conditions is an error, or with ``stale="archive"`` the old ``run/``
    is moved to ``run.stale-<k>/`` and the run starts again (the workflow's choice).
    """
    el = cfg.system.electronic
    if cfg.system.molecule is not None and el is not None and el.density_fit:
        raise ConfigError("system.electronic.density_fit: true gives energies and overlaps only: "
                          "analytic SA-CASSCF forces with density fitting are not implemented, so "
                          "dynamics needs density_fit: false (prepare accepts it)")
    out = Path(out_dir)
    comm = get_comm()
    check_single_world(comm)  # N independent copies would all write the same files
    if progress and comm.rank == 0:
        print(f"[qhd-aimd] {launch_summary(comm)}", file=sys.stderr, flush=True)
    if comm.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    comm.barrier()
    store = RunStore(out) if comm.rank == 0 else None
    ic = initial_conditions(cfg, out, comm)
    backend = make_backend(cfg, ic["symbols"])
    fcfg = cfg.fields
    prop = Propagator(backend, cfg.method, cfg.dynamics.dt, cfg.dynamics.n_substeps,
                      fcfg.bandwidth_factor, fcfg.bandwidth_bohr, fcfg.ridge, fcfg.cutoff_sigma, comm,
                      fcfg.demodulate, fcfg.quantum_force, fcfg.coherence_gradient,
                      fcfg.quantum_momentum, cfg.dynamics.energy_correction,
                      closed_kinetic_fraction=fcfg.closed_kinetic_fraction, power_limit=fcfg.power_limit,
                      hopping=HoppingOptions.from_config(cfg.hopping), seed=cfg.initial.seed)
    ids = local_ids(cfg.initial.n_trajectories, comm.rank, comm.size)
    cfg_yaml = config_to_yaml(cfg)
    meta = {"config": cfg_yaml, "inputs": _inputs_digest(ic, backend) if store is not None else ""}

    state = _restart_state(store, restart, meta, stale) if store is not None else None
    state = comm.bcast(state, root=0)
    if state is not None and "error" in state:
        raise QhdError(state["error"])
    n_steps, every = cfg.dynamics.n_steps, cfg.output.checkpoint_every
    if state is not None:
        for start, last in state.get("repairs", []):  # damaged/missing older segments
            _repair(start, last, prop, comm, store, ic, ids, n_steps, every, meta)
        swarm = _unpack(state, ids)
        if progress and comm.rank == 0:
            print(f"[qhd-aimd] resuming from the checkpoint at step {swarm.step}",
                  file=sys.stderr, flush=True)
    else:
        swarm = prop.initialize(ids, ic["positions"][ids], ic["momenta"][ids], ic["states"][ids])
        _record(swarm, prop, comm, store)
        _checkpoint(swarm, comm, store, meta)

    clock = _Progress(n_steps, swarm.step, enabled=progress and comm.rank == 0)
    while swarm.step < n_steps:
        swarm = prop.step(swarm)
        _record(swarm, prop, comm, store)
        if swarm.step % every == 0 or swarm.step == n_steps:
            _checkpoint(swarm, comm, store, meta)
        clock.tick(swarm.step)

    failures = {}
    for part in comm.allgather(swarm.failures):
        failures.update(part)
    if store is None:
        return None
    attrs = {"format": FORMAT, "method": cfg.method, "n_states": backend.n_states,
             "n_trajectories": cfg.initial.n_trajectories, "dt_au": cfg.dynamics.dt, "config": cfg_yaml,
             "labels": list(getattr(backend, "labels", [])), "version": __version__,
             "n_ranks": comm.size, **({"symbols": list(ic["symbols"])} if ic["symbols"] else {})}
    return store.finalize(attrs, failures, {"masses_au": np.asarray(backend.masses, float)})


def _record(swarm, prop, comm, store):
    parts = comm.gather(local_frame(swarm, prop.masses), root=0)
    if store is not None:
        frame = frame_from_parts(parts, swarm.step, swarm.time_au)
        store.add(frame)
        warn_active_switch(frame)


def _repair(start, last, prop, comm, store, ic, ids, n_steps, every, meta):
    """Recompute the frames after ``start`` (a checkpoint state; None: t = 0) up to step
    ``last`` and write their segments (not the checkpoint): the same calls as the original
    run, so the segments are bit-identical to the lost ones."""
    if start is None:
        swarm = prop.initialize(ids, ic["positions"][ids], ic["momenta"][ids], ic["states"][ids])
        _record(swarm, prop, comm, store)
        _checkpoint(swarm, comm, store, meta, segment_only=True)
    else:
        swarm = _unpack(start, ids)
    while swarm.step < last:
        swarm = prop.step(swarm)
        _record(swarm, prop, comm, store)
        if swarm.step % every == 0 or swarm.step == n_steps:
            _checkpoint(swarm, comm, store, meta, segment_only=True)


def _checkpoint(swarm, comm, store, meta, segment_only=False):
    parts = comm.gather((_pack(swarm), swarm.failures), root=0)
    if store is None:
        return
    per, failures = {}, {}
    for p, f in parts:
        per.update(p)
        failures.update(f)
    store.checkpoint({"step": swarm.step, "time_au": swarm.time_au, "trajectories": per,
                      "failures": failures, **meta}, segment_only=segment_only)


def _inputs_digest(ic: dict, backend) -> str:
    """sha256 of the initial conditions and masses the run starts from (a checkpoint written
    from other ones, e.g. after the molecule's xyz changed, must not be continued)."""
    h = hashlib.sha256()
    for key in ("positions", "momenta", "states"):
        h.update(np.ascontiguousarray(ic[key], dtype=float).tobytes())
    h.update(np.ascontiguousarray(backend.masses, dtype=float).tobytes())
    h.update(repr(ic.get("symbols")).encode())
    return h.hexdigest()


def _restart_state(store, restart, meta, stale) -> dict | None:
    """Rank 0: the checkpoint state to continue from, None (fresh start) or {"error": why}."""
    try:
        if not restart:
            if store.has_checkpoint():
                return {"error": f"{store.checkpoint_path} exists: pass --restart to continue it, "
                                 f"or use a new --out"}
            return None
        state = store.restart_state()
    except QhdError as exc:
        return {"error": str(exc)}
    if state is None:
        return None
    changed = [what for what, key in (("config", "config"), ("initial conditions", "inputs"))
               if state.get(key) != meta[key]]
    if not changed:
        return state
    if stale == "archive":
        dest = store.archive()
        print(f"[qhd-aimd run] the checkpoint was written with a different "
              f"{' and '.join(changed)}: old run moved to {dest}, starting again",
              file=sys.stderr, flush=True)
        return None
    return {"error": f"the checkpoint was written with a different {' and '.join(changed)}; "
                     f"refusing to restart (use a new --out, or --stale-checkpoint archive)"}


class _Progress:
    """Rank-0 progress line with ETA (stderr), at most every few seconds."""

    def __init__(self, n_steps, start, enabled, every_s=5.0):
        self.n, self.start, self.enabled, self.every = n_steps, start, enabled, every_s
        self.t0 = self.last = time.monotonic()

    def tick(self, step):
        now = time.monotonic()
        if not self.enabled or (now - self.last < self.every and step < self.n):
            return
        self.last = now
        done = step - self.start
        rate = (now - self.t0) / max(done, 1)
        eta = rate * (self.n - step)
        print(f"[qhd-aimd] step {step}/{self.n} ({100 * step / self.n:.0f}%), "
              f"{rate:.3g} s/step, ETA {eta:.0f} s", file=sys.stderr, flush=True)
