"""Swarm checkpoints in HDF5: arrays and plain metadata only, never pickle.

A checkpoint is the dict the swarm driver builds (``qhd_aimd.swarm.driver._checkpoint``)::

    {"step": int, "time_au": float, "config": str, "inputs": str,
     "failures": {trajectory id: reason},
     "trajectories": {trajectory id: {field: value, ..., "elec": ElectronicData}}}

Layout of ``run/checkpoint.h5`` (format ``qhd_aimd.checkpoint/1``): root attributes ``format``,
``sha256``; everything else is a *tree* of HDF5 objects, each tagged with its Python type in
the attribute ``t``: ``ndarray`` / ``npscalar`` / ``bool`` / ``int`` / ``float`` / ``complex`` /
``str`` datasets (stored exactly, so a restart is bitwise), ``none`` / ``list`` / ``tuple`` /
``dict`` groups, and ``dataclass`` groups for the classes listed in ``DATACLASSES`` only (the
electronic data and the backends' wavefunction handles: orbitals, CI vectors, energies, warm-start
history). Per-trajectory values that stack into one array (every field of the ``Swarm``: the
generic list ``_SWARM_FIELDS`` of the driver) are stored as one dataset per field, shape (T, ...),
in trajectory order; anything else per trajectory as a tree. Reading a checkpoint never executes
code: only the whitelisted dataclasses are constructed, from their fields.

``sha256`` is a digest of every object's name, type tag, dtype, shape and bytes; ``verify`` (on
every load) recomputes it, so a truncated, empty or altered file is detected.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import os
from pathlib import Path

import h5py
import numpy as np

from qhd_aimd.errors import QhdError

FORMAT = "qhd_aimd.checkpoint/1"
#: the only classes a checkpoint may construct ("module:qualname"); add a backend's handle here
DATACLASSES = (
    "qhd_aimd.electronic.base:ElectronicData",
    "qhd_aimd.electronic.pyscf.handle:CasscfHandle",
)
#: whitelisted classes that moved, as written by checkpoints of earlier versions -> now
_MOVED = {"qhd_aimd.electronic.pyscf_casscf:CasscfHandle":
          "qhd_aimd.electronic.pyscf.handle:CasscfHandle"}


class CheckpointError(QhdError):
    """A checkpoint file is missing, damaged or not a checkpoint."""


def _cls_name(obj) -> str:
    return f"{type(obj).__module__}:{type(obj).__qualname__}"


def _load_cls(name: str):
    name = _MOVED.get(name, name)
    if name not in DATACLASSES:
        raise CheckpointError(f"class {name!r} is not allowed in a checkpoint")
    mod, qual = name.split(":")
    return getattr(importlib.import_module(mod), qual)


def encode(parent: h5py.Group, name: str, obj) -> None:
    """Write ``obj`` under ``parent[name]`` (see module docstring for the types)."""
    if obj is None:
        parent.create_group(name).attrs["t"] = "none"
    elif isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError(f"{name}: object arrays cannot be checkpointed")
        parent.create_dataset(name, data=obj).attrs["t"] = "ndarray"
    elif isinstance(obj, np.generic):
        parent.create_dataset(name, data=obj).attrs["t"] = "npscalar"
    elif isinstance(obj, (bool, int, float, complex)):
        parent.create_dataset(name, data=obj).attrs["t"] = type(obj).__name__
    elif isinstance(obj, str):
        parent.create_dataset(name, data=obj, dtype=h5py.string_dtype()).attrs["t"] = "str"
    elif isinstance(obj, (list, tuple)):
        g = parent.create_group(name)
        g.attrs["t"] = type(obj).__name__
        g.attrs["n"] = len(obj)
        for i, v in enumerate(obj):
            encode(g, str(i), v)
    elif isinstance(obj, dict):
        g = parent.create_group(name)
        g.attrs["t"] = "dict"
        g.attrs["n"] = len(obj)
        for i, (k, v) in enumerate(obj.items()):
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"{name}: dict keys must be str or int, not {type(k)}")
            encode(g, str(i), v)
            g[str(i)].attrs["key"] = str(k)
            g[str(i)].attrs["key_t"] = type(k).__name__
    elif dataclasses.is_dataclass(obj) and _cls_name(obj) in DATACLASSES:
        g = parent.create_group(name)
        g.attrs["t"] = "dataclass"
        g.attrs["cls"] = _cls_name(obj)
        for f in dataclasses.fields(obj):
            if f.init:
                encode(g, f.name, getattr(obj, f.name))
    else:
        raise TypeError(f"{name}: {type(obj)} cannot be checkpointed (not in DATACLASSES)")


def decode(node):
    """Inverse of ``encode``."""
    t = node.attrs["t"]
    if isinstance(node, h5py.Dataset):
        if t == "ndarray":
            return node[()]
        if t == "npscalar":
            return node[()]
        if t == "str":
            return node.asstr()[()]
        v = node[()]
        return {"bool": bool, "int": int, "float": float, "complex": complex}[t](v)
    if t == "none":
        return None
    n = int(node.attrs.get("n", 0))
    if t in ("list", "tuple"):
        items = [decode(node[str(i)]) for i in range(n)]
        return items if t == "list" else tuple(items)
    if t == "dict":
        out = {}
        for i in range(n):
            child = node[str(i)]
            key = str(child.attrs["key"])
            out[int(key) if child.attrs["key_t"] == "int" else key] = decode(child)
        return out
    if t == "dataclass":
        cls = _load_cls(str(node.attrs["cls"]))
        return cls(**{k: decode(node[k]) for k in node})
    raise CheckpointError(f"unknown type tag {t!r} at {node.name}")


def digest(f: h5py.File) -> str:
    """sha256 over every object's path, attributes (except ``sha256``), dtype, shape and data."""
    h = hashlib.sha256()
    names = []
    f.visit(names.append)
    for name in ["/"] + sorted(names):
        obj = f[name]
        h.update(name.encode())
        for k in sorted(obj.attrs):
            if k == "sha256":
                continue
            v = np.asarray(obj.attrs[k])
            h.update(k.encode() + v.dtype.str.encode() + repr(v.shape).encode())
            h.update(v.tobytes() if v.dtype != object else repr(v.tolist()).encode())
        if isinstance(obj, h5py.Dataset):
            v = obj[()]
            if isinstance(v, bytes):
                h.update(v)
            else:
                v = np.asarray(v)
                h.update(v.dtype.str.encode() + repr(v.shape).encode())
                h.update(v.tobytes() if v.dtype != object else repr(v.tolist()).encode())
    return h.hexdigest()


