"""Provenance recorded on the report page: package versions and the git revision."""

from __future__ import annotations

import importlib.metadata as _md
import platform
import subprocess
import sys
from pathlib import Path

from qhd_aimd import __version__

#: packages whose versions the report records
VERSIONED = ("qhd_aimd", "numpy", "scipy", "pyscf", "h5py", "pydantic", "mpi4py", "matplotlib",
             "jinja2", "snakemake")


def package_versions() -> dict[str, str]:
    out = {}
    for name in VERSIONED:
        try:
            out[name] = _md.version(name)
        except _md.PackageNotFoundError:
            out[name] = "not installed"
    out["qhd_aimd (module)"] = __version__
    out["python"] = sys.version.split()[0]
    out["platform"] = platform.platform()
    return out


def git_revision(where: str | Path | None = None) -> str:
    """``<commit>[-dirty]`` of the checkout holding ``where`` (default: this package), or a note."""
    where = Path(where) if where is not None else Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], check=False,
                             capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return "not a git checkout"
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain",
                                "--untracked-files=no"], check=False, capture_output=True,
                               text=True, timeout=10)
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "git not available"
