"""Report provenance: package versions and git revision."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from qhd_aimd.report.provenance import VERSIONED, git_revision, package_versions


def test_package_versions():
    v = package_versions()
    assert set(VERSIONED) <= set(v) and v["numpy"] == np.__version__
    assert {"python", "platform", "qhd_aimd (module)"} <= set(v)


def test_git_revision(tmp_path):
    assert git_revision(tmp_path) in ("not a git checkout", "git not available")
    repo = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("no git checkout")
    assert git_revision().removesuffix("-dirty") == head == git_revision(repo).removesuffix("-dirty")
