"""HDF5 trajectory files, checkpoints and restart.

Layout of ``trajectories.h5`` (format ``qhd_aimd.trajectories/1``); F frames (time steps written,
t = 0 included), T trajectories, D degrees of freedom, N electronic states:

=====================  ==================  ===============================================
dataset                shape               meaning (units)
=====================  ==================  ===============================================
step                   (F,)                step index
time_au                (F,)                time, a.u. of time
positions_bohr         (F, T, D)           nuclear positions
momenta_au             (F, T, D)           nuclear momenta
rho                    (F, T, N, N)        rho_el in each trajectory's adiabatic basis (complex)
energies_hartree       (F, T, N)           adiabatic energies
e_kin_hartree          (F, T)              sum p^2 / 2M
e_pot_hartree          (F, T)              Tr(rho H_el) (surface hopping: E of the active state)
force_meanfield        (F, T, D)           -Tr(rho dH/dx), hartree/bohr (surface hopping: -dE_a/dx)
force_geometric        (F, T, D)           geometric force, hartree/bohr (surface hopping: Berry
                                           force of the active state, ``hopping.berry_force``)
force_qc               (F, T, D)           quantum-coupling force, hartree/bohr
active                 (F, T)              False once a trajectory has failed
active_switch          (F, T)              True at a step whose SA-CASSCF active space switched
                                           character (discontinuous potential; PySCF backend)
active_overlap         (F, T)              smallest singular value of the active-orbital
                                           overlap with the previous step (-1: not measured:
                                           t = 0, stopped trajectories, model backends)
fields_fallback        (F, T)              coupled methods: the swarm fields of that frame could
                                           not be estimated for the trajectory (too few
                                           neighbours, non-finite estimate) and were set to zero
                                           (an Ehrenfest step); docs/physics.md
active_state           (F, T)              surface hopping only: the state the nuclei move on
hop_from, hop_to       (F, T)              surface hopping only: hop attempted in the step
                                           ending at this frame (-1: none)
hop_frustrated         (F, T)              surface hopping only: that hop was frustrated
masses_au              (D,)                nuclear mass per degree of freedom (m_e)
=====================  ==================  ===============================================

Root attributes: ``format``, ``method``, ``n_states``, ``n_trajectories``, ``dt_au``,
``config`` (the study YAML), ``labels``, ``version``, ``complete``; group ``failures`` has one
attribute per failed trajectory id with the reason.

While running, frames are kept in memory and written every ``checkpoint_every`` steps as an
immutable segment file ``DIR/run/segment_<last step>.h5`` (written to a temporary name, then
renamed, with a sha256 digest of its content), followed by ``DIR/run/checkpoint.h5`` (the full
swarm state in HDF5, ``qhd_aimd.io.checkpoint``: positions, momenta, rho, fields, electronic
data for warm starts and overlaps; no pickle). The checkpoint it replaces is kept as
``checkpoint.prev.h5``. A run killed at any moment leaves only complete files.

Every segment also stores the swarm state at its last step (group ``swarm_state``, same
encoding as the checkpoint), so each segment is a restart point.

Restart (``RunStore.restart_state``): every checkpoint and every segment is verified (digest);
a damaged checkpoint is moved to ``run/damaged/`` and the previous one (or the last segment's
state) is used. Damaged or missing segments are found at restart, not at the final merge: a gap
followed by good segments is recomputed from the state of the segment before it (t = 0 for the
first) and only its segments are rewritten — the later good segments are kept; a gap at the end
means the run continues from the last good segment's state. Recomputed frames are bitwise
identical (the dynamics is deterministic). Damaged files are moved to ``run/damaged/``, never
deleted. At the end the segments are merged into ``trajectories.h5``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np

from qhd_aimd.io import checkpoint as ckpt

FORMAT = "qhd_aimd.trajectories/1"
FRAME_KEYS = ("step", "time_au", "positions_bohr", "momenta_au", "rho", "energies_hartree",
              "e_kin_hartree", "e_pot_hartree", "force_meanfield", "force_geometric", "force_qc",
              "active", "active_switch", "active_overlap", "fields_fallback")
#: frame datasets written only by surface-hopping runs
HOP_KEYS = ("active_state", "hop_from", "hop_to", "hop_frustrated")


def frame_from_parts(parts: list[dict], step: int, time_au: float) -> dict:
    """Merge per-rank frame dicts {id: {...}} into one frame ordered by trajectory id."""
    by_id = {}
    for p in parts:
        by_id.update(p)
    ids = sorted(by_id)
    frame = {"step": np.int64(step), "time_au": np.float64(time_au)}
    for key in FRAME_KEYS[2:] + tuple(k for k in HOP_KEYS if ids and k in by_id[ids[0]]):
        frame[key] = np.stack([by_id[i][key] for i in ids])
    return frame


def local_frame(swarm, masses) -> dict:
    """{trajectory id: per-trajectory frame data} for the trajectories of this rank."""
    e_kin, e_pot = swarm.energies(masses)
    out = {}
    for i, tid in enumerate(swarm.ids):
        out[int(tid)] = {
            "positions_bohr": swarm.positions[i], "momenta_au": swarm.momenta[i], "rho": swarm.rho[i],
            "energies_hartree": swarm.elec[i].energies, "e_kin_hartree": e_kin[i],
            "e_pot_hartree": e_pot[i], "force_meanfield": swarm.f_meanfield[i],
            "force_geometric": swarm.f_geometric[i], "force_qc": swarm.f_qc[i],
            "active": bool(swarm.active[i]), **_switch_info(swarm.elec[i], swarm.active[i]),
            "fields_fallback": bool(swarm.fields_fallback[i]) if swarm.fields_fallback is not None
            else False,
        }
        if getattr(swarm, "active_state", None) is not None:
            out[int(tid)].update({k: getattr(swarm, k)[i] for k in HOP_KEYS})
    return out


def warn_active_switch(frame: dict) -> None:
    """Warning (stderr: the run log) for every trajectory whose active space switched at this
    frame's step."""
    hits = np.flatnonzero(frame["active_switch"])
    if len(hits):
        from qhd_aimd.units import AUT_FS
        what = ", ".join(f"{int(t)} (overlap {frame['active_overlap'][t]:.4f})" for t in hits)
        _say(f"warning: step {int(frame['step'])} (t = {float(frame['time_au']) * AUT_FS:.3f} fs): "
             f"SA-CASSCF active-space switch in trajectory {what}: the potential is "
             f"discontinuous there (flagged in trajectories.h5 'active_switch'; "
             f"electronic.active_switch: stop ends such trajectories)")


