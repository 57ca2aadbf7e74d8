"""Named internal coordinates (bonds, angles, dihedrals) of molecular trajectories.

Config (``analysis.coordinates`` of a workflow system or a YAML given to
``qhd-aimd coordinates DIR --config FILE``), atoms by 0-based index in the xyz file::

    analysis:
      coordinates:
        bonds:     {CN: [0, 1]}                 # Å
        angles:    {HCN: [2, 0, 1]}             # degrees, angle at the middle atom
        dihedrals: {torsion: [2, 0, 1, 4]}      # degrees in (-180, 180], IUPAC sign convention
        pyramidalizations: {pyrC: [0, 1, 2, 3]} # degrees: angle of bond 0-1 out of plane 0-2-3

Output ``DIR/coordinates.csv``: ``time_fs``, then per coordinate ``<name>_mean`` (mean over the
trajectories still active) and ``<name>_<id>`` per trajectory.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from qhd_aimd.errors import ConfigError, QhdError
from qhd_aimd.units import AUT_FS, BOHR_ANGSTROM

_N_ATOMS = {"bonds": 2, "angles": 3, "dihedrals": 4, "pyramidalizations": 4}
UNITS = {"bonds": "Å", "angles": "deg", "dihedrals": "deg", "pyramidalizations": "deg"}


class CoordinatesSpec(BaseModel):
    """``analysis.coordinates``: name -> atom indices (0-based), per kind."""

    model_config = ConfigDict(extra="forbid")
    bonds: dict[str, list[int]] = Field(default_factory=dict)
    angles: dict[str, list[int]] = Field(default_factory=dict)
    dihedrals: dict[str, list[int]] = Field(default_factory=dict)
    pyramidalizations: dict[str, list[int]] = Field(default_factory=dict)

    @field_validator("bonds", "angles", "dihedrals", "pyramidalizations")
    @classmethod
    def _atoms(cls, v, info):
        n = _N_ATOMS[info.field_name]
        for name, idx in v.items():
            if len(idx) != n:
                raise ValueError(f"{name}: needs {n} atom indices, got {len(idx)}")
            if min(idx) < 0:
                raise ValueError(f"{name}: atom indices are 0-based and >= 0")
            if len(set(idx)) != n:
                raise ValueError(f"{name}: repeated atom index")
        return v

    def items(self):
        """(kind, name, atom indices) for every coordinate, in config order."""
        for kind in _N_ATOMS:
            for name, idx in getattr(self, kind).items():
                yield kind, name, list(idx)

    def check_atoms(self, n_atoms: int, where: str = "analysis.coordinates") -> None:
        for kind, name, idx in self.items():
            if max(idx) >= n_atoms:
                raise ConfigError(f"{where}.{kind}.{name}: atom index {max(idx)} but the molecule "
                                  f"has {n_atoms} atoms (indices start at 0)")


class AnalysisSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    coordinates: CoordinatesSpec = Field(default_factory=CoordinatesSpec)


def parse_analysis(data: dict | None) -> AnalysisSpec:
    """Validate an ``analysis`` mapping; ``ConfigError`` naming the key."""
    try:
        return AnalysisSpec.model_validate(data or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"analysis.{where}: {err['msg']}") from None


def load_coordinates(path: str | Path) -> CoordinatesSpec:
    """``analysis.coordinates`` of a YAML file (a study config or just the analysis section)."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    return parse_analysis(data.get("analysis")).coordinates


# ------------------------------------------------------------------ geometry (pure functions)
def bond(x: np.ndarray, i: int, j: int) -> np.ndarray:
    """|x_j - x_i| for x (..., A, 3); same length unit as x."""
    return np.linalg.norm(x[..., j, :] - x[..., i, :], axis=-1)


def angle(x: np.ndarray, i: int, j: int, k: int) -> np.ndarray:
    """Angle i-j-k at atom j, degrees."""
    a, b = x[..., i, :] - x[..., j, :], x[..., k, :] - x[..., j, :]
    cos = np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def dihedral(x: np.ndarray, i: int, j: int, k: int, m: int) -> np.ndarray:
    """Dihedral i-j-k-m, degrees in (-180, 180] (IUPAC: positive = clockwise looking j -> k)."""
    b0, b1, b2 = x[..., j, :] - x[..., i, :], x[..., k, :] - x[..., j, :], x[..., m, :] - x[..., k, :]
    n1, n2 = np.cross(b0, b1), np.cross(b1, b2)
    m1 = np.cross(n1, b1 / np.linalg.norm(b1, axis=-1)[..., None])
    return np.degrees(np.arctan2(np.sum(m1 * n2, -1), np.sum(n1 * n2, -1)))


def pyramidalization(x: np.ndarray, c: int, a: int, b1: int, b2: int) -> np.ndarray:
    """Angle (degrees) between bond c-a and the plane of c, b1, b2: 0 for a planar centre."""
    n = np.cross(x[..., b1, :] - x[..., c, :], x[..., b2, :] - x[..., c, :])
    v = x[..., a, :] - x[..., c, :]
    s = np.sum(n * v, -1) / (np.linalg.norm(n, axis=-1) * np.linalg.norm(v, axis=-1))
    return np.degrees(np.arcsin(np.clip(s, -1.0, 1.0)))


_FUNCS = {"bonds": bond, "angles": angle, "dihedrals": dihedral, "pyramidalizations": pyramidalization}


def internal_coordinates(positions_bohr: np.ndarray, spec: CoordinatesSpec) -> dict[str, np.ndarray]:
    """{name: values (F, T)} from positions (F, T, 3A) bohr; bonds in Å, the rest in degrees."""
    x = np.asarray(positions_bohr, float)
    x = x.reshape(x.shape[:-1] + (-1, 3))
    out = {}
    for kind, name, idx in spec.items():
        v = _FUNCS[kind](x, *idx)
        out[name] = v * BOHR_ANGSTROM if kind == "bonds" else v
    return out


def write_coordinates(run_dir: str | Path, spec: CoordinatesSpec) -> Path:
    """``run_dir/coordinates.csv`` from ``run_dir/trajectories.h5`` (see module docstring)."""
    import h5py

    run_dir = Path(run_dir)
    path = run_dir / "trajectories.h5"
    if not path.exists():
        raise QhdError(f"{path}: not found (run `qhd-aimd run` first)")
    with h5py.File(path, "r") as f:
        pos, act, t = f["positions_bohr"][()], f["active"][()], f["time_au"][()]
    if pos.shape[-1] % 3:
        raise QhdError(f"{path}: an analytic-model run has no atoms; coordinates are for molecules")
    spec.check_atoms(pos.shape[-1] // 3)
    values = internal_coordinates(pos, spec)
    n_t = pos.shape[1]
    header, cols = ["time_fs"], [t * AUT_FS]
    w = act.astype(float)
    for name, v in values.items():
        header.append(f"{name}_mean")
        cols.append((v * w).sum(1) / np.maximum(w.sum(1), 1))
        header += [f"{name}_{i}" for i in range(n_t)]
        cols += [v[:, i] for i in range(n_t)]
    out = run_dir / "coordinates.csv"
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(header)
        for row in np.stack(cols, axis=1):
            wr.writerow([f"{x:.10g}" for x in row])
    tmp.replace(out)
    meta = {name: UNITS[kind] for kind, name, _ in spec.items()}
    (run_dir / "coordinates_units.yaml").write_text(yaml.safe_dump(meta, allow_unicode=True))
    return out
