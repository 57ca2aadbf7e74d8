"""Snakemake workflow: dry run and lint of the default study, a real tiny model-only run ending
in the HTML report (and resuming a swarm from its checkpoint), config validation errors.

Runs in temporary directories (``--directory``) so the checkout is never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("snakemake")

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
TINY = REPO / "tests" / "data" / "workflow_config.yaml"
BIN = os.path.dirname(sys.executable)


def snakemake(*args, cwd: Path, timeout=120):
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE",
               PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE),
                           "--directory", str(cwd), *args],
                          cwd=cwd, env=env, check=False, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def default_study(tmp_path):
    """A working directory holding a copy of config/ (the default study and its xyz)."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    return tmp_path


def test_dry_run_default_config(default_study):
    proc = snakemake("-n", "--quiet", "rules", cwd=default_study)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    out = proc.stdout + proc.stderr
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    n_jobs = sum(len(s["methods"]) for s in cfg["systems"].values())
    ranks = {n: min(s.get("ranks", cfg["mpi"]["ranks"]), s["initial"]["n_trajectories"])
             for n, s in cfg["systems"].items()}
    n_mpi = sum(len(s["methods"]) for n, s in cfg["systems"].items() if ranks[n] > 1)
    n_mol = sum(len(s["methods"]) for s in cfg["systems"].values() if "molecule" in s)
    counts = {"swarm": n_jobs - n_mpi, "swarm_mpi": n_mpi, "aggregate": n_jobs, "report": 1,
              "prepare": 1, "exact": 1, "export": n_mol}
    assert n_mpi >= 1 and n_jobs - n_mpi >= 1  # both kinds of swarm jobs in the default study
    for rule, count in counts.items():
        assert any(line.split()[:2] == [rule, str(count)] for line in out.splitlines()), (rule, out)


def test_default_config_has_a_molecule_and_a_model():
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    kinds = {("molecule" if "molecule" in s else "model") for s in cfg["systems"].values()}
    assert kinds == {"molecule", "model"}


def test_lint(default_study):
    proc = snakemake("--lint", cwd=default_study)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr


def test_tiny_study_end_to_end(tmp_path):
    cfg = yaml.safe_load(TINY.read_text())
    args = ("--configfile", str(TINY), "--cores", "2")
    proc = snakemake(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    study = tmp_path / cfg["results"] / cfg["study"]
    page = study / "report" / "index.html"
    html = page.read_text()
    for method in cfg["systems"]["tully"]["methods"]:
        assert f"<td class=\"l\">{method}</td>" in html
        assert (study / "tully" / method / "populations.csv").exists()
        assert (study / "logs" / "tully" / method / "run.log").exists()
    assert html.count("data:image/png;base64,") == 4
    assert str(Path(cfg["results"]) / cfg["study"] / "tully" / "exact") in html  # exact overlay
    assert 'class="scattering"' in html
    assert "study: tiny" in html  # the effective study config is recorded
    job = yaml.safe_load((study / "tully" / "ehrenfest" / "study.yaml").read_text())
    assert job["name"] == "tully" and job["method"] == "ehrenfest"
    assert job["output"] == {"checkpoint_every": 10}  # from `defaults`

    # nothing left to do
    proc = snakemake(*args, "-n", cwd=tmp_path)
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr

    # a lost trajectories.h5 is rebuilt by resuming from the run's checkpoint, bit-identically
    traj = study / "tully" / "geometric_ehrenfest_qc" / "trajectories.h5"
    before = traj.read_bytes()
    traj.unlink()
    proc = snakemake(*args, str(traj.relative_to(tmp_path)), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    import h5py
    import numpy as np

    with h5py.File(traj) as f, h5py.File(__import__("io").BytesIO(before)) as g:
        for key in f:
            if isinstance(f[key], h5py.Dataset):
                assert np.array_equal(f[key][()], g[key][()]), key


BAD = {
    "unknown method": ({"methods": ["ehrenfes"]}, "'ehrenfes' is not one of"),
    "negative width": ({"initial": {"position_bohr": -4.0, "momentum_au": 20.0,
                                    "width_bohr": -1.0, "n_trajectories": 4}},
                       "systems']['tully']['initial']['width_bohr']"),
    "no trajectories": ({"initial": {"position_bohr": -4.0, "momentum_au": 20.0,
                                     "width_bohr": 1.0, "n_trajectories": 0}},
                        "0 is less than the minimum of 1"),
    "unknown key": ({"dynamics": {"dt_au": 15.0, "t_final_au": 600.0, "dt_fz": 3}},
                    "'dt_fz' was unexpected"),
    "model and molecule": ({"molecule": {"xyz": "x.xyz"}},
                           "systems.tully: give exactly one of 'model' or 'molecule'"),
    "two time steps": ({"dynamics": {"dt_au": 15.0, "dt_fs": 0.3, "t_final_au": 600.0}},
                       "systems.tully.dynamics: give exactly one of dt_au or dt_fs"),
    "model without momentum": ({"initial": {"position_bohr": -4.0, "width_bohr": 1.0,
                                            "n_trajectories": 4}},
                               "systems.tully.initial: models need momentum_au"),
    "bad ranks": ({"ranks": 0}, "0 is less than the minimum of 1"),
    "bad hopping option": ({"methods": ["fssh"], "hopping": {"decoherence": "idc"}},
                           "'idc' is not one of"),
    "coordinates of a model": ({"analysis": {"coordinates": {"bonds": {"r": [0, 1]}}}},
                               "systems.tully.analysis: internal coordinates apply to molecules only"),
    "unknown coordinate kind": ({"analysis": {"coordinates": {"torsions": {"t": [0, 1, 2, 3]}}}},
                                "'torsions' was unexpected"),
}


def test_surface_hopping_methods_and_hopping_section(tmp_path):
    """methods: [fssh, fssh_qc] and a hopping: section reach the single-study configs."""
    from qhd_aimd.config import load_config

    cfg = yaml.safe_load(TINY.read_text())
    cfg["systems"]["tully"].update(methods=["fssh", "fssh_qc"],
                                   hopping={"decoherence": "none", "frustrated": "reverse"})
    path = tmp_path / "fssh.yaml"
    path.write_text(yaml.safe_dump(cfg))
    study = Path(cfg["results"]) / cfg["study"] / "tully"
    targets = [str(study / m / "study.yaml") for m in ("fssh", "fssh_qc")]
    proc = snakemake("--configfile", str(path), "--cores", "1", *targets, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for m in ("fssh", "fssh_qc"):
        job = load_config(tmp_path / study / m / "study.yaml")
        assert job.method == m and job.hopping.decoherence == "none" and job.hopping.frustrated == "reverse"


@pytest.mark.parametrize("case", sorted(BAD))
def test_config_validation_errors(tmp_path, case):
    change, message = BAD[case]
    cfg = yaml.safe_load(TINY.read_text())
    cfg["systems"]["tully"].update(change)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = snakemake("--configfile", str(path), "-n", cwd=tmp_path)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_exact_for_diatomic_molecules_only(default_study):
    """`exact: true` is accepted for a two-atom molecule (dry run schedules the exact job) and
    refused, naming the key, for a polyatomic one."""
    path = default_study / "config" / "studies" / "lih_exact_workflow.yaml"
    proc = snakemake("--configfile", str(path), "--replace-workflow-config", "-n", "--quiet",
                     "rules", cwd=default_study)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    out = proc.stdout + proc.stderr
    assert any(line.split()[:2] == ["exact", "1"] for line in out.splitlines()), out
    cfg = yaml.safe_load(path.read_text())
    cfg["systems"]["lih"]["molecule"]["xyz"] = "config/molecules/ethylene.xyz"
    bad = default_study / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    proc = snakemake("--configfile", str(bad), "--replace-workflow-config", "-n",
                     cwd=default_study)
    assert proc.returncode != 0
    assert "systems.lih.exact: available for analytic models and diatomic molecules only" in (
        proc.stdout + proc.stderr)


MOLECULE_STUDY = {
    "study": "mol", "results": "results", "mpi": {"ranks": 1},
    "systems": {"mol": {
        "molecule": {"xyz": "mol.xyz"},
        "electronic": {"basis": "sto-3g", "active_space": [2, 2], "n_states": 2},
        "methods": ["ehrenfest"],
        "initial": {"n_trajectories": 1, "state": 1, "seed": 1},
        "dynamics": {"dt_fs": 0.25, "t_final_fs": 0.25}}},
}


@pytest.mark.pyscf
def test_edited_xyz_or_config_reruns_the_swarm(tmp_path):
    """Stale results (issue 13, item 8): after a first run, replacing the molecule's xyz by
    another molecule reruns prepare and the swarm (which starts again, keeping the old run as
    run.stale-1); a changed config section reruns the jobs it affects."""
    import h5py

    (tmp_path / "mol.xyz").write_text("2\nLiH\nLi 0 0 0\nH 0 0 1.595\n")
    conf = tmp_path / "study.yaml"
    conf.write_text(yaml.safe_dump(MOLECULE_STUDY))
    target = "results/mol/mol/ehrenfest/trajectories.h5"
    args = ("--configfile", str(conf), "--cores", "1")
    proc = snakemake(*args, target, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]

    def jobs(proc):
        return {ln.split()[0] for ln in proc.stdout.splitlines()
                if ln.split()[1:2] and ln.split()[1].isdigit()}

    (tmp_path / "mol.xyz").write_text("2\nH2\nH 0 0 0\nH 0 0 0.74\n")  # another molecule
    proc = snakemake(*args, target, "-n", "--quiet", "rules", cwd=tmp_path)
    assert {"prepare", "swarm"} <= jobs(proc), proc.stdout
    proc = snakemake(*args, target, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    with h5py.File(tmp_path / target) as f:
        assert f["masses_au"][()].max() < 2000  # two protons now, no lithium
        assert list(f.attrs["labels"])[::3] == ["H1.x", "H2.x"] and f["positions_bohr"].shape == (2, 1, 6)
    assert (tmp_path / "results/mol/mol/ehrenfest/run.stale-1/checkpoint.h5").exists()
    assert "different initial conditions" in (
        tmp_path / "results/mol/logs/mol/ehrenfest/run.log").read_text()

    # a changed dynamics section changes the job's study.yaml (params trigger): swarm reruns
    cfg = yaml.safe_load(conf.read_text())
    cfg["systems"]["mol"]["dynamics"]["t_final_fs"] = 0.5
    conf.write_text(yaml.safe_dump(cfg))
    proc = snakemake(*args, target, "-n", "--quiet", "rules", cwd=tmp_path)
    assert {"study_config", "swarm"} <= jobs(proc), proc.stdout


def test_exact_scan_and_active_orbitals_reach_the_study_config(default_study):
    """A diatomic system's exact_scan section and electronic.active_orbitals reach the
    single-study config (which qhd-aimd exact reads); an unknown exact_scan key is refused."""
    from qhd_aimd.config import load_config

    path = default_study / "config" / "studies" / "lih_exact_workflow.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg["systems"]["lih"]["exact_scan"] = {"r_min_bohr": 1.6, "r_max_bohr": 16.0}
    cfg["systems"]["lih"]["electronic"]["active_orbitals"] = [2, 3]
    good = default_study / "scan.yaml"
    good.write_text(yaml.safe_dump(cfg))
    target = f"{cfg['results']}/{cfg['study']}/lih/ehrenfest/study.yaml"
    proc = snakemake("--configfile", str(good), "--replace-workflow-config", "--cores", "1",
                     target, cwd=default_study)
    assert proc.returncode == 0, proc.stderr[-3000:]
    job = load_config(default_study / target)
    assert (job.exact_scan.r_min_bohr, job.exact_scan.r_max_bohr) == (1.6, 16.0)
    assert job.system.electronic.active_orbitals == [2, 3]
    cfg["systems"]["lih"]["exact_scan"] = {"r_max": 16.0}
    bad = default_study / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    proc = snakemake("--configfile", str(bad), "--replace-workflow-config", "-n",
                     cwd=default_study)
    assert proc.returncode != 0 and "r_max" in proc.stdout + proc.stderr