def _switch_info(elec, active) -> dict:
    """Active-space switch flag and overlap of this step (``handle.info`` of the PySCF backend;
    False / -1 for backends without it, at t = 0 and for stopped trajectories; not NaN, so
    files stay comparable bit for bit with ``np.array_equal``)."""
    info = getattr(getattr(elec, "handle", None), "info", None)
    if not active or not isinstance(info, dict) or "active_overlap" not in info:
        return {"active_switch": False, "active_overlap": -1.0}
    return {"active_switch": bool(info.get("active_switch", False)),
            "active_overlap": float(info["active_overlap"])}


def _atomic_write_h5(path: Path, frames: list[dict], attrs: dict | None = None,
                     failures: dict | None = None, extra: dict | None = None,
                     checksum: bool = False, state: dict | None = None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        for key in FRAME_KEYS + tuple(k for k in HOP_KEYS if k in frames[0]):
            f.create_dataset(key, data=np.stack([fr[key] for fr in frames]))
        for k, v in (extra or {}).items():
            f.create_dataset(k, data=v)
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
        grp = f.create_group("failures")
        for tid, why in (failures or {}).items():
            grp.attrs[str(tid)] = why
        if state is not None:  # segments: the swarm state at their last step (a restart point)
            ckpt.write_group(f.create_group("swarm_state"), state)
        if checksum:
            f.attrs["sha256"] = ckpt.digest(f)
    os.replace(tmp, path)


def _say(msg: str) -> None:
    print(f"[qhd-aimd run] {msg}", file=sys.stderr, flush=True)


def check_segment(path: Path) -> tuple[str | None, int]:
    """(why the segment is unusable or None, its first step): unreadable, checksum mismatch,
    or steps that are not consecutive up to the step in its name."""
    try:
        with h5py.File(path, "r") as f:
            if "sha256" in f.attrs and f.attrs["sha256"] != ckpt.digest(f):
                return "checksum mismatch", -1
            steps = [int(v) for v in f["step"][()]]
            n = {f[k].shape[0] for k in FRAME_KEYS}
    except Exception as exc:
        return f"unreadable ({type(exc).__name__})", -1
    if not steps or n != {len(steps)}:
        return "datasets of different lengths", -1
    if steps != list(range(steps[0], _segment_step(path) + 1)):
        return f"holds steps {steps[0]}..{steps[-1]}, not ..{_segment_step(path)}", -1
    return None, steps[0]


class RunStore:
    """Segments + checkpoint of one run directory (used on rank 0 only)."""

    def __init__(self, out_dir: str | Path):
        self.out = Path(out_dir)
        self.run_dir = self.out / "run"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.pending: list[dict] = []

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.h5"

    @property
    def previous_path(self) -> Path:
        return self.run_dir / "checkpoint.prev.h5"

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.exists() or self.previous_path.exists()

    def add(self, frame: dict) -> None:
        self.pending.append(frame)

    def checkpoint(self, state: dict, segment_only: bool = False) -> None:
        """Write pending frames as a segment, then the checkpoint (both atomically); the
        checkpoint replaced becomes ``checkpoint.prev.h5``. ``segment_only``: the segment
        alone (repairs of older frames)."""
        if self.pending:
            last = int(self.pending[-1]["step"])
            _atomic_write_h5(self.run_dir / f"segment_{last:09d}.h5", self.pending, checksum=True,
                             state=state if state.get("step") == last else None)
            self.pending = []
        if segment_only:
            return
        tmp = self.run_dir / "checkpoint.new.h5"
        ckpt.write(tmp, state)
        if self.checkpoint_path.exists():
            os.replace(self.checkpoint_path, self.previous_path)
        os.replace(tmp, self.checkpoint_path)

    def _quarantine(self, path: Path, why: str) -> None:
        dest = self.run_dir / "damaged"
        dest.mkdir(exist_ok=True)
        target = dest / path.name
        k = 1
        while target.exists():
            target = dest / f"{path.name}.{k}"
            k += 1
        shutil.move(str(path), target)
        _say(f"{path.name}: {why}; moved to {target.relative_to(self.out)}")

    def restart_state(self) -> dict | None:
        """The state to continue from (see module docstring), or None for a fresh start.

        Checkpoints and segments are verified; damaged files go to ``run/damaged/``. A gap in
        the frames (damaged or missing segments) followed by good segments is a *repair*:
        ``state["repairs"]`` lists (state at the step before the gap or None for t = 0, last
        step of the gap); the driver recomputes those steps and writes their segments, and
        the later good segments are kept. The run then continues from the newest state whose
        frames are all on disk after the repairs; segments newer than it are removed (they are
        recomputed). ``CheckpointError`` when checkpoints exist but nothing is usable."""
        states, errors = [], []
        for path in (self.checkpoint_path, self.previous_path):
            if not path.exists():
                continue
            try:
                states.append(ckpt.read(path))
            except ckpt.CheckpointError as exc:
                errors.append(str(exc))
                self._quarantine(path, str(exc).split(": ", 1)[-1])
        good = []  # (first step, last step) of the verified segments
        for seg in self.segments():
            why, first = check_segment(seg)
            if why is None and good and first <= good[-1][1]:
                why = "overlaps earlier segments"
            if why is not None:
                self._quarantine(seg, why)
            else:
                good.append((first, _segment_step(seg)))
        repairs, covered = [], -1
        for first, last in good:
            if first > covered + 1:  # frames covered+1 .. first-1 are missing
                start = None if covered < 0 else self._segment_state(covered)
                if covered >= 0 and start is None:
                    break  # no state to recompute the gap from: truncate here
                repairs.append((start, first - 1))
                _say(f"steps {covered + 1}..{first - 1} missing (damaged or absent segments): "
                     f"recomputing them from {'t = 0' if start is None else f'step {covered}'}; "
                     f"later segments kept")
            covered = last
        usable = [st for st in states if st["step"] <= covered]
        seg_state = self._segment_state(covered)
        if seg_state is not None:
            usable.append(seg_state)
        state = max(usable, key=lambda st: st["step"]) if usable else None
        if errors and state is None:
            raise ckpt.CheckpointError(
                "no usable checkpoint: " + "; ".join(errors) + f" (moved to {self.run_dir}/"
                "damaged/) and no segment holds a swarm state; start again with a new --out, or "
                "move the run directory away")
        newest = max([st["step"] for st in states] + [-1])
        if (state is None and newest >= 0) or (state is not None and state["step"] < newest):
            where = f"step {state['step']}" if state is not None else "t = 0"
            _say(f"frames on disk end at step {covered}: continuing from {where}")
        keep = -1 if state is None else state["step"]
        for seg in self.segments():
            if _segment_step(seg) > keep:
                seg.unlink()
        if state is None:
            return None
        state = dict(state)
        state["repairs"] = [(st, last) for st, last in repairs if last < keep]
        return state

    def _segment_state(self, step: int) -> dict | None:
        """The swarm state stored in (verified) ``segment_<step>.h5``, if it holds one."""
        path = self.run_dir / f"segment_{step:09d}.h5"
        if step < 0 or not path.exists():
            return None
        try:
            with h5py.File(path, "r") as f:
                return ckpt.read_group(f["swarm_state"]) if "swarm_state" in f else None
        except Exception:
            return None

    def load_checkpoint(self) -> dict | None:
        """Alias of ``restart_state`` (older name)."""
        return self.restart_state()

    def archive(self) -> Path:
        """Move ``run/`` to ``run.stale-<k>/`` (kept, never deleted) and start an empty one."""
        k = 1
        while (self.out / f"run.stale-{k}").exists():
            k += 1
        dest = self.out / f"run.stale-{k}"
        os.replace(self.run_dir, dest)
        self.run_dir.mkdir()
        self.pending = []
        return dest

    def segments(self) -> list[Path]:
        return sorted(self.run_dir.glob("segment_*.h5"), key=_segment_step)

    def finalize(self, attrs: dict, failures: dict, extra: dict) -> Path:
        """Merge all segments into ``trajectories.h5`` (atomically)."""
        frames = []
        for seg in self.segments():
            with h5py.File(seg, "r") as f:
                n = f["step"].shape[0]
                keys = FRAME_KEYS + tuple(k for k in HOP_KEYS if k in f)
                for k in range(n):
                    frames.append({key: f[key][k] for key in keys})
        steps = [int(fr["step"]) for fr in frames]
        if steps != list(range(len(steps))):
            raise RuntimeError(f"segments in {self.run_dir} do not hold consecutive steps")
        path = self.out / "trajectories.h5"
        _atomic_write_h5(path, frames, {**attrs, "complete": True}, failures, extra)
        return path


def _segment_step(path: Path) -> int:
    return int(path.stem.split("_")[1])


def read_trajectories(path: str | Path) -> dict:
    """Every dataset of a trajectories file as arrays, plus ``attrs`` and ``failures`` dicts."""
    path = Path(path)
    if path.is_dir():
        path = path / "trajectories.h5"
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != FORMAT:
            raise ValueError(f"{path}: not a {FORMAT} file")
        out = {k: f[k][()] for k in f if isinstance(f[k], h5py.Dataset)}
        out["attrs"] = dict(f.attrs)
        out["failures"] = {int(k): v for k, v in f["failures"].attrs.items()}
    return out
