"""Workflow: analysis.coordinates of a molecule checked against its xyz file at parse time (one
line naming the key), and the default study's molecule gets export + coordinates jobs."""

from __future__ import annotations

import shutil

import pytest
import yaml
from test_workflow import REPO, snakemake


@pytest.fixture
def study(tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    return tmp_path


def _molecule(cfg):
    return next(n for n, s in cfg["systems"].items() if "molecule" in s)


def test_atom_index_beyond_molecule_named(study):
    cfg = yaml.safe_load((study / "config" / "config.yaml").read_text())
    name = _molecule(cfg)
    cfg["systems"][name]["analysis"] = {"coordinates": {"bonds": {"far": [0, 99]}}}
    (study / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake("-n", cwd=study)
    assert proc.returncode != 0
    assert (f"systems.{name}.analysis.coordinates.bonds.far: atom index 99 but the molecule has"
            in proc.stdout + proc.stderr), proc.stdout + proc.stderr


def test_default_study_exports_and_plots_coordinates(study):
    proc = snakemake("-n", "--quiet", "rules", cwd=study)
    assert proc.returncode == 0, proc.stderr
    lines = [ln.split()[:2] for ln in (proc.stdout + proc.stderr).splitlines()]
    assert ["export", "1"] in lines and ["coordinates", "1"] in lines, proc.stdout
