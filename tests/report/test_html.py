"""HTML report: one self-contained page with figures, tables, failures and provenance."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest

from qhd_aimd.analysis.aggregate import aggregate
from qhd_aimd.cli import main
from qhd_aimd.config import parse_config
from qhd_aimd.electronic import models
from qhd_aimd.errors import ConvergenceError, QhdError
from qhd_aimd.report.html import write_report
from qhd_aimd.swarm.driver import run_study

X_FAIL = 1.0


def _cfg(method, name="tully_simple", seed=3):
    return {"name": name, "system": {"model": "tully_simple"},
            "initial": {"position_bohr": -4.0, "momentum_au": 20.0, "width_bohr": 1.0,
                        "n_trajectories": 8, "seed": seed},
            "method": method, "dynamics": {"dt_au": 20.0, "t_final_au": 600.0},
            "output": {"checkpoint_every": 30}}


def _fake_exact(d: Path, name: str):
    d.mkdir(parents=True)
    t = np.linspace(0, 600 * 0.0241888432658, 31)
    p1 = 0.5 * (1 - np.exp(-t / 5))
    np.savetxt(d / "exact_populations.csv", np.column_stack([t, 1 - p1, p1]), delimiter=",",
               header="time_fs,p0,p1", comments="")
    np.savetxt(d / "exact_coherence.csv", np.column_stack([t, p1 * (1 - p1)]), delimiter=",",
               header="time_fs,d_0_1", comments="")
    (d / "exact_scattering.csv").write_text("state,transmission,reflection\n0,0.4321,0\n1,0.5679,0\n")
    import h5py

    with h5py.File(d / "exact.h5", "w") as f:
        f.attrs["model"] = "tully_simple"
        f.attrs["meta_name"] = name


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """results/<system>/<method>/ for one system and two methods (one failure injected in the
    coupled run), plus results/<system>/exact/."""
    root = tmp_path_factory.mktemp("study")
    mp = pytest.MonkeyPatch()
    orig = models.ModelBackend.compute
    state = {"failed": False}

    def compute(self, positions, reference=None):
        if state["armed"] and not state["failed"] and float(positions[0]) > X_FAIL:
            state["failed"] = True
            raise ConvergenceError("injected: CASSCF did not converge")
        return orig(self, positions, reference)

    mp.setattr(models.ModelBackend, "compute", compute)
    dirs = []
    try:
        for method, armed in (("ehrenfest", False), ("geometric_ehrenfest_qc", True)):
            state["armed"] = armed
            d = root / "tully" / method
            run_study(parse_config(_cfg(method, name="tully")), d, progress=False)
            aggregate(d)
            dirs.append(d)
    finally:
        mp.undo()
    assert state["failed"]
    _fake_exact(root / "tully" / "exact", "tully")
    return root, dirs


@pytest.fixture(scope="module")
def page(study, tmp_path_factory):
    root, dirs = study
    cfgfile = root / "study_config.yaml"
    cfgfile.write_text("study: test\nsystems: {tully: {model: tully_simple}}\n")
    out = tmp_path_factory.mktemp("report")
    path = write_report(dirs, out, exact_dirs=[root / "tully" / "exact"], title="My study",
                        study_config=cfgfile)
    return path, path.read_text()


def test_page_is_self_contained_with_figures(page):
    path, html = page
    assert path.name == "index.html" and path.exists()
    assert "<title>My study</title>" in html
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(imgs) == 4  # populations, decoherence, forces, energy
    files = sorted((path.parent / "figures").glob("*.png"))
    assert [f.name for f in files] == sorted(f"tully_{k}.png" for k in
                                             ("populations", "decoherence", "forces", "energy"))
    assert {base64.b64decode(b) for b in imgs} == {f.read_bytes() for f in files}
    assert all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in files)
    assert not re.search(r'(src|href)="https?://', html)  # nothing fetched from outside


def test_failure_listed(study, page):
    _, html = page
    _, dirs = study
    import h5py

    with h5py.File(dirs[1] / "observables.h5") as f:
        (tid, why), = f["failures"].attrs.items()
    assert "injected: CASSCF did not converge" in why
    table = html[html.index('class="failures"'):]
    assert re.search(rf"<td>{tid}</td><td class=\"l\">[^<]*injected: CASSCF did not converge", table)
    assert "1 failed trajectories" in html


def test_exact_reference_and_scattering_table(study, page):
    root, _ = study
    _, html = page
    assert str(root / "tully" / "exact") in html
    table = html[html.index('class="scattering"'):]
    table = table[:table.index("</table>")]
    assert table.count("<tr>") == 1 + 2 * 2  # header + 2 methods x 2 states
    assert "0.4321" in table and "0.5679" in table
    scat = np.loadtxt(root / "tully" / "ehrenfest" / "scattering.csv", delimiter=",", skiprows=1)
    assert f"{scat[0, 1]:.4f}" in table


def test_config_versions_and_git(page):
    _, html = page
    import h5py
    import numpy

    assert "method: geometric_ehrenfest_qc" in html and "n_trajectories: 8" in html
    assert "systems: {tully: {model: tully_simple}}" in html  # study config, verbatim
    for name, ver in (("numpy", numpy.__version__), ("h5py", h5py.__version__)):
        assert re.search(rf"<td class=\"l\">{name}</td><td class=\"l\">{re.escape(ver)}</td>", html)
    for name in ("scipy", "pyscf", "snakemake", "qhd_aimd"):
        assert f'<td class="l">{name}</td>' in html
    m = re.search(r"git revision \(qhd_aimd source\)</td><td class=\"l\">([^<]+)<", html)
    assert m and (re.fullmatch(r"[0-9a-f]{40}(-dirty)?", m.group(1)) or "git" in m.group(1))


def test_two_systems_two_sections(study, tmp_path):
    root, dirs = study
    other = tmp_path / "other" / "ehrenfest"
    run_study(parse_config(_cfg("ehrenfest", name="tully_b", seed=5)), other, progress=False)
    aggregate(other)
    path = write_report([*dirs, other], tmp_path / "rep", exact_dirs=[root / "tully" / "exact"])
    html = path.read_text()
    assert html.count('<section id="') == 2
    assert len(list((tmp_path / "rep" / "figures").glob("tully_b_*.png"))) == 4
    assert "not matched" not in html  # the exact reference went to 'tully' by its meta_name


def test_cli_report_and_missing_observables(study, tmp_path, capsys):
    root, dirs = study
    assert main(["report", *map(str, dirs), "--out", str(tmp_path / "r"), "--exact",
                 str(root / "tully" / "exact"), "--title", "CLI"]) == 0
    assert (tmp_path / "r" / "index.html").exists()
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r2")]) == 2
    assert "qhd-aimd aggregate" in capsys.readouterr().err
    with pytest.raises(QhdError, match="no exact"):
        write_report(dirs, tmp_path / "r3", exact_dirs=[tmp_path])


def test_momentum_table_for_2d_model(tmp_path):
    """2-D models: the final swarm-mean momentum (Berry deflection) next to the exact one,
    population-weighted over the adiabats of exact_momentum.csv and per state."""
    cfg = {"name": "berry", "system": {"model": "berry_2d"},
           "initial": {"position_bohr": [-4.0, 0.0], "momentum_au": [20.0, 0.0], "width_bohr": 1.0,
                       "n_trajectories": 4, "seed": 1},
           "method": "ehrenfest", "dynamics": {"dt_au": 5.0, "t_final_au": 400.0}}
    run_dir = tmp_path / "berry" / "ehrenfest"
    run_study(parse_config(cfg), run_dir, progress=False)
    obs = aggregate(run_dir)
    ex = tmp_path / "berry" / "exact"
    _fake_exact(ex, "berry")
    (ex / "exact_momentum.csv").write_text(
        "state,population,mean_p_x_au,mean_p_y_au,mean_p_x_sq_au,mean_p_y_sq_au\n"
        "0,0.75,19.36,-5.0,375.1,25.3\n1,0.25,20.0,0.0,400.0,0.3\n")
    html = write_report([run_dir], tmp_path / "rep", exact_dirs=[ex]).read_text()
    table = html[html.index('class="momentum"'):]
    table = table[:table.index("</table>")]
    assert table.count("<tr>") == 1 + 1 + 1 + 2  # header, run, exact, 2 states
    px, py = obs["final_mean_momentum"]
    assert py < -4.5  # the Berry kick on the lower adiabat
    assert f"{px:.4f}" in table and f"{py:.4f}" in table
    assert "19.5200" in table and "-3.7500" in table  # 0.75 * (19.36, -5) + 0.25 * (20, 0)


def test_energy_drift_csv_per_trajectory(tmp_path):
    """aggregate writes energy_drift.csv: one row per trajectory, drift of e_tot = e_kin + e_pot
    (final and max |.|), consistent with the per-trajectory energies in observables."""
    import csv

    cfg = {"name": "drift", "system": {"model": "tully_simple"},
           "initial": {"position_bohr": -3.0, "momentum_au": 15.0, "width_bohr": 1.0,
                       "n_trajectories": 6, "seed": 1},
           "method": "ehrenfest_qc", "dynamics": {"dt_au": 10.0, "t_final_au": 400.0}}
    run_study(parse_config(cfg), tmp_path, progress=False)
    obs = aggregate(tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "energy_drift.csv")))
    assert len(rows) == 6 and list(rows[0]) == ["trajectory", "e_tot_initial", "drift_final", "drift_max_abs"]
    e = obs["e_tot_traj"]
    for i, r in enumerate(rows):
        assert float(r["drift_final"]) == pytest.approx(e[-1, i] - e[0, i], abs=1e-12)
        assert float(r["drift_max_abs"]) == pytest.approx(np.abs(e[:, i] - e[0, i]).max(), abs=1e-12)
        assert float(r["drift_max_abs"]) < 1e-8  # energy_correction: rescale (default)


def test_exact_reference_in_every_section_of_its_name(study, tmp_path):
    """Runs of one system with other dynamics settings form their own section; the named exact
    reference is overlaid in each of them."""
    root, dirs = study
    cfg = _cfg("ehrenfest", name="tully")
    cfg["dynamics"] = {"dt_au": 10.0, "t_final_au": 600.0}
    other = tmp_path / "dt10" / "ehrenfest"
    run_study(parse_config(cfg), other, progress=False)
    aggregate(other)
    path = write_report([*dirs, other], tmp_path / "rep", exact_dirs=[root / "tully" / "exact"])
    html = path.read_text()
    assert html.count('<section id="') == 2
    assert html.count('class="scattering"') == 2 and "not matched" not in html