def _per_trajectory(g: h5py.Group, per: dict) -> None:
    ids = sorted(per)
    g.create_dataset("ids", data=np.asarray(ids, np.int64))
    keys = sorted({k for t in ids for k in per[t]})
    stacked, trees = g.create_group("stacked"), g.create_group("trees")
    for key in keys:
        vals = [per[t].get(key) for t in ids]
        arrs = [v for v in vals if isinstance(v, (np.ndarray, np.generic))]
        if (ids and len(arrs) == len(vals) and len({(a.shape, a.dtype) for a in arrs}) == 1
                and arrs[0].dtype != object):
            d = stacked.create_dataset(key, data=np.stack(arrs))
            d.attrs["t"] = "ndarray" if isinstance(arrs[0], np.ndarray) else "npscalar"
        else:
            grp = trees.create_group(key)
            for t, v in zip(ids, vals):
                encode(grp, str(t), v)


def _read_per_trajectory(g: h5py.Group) -> dict:
    ids = [int(t) for t in g["ids"][()]]
    per = {t: {} for t in ids}
    for key, d in g["stacked"].items():
        arr = d[()]
        for i, t in enumerate(ids):
            per[t][key] = arr[i] if d.attrs["t"] == "ndarray" else arr[i][()]
    for key, grp in g["trees"].items():
        for t in ids:
            per[t][key] = decode(grp[str(t)])
    return per


def write_group(g: h5py.Group, state: dict) -> None:
    """Write ``state`` into the (empty) group ``g``: ``state`` tree + ``trajectories``."""
    encode(g, "state", {k: v for k, v in state.items() if k != "trajectories"})
    _per_trajectory(g.create_group("trajectories"), state.get("trajectories", {}))


def read_group(g: h5py.Group) -> dict:
    """Inverse of ``write_group`` (no verification: see ``read``)."""
    state = decode(g["state"])
    state["trajectories"] = _read_per_trajectory(g["trajectories"])
    return state


def write(path: str | Path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename) with its digest."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        write_group(f, state)
        f.attrs["sha256"] = digest(f)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read(path: str | Path) -> dict:
    """Read and verify a checkpoint; ``CheckpointError`` (saying why) when it is unusable."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: missing")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise CheckpointError(f"{path}: not a {FORMAT} file")
            if f.attrs.get("sha256") != digest(f):
                raise CheckpointError(f"{path}: checksum mismatch (file altered or damaged)")
            state = read_group(f)
    except CheckpointError:
        raise
    except Exception as exc:  # truncated / empty / not HDF5
        raise CheckpointError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    return state
