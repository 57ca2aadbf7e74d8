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
renamed), followed by ``DIR/run/checkpoint.pkl`` (the full swarm state: positions, momenta, rho,
electronic handles for warm start and overlaps, fields). A run killed at any moment leaves only
complete files; restart drops segments newer than the checkpoint and continues from it, so the
merged result is identical to an uninterrupted run. At the end the segments are merged into
``trajectories.h5``.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import h5py
import numpy as np

FORMAT = "qhd_aimd.trajectories/1"
FRAME_KEYS = ("step", "time_au", "positions_bohr", "momenta_au", "rho", "energies_hartree",
              "e_kin_hartree", "e_pot_hartree", "force_meanfield", "force_geometric", "force_qc",
              "active")
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
            "active": bool(swarm.active[i]),
        }
        if getattr(swarm, "active_state", None) is not None:
            out[int(tid)].update({k: getattr(swarm, k)[i] for k in HOP_KEYS})
    return out


def _atomic_write_h5(path: Path, frames: list[dict], attrs: dict | None = None,
                     failures: dict | None = None, extra: dict | None = None) -> None:
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
    os.replace(tmp, path)


class RunStore:
    """Segments + checkpoint of one run directory (used on rank 0 only)."""

    def __init__(self, out_dir: str | Path):
        self.out = Path(out_dir)
        self.run_dir = self.out / "run"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.pending: list[dict] = []

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pkl"

    def add(self, frame: dict) -> None:
        self.pending.append(frame)

    def checkpoint(self, state: dict) -> None:
        """Write pending frames as a segment, then the checkpoint (both atomically)."""
        if self.pending:
            last = int(self.pending[-1]["step"])
            _atomic_write_h5(self.run_dir / f"segment_{last:09d}.h5", self.pending)
            self.pending = []
        tmp = self.checkpoint_path.with_name("checkpoint.pkl.tmp")
        with open(tmp, "wb") as fh:
            pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, self.checkpoint_path)

    def load_checkpoint(self) -> dict | None:
        """The last checkpoint, after deleting segments written after it; None if none."""
        if not self.checkpoint_path.exists():
            return None
        with open(self.checkpoint_path, "rb") as fh:
            state = pickle.load(fh)
        for seg in self.segments():
            if _segment_step(seg) > state["step"]:
                seg.unlink()
        return state

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
