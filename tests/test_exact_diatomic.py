"""Exact diatomic reference (qhd_aimd.exact_diatomic): the pipeline "adiabatic curves + step
overlaps -> diabatic splines -> split operator" against the model's own exact reference
(qhd_aimd.exact) on a Tully model, sign invariance of the dynamics, vibrational states, the
tables and the study level. The curves and their diabatisation: tests/test_diatomic_curves.py."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from qhd_aimd.diatomic_curves import DiatomicCurves, SplineModel, adaptive_grid, diabatize
from qhd_aimd.electronic.models import get_model
from qhd_aimd.exact import make_grid, propagate
from qhd_aimd.exact_diatomic import propagate_diatomic

sys.path.insert(0, str(Path(__file__).resolve().parent))  # diatomic_models
from diatomic_models import Three, model_curves, three_curves  # noqa: E402


@pytest.fixture(scope="module")
def tully():
    return get_model("tully_simple")


def test_tully_through_the_curve_pipeline_matches_model_reference(tully):
    """tully_simple, k = 15, from x = -8: transmission populations of the model's exact
    reference (diabatic H directly) vs curves + overlaps (random signs) -> diabatisation ->
    splines, same Gaussian and grid."""
    curves = model_curves(tully, -50.0, 50.0, dr=0.05, max_angle=0.01,
                           rng=np.random.default_rng(11))
    spl = SplineModel(diabatize(curves), curves.reduced_mass)
    kw = dict(x0=[-8.0], k0=[15.0], sigma=[1.0], state=0, dt=50.0, n_samples=30)
    grid = make_grid(tully, kw["x0"], kw["k0"], kw["sigma"], 0, 1500.0)
    assert grid.axes[0][0] > -50 and grid.axes[0][-1] < 50
    ref = propagate(tully, grid=grid, **kw)
    res = propagate(spl, grid=grid, **kw)
    assert 0.2 < ref.populations[-1, 1] < 0.8
    assert np.max(np.abs(res.populations - ref.populations)) < 1e-4
    assert np.max(np.abs(res.decoherence - ref.decoherence)) < 1e-4


class _Bound:
    """Two crossing diabatic curves (Morse, repulsive exponential) with a Gaussian coupling
    (diatomic-like: a bound lower state, a packet on the upper adiabat reaches the crossing)."""

    def h(self, x):
        r = x[..., 0]
        v0 = 0.1 * (1 - np.exp(-1.0 * (r - 2.0))) ** 2
        v1 = 0.12 * np.exp(-0.8 * (r - 2.0)) + 0.02
        c = 0.004 * np.exp(-((r - 3.0) ** 2))
        return np.stack([np.stack([v0, c], -1), np.stack([c, v1], -1)], -2)


_BOUND = _Bound()


def _bound_curves(mu=2000.0):
    m = _BOUND

    def pair(rs):
        e, v = np.linalg.eigh(m.h(np.asarray(rs)[:, None]))
        return e, np.einsum("kan,kam->knm", v[:-1], v[1:])
    r, e, s, _ = adaptive_grid(pair, 1.0, 9.0, 0.05, 0.02)
    return DiatomicCurves(r, e, s, mu)


def test_random_signs_per_grid_point_change_nothing_in_the_dynamics():
    """A packet on the upper adiabat of a bound diatomic-like model: random signs of the
    states per grid point change neither populations, decoherence nor bond length."""
    curves = _bound_curves()
    ref = propagate_diatomic(curves, 1, 40.0, 10, warn=False)
    rng = np.random.default_rng(7)
    flip = rng.choice([-1.0, 1.0], size=(len(curves.r_bohr), 2))
    s = curves.overlaps * flip[:-1, :, None] * flip[1:, None, :]
    res = propagate_diatomic(DiatomicCurves(curves.r_bohr, curves.energies, s, curves.reduced_mass),
                             1, 40.0, 10, warn=False)
    assert np.max(np.abs(res.populations - ref.populations)) < 1e-12
    assert np.max(np.abs(res.decoherence - ref.decoherence)) < 1e-12
    assert np.nanmax(np.abs(res.bond_mean - ref.bond_mean)) < 1e-10
    assert ref.populations[-1, 0] > 0.05  # something happened



def test_vibrational_ground_state_and_stationarity():
    curves = _bound_curves()
    res = propagate_diatomic(curves, 0, 40.0, 10, warn=False)
    # the vibrational ground state on the lower adiabat is stationary (to the coupling's
    # off-diagonal kinetic terms, tiny here): populations and bond length constant
    assert np.max(np.abs(res.populations[:, 0] - 1.0)) < 1e-5  # measured 1.3e-6
    assert np.max(np.abs(res.bond_mean[:, 0] - res.bond_mean[0, 0])) < 1e-5
    # its energy vs an independent finite-difference (3-point, h = 0.005) diagonalisation of
    # -1/(2 mu) d2/dR2 + E_0(R), E_0 the exact lower eigenvalue of the model
    r = np.arange(1.2, 8.0, 0.005)
    e0 = np.linalg.eigvalsh(_BOUND.h(r[:, None]))[:, 0]
    off = -0.5 / 2000.0 / 0.005**2
    from scipy.linalg import eigh_tridiagonal
    e_fd = eigh_tridiagonal(e0 - 2 * off, np.full(len(r) - 1, off), select="i",
                            select_range=(0, 0))[0][0]
    assert abs(res.vib_energies[0] - e_fd) < 1e-6
    # and the Morse value E_0 = w/2 - w^2/(16 D) (w = a sqrt(2 D / mu)), up to the shift by
    # the coupling to the upper state (~2e-5 here)
    omega = 1.0 * math.sqrt(2 * 0.1 / 2000.0)
    assert abs(res.vib_energies[0] - (omega / 2 - omega**2 / 1.6)) < 5e-5
    assert res.norm.max() - 1 < 1e-10


def test_thermal_mixture_weights():
    curves = _bound_curves()
    res = propagate_diatomic(curves, 0, 40.0, 2, temperature_K=3000.0, warn=False)
    assert len(res.vib_weights) > 2 and abs(res.vib_weights.sum() - 1) < 1e-12
    ratio = res.vib_weights[1] / res.vib_weights[0]
    from qhd_aimd.units import KB_HARTREE_PER_K
    assert abs(ratio - math.exp(-(res.vib_energies[1] - res.vib_energies[0])
                                / (KB_HARTREE_PER_K * 3000.0))) < 1e-12
    # <R> of the mixture: the weighted mean of the members' <R>
    means = [float(r.mean_position_bohr[0]) for r in res.runs]
    assert abs(res.bond_mean[0, 0] - np.dot(res.vib_weights, means)) < 1e-9


def test_tables_and_report_bond_overlay(tmp_path):
    """write_exact_diatomic -> load_exact (exact_bond.csv) -> fig_bond with a diatomic run's
    swarm bond length read from trajectories.h5."""
    import csv

    import h5py

    from qhd_aimd.report.html import Run, Section, fig_bond, load_exact, swarm_bond_length
    from qhd_aimd.exact_diatomic import write_exact_diatomic

    curves = _bound_curves()
    res = propagate_diatomic(curves, 1, 40.0, 5, warn=False)
    res.meta["name"] = "toy"
    write_exact_diatomic(curves, res, tmp_path / "exact")
    with open(tmp_path / "exact" / "exact_bond.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["time_fs", "mean_r_0_bohr", "std_r_0_bohr", "mean_r_1_bohr",
                             "std_r_1_bohr"]
    assert abs(float(rows[0]["mean_r_1_bohr"]) - res.bond_mean[0, 1]) < 1e-9
    ex = load_exact(tmp_path / "exact")
    assert ex.bond is not None and ex.populations["p"].shape == (6, 2)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    pos = np.zeros((6, 3, 6))
    pos[..., 5] = np.array([2.0, 2.2, 2.4])[None, :]  # bonds along z
    with h5py.File(run_dir / "trajectories.h5", "w") as f:
        f["positions_bohr"] = pos
        f["active"] = np.ones((6, 3), bool)
    run = Run(run_dir, "ehrenfest", {"system": {"molecule": {"xyz": "x"}}}, "", {
        "time_fs": res.time_fs}, {}, {})
    b = swarm_bond_length(run)
    assert np.allclose(b["mean"], 2.2) and np.allclose(b["std"], np.std([2.0, 2.2, 2.4]))
    fig = fig_bond(Section("toy", "toy", [run], ex))
    assert len(fig.axes[0].lines) == 4  # swarm mean, exact per state (2), exact total


def test_cli_exact_refuses_polyatomic(tmp_path, capsys):
    import yaml

    from qhd_aimd.cli import main

    repo = __import__("pathlib").Path(__file__).resolve().parents[1]
    cfg = yaml.safe_load((repo / "config" / "studies" / "lih_exact.yaml").read_text())
    cfg["system"]["molecule"]["xyz"] = str(repo / "config" / "molecules" / "ethylene.xyz")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["exact", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "system.molecule.xyz has 6 atoms" in err[0]


def test_exact_scan_range_from_config(tmp_path):
    """exact_scan.r_min_bohr / r_max_bohr set the scanned range (defaults: 0.5 R_xyz and
    R_xyz + 12 bohr); a range that misses the xyz bond length (where the scan starts) is a
    ConfigError naming exact_scan."""
    from qhd_aimd.config import parse_config
    from qhd_aimd.errors import ConfigError
    from qhd_aimd.exact_diatomic import scan_range
    from qhd_aimd.units import ANGSTROM_BOHR

    (tmp_path / "m.xyz").write_text("2\n\nLi 0 0 0\nF 0 0 1.564\n")
    base = {"system": {"molecule": {"xyz": str(tmp_path / "m.xyz")}},
            "initial": {"n_trajectories": 2, "state": 1},
            "dynamics": {"dt_fs": 0.5, "t_final_fs": 5}}
    r0 = 1.564 * ANGSTROM_BOHR
    assert np.allclose(scan_range(parse_config(base)), (0.5 * r0, r0 + 12.0))
    cfg = parse_config({**base, "exact_scan": {"r_min_bohr": 1.8, "r_max_bohr": 24.0}})
    assert scan_range(cfg) == (1.8, 24.0)
    cfg = parse_config({**base, "exact_scan": {"r_max_bohr": 16.0}})
    assert scan_range(cfg) == (0.5 * r0, 16.0)
    with pytest.raises(ConfigError, match="exact_scan: the range .* must contain"):
        scan_range(parse_config({**base, "exact_scan": {"r_min_bohr": 3.5}}))
    # cached curves (exact_curves.h5) are reused only for the same method tag: the selected
    # active orbitals are part of it
    from qhd_aimd.exact_diatomic import _method_tag

    sel = parse_config({**base, "system": {**base["system"],
                                           "electronic": {"active_orbitals": [4, 7]}}})
    assert _method_tag(sel) != _method_tag(cfg) and "[4, 7]" in _method_tag(sel)


# ----------------------------------------------------------------------------- N > 2 states


def test_three_state_propagation_matches_model_reference_and_writes_pairs(tmp_path):
    """The 3-state pipeline (curves + overlaps with random signs -> diabatic splines -> split
    operator) vs the model's own diabatic H on the same grid and initial state; the tables
    carry p0..p2, d_0_1, d_0_2, d_1_2 and mean_r_0..2."""
    from qhd_aimd.exact_diatomic import vibrational_states, write_exact_diatomic

    m = Three()
    curves = three_curves(rng=np.random.default_rng(2), dr=0.02, max_angle=0.005)
    res = propagate_diatomic(curves, 2, 40.0, 25, warn=False)
    assert res.populations.shape == (26, 3) and res.coherence.shape == (26, 3)
    assert np.array_equal(res.pairs, [[0, 1], [0, 2], [1, 2]])
    assert np.array_equal(res.decoherence, res.coherence[:, 0])  # D_01 kept for N = 2 callers
    assert abs(res.populations[-1].sum() - 1) < 1e-10
    assert res.populations[:, :2].max() > 0.02  # the ionic-like state 2 leaks into 0 and 1
    # the same dynamics on the model's exact diabatic H (no diabatisation), same grid and psi0
    spl = SplineModel(diabatize(curves), m.mass)
    lo, hi = res.meta["grid_bounds_bohr"]
    g = res.meta["grid_points"]
    from qhd_aimd.exact import Grid, _initial_electronic
    ax = np.linspace(lo, hi, g)
    grid = Grid(axes=[ax], inner=[(lo, hi)], p_max=[res.meta["p_max_au"]], strict=[False])
    _, chi = vibrational_states(spl, grid, 1)
    r_eq = res.meta["r_eq_bohr"]
    for model in (spl, m):
        _, vecs = np.linalg.eigh(model.h(ax[:, None]))
        ref = vecs[int(np.argmax(np.abs(chi[0])))][:, 2]
        psi0 = (_initial_electronic(vecs, ref, 2) * chi[0][:, None]).T.astype(complex)
        out = propagate(model, [r_eq], [0.0], [1.0], 2, 40.0, 25, grid=grid, warn=False,
                        psi0=psi0)
        if model is spl:
            p_spl = out.populations
        else:
            p_mod = out.populations
    assert np.max(np.abs(p_spl - res.populations)) < 1e-10
    assert np.max(np.abs(p_spl - p_mod)) < 2e-3
    write_exact_diatomic(curves, res, tmp_path)
    heads = {f: (tmp_path / f).read_text().splitlines()[0] for f in
             ("exact_populations.csv", "exact_coherence.csv", "exact_bond.csv", "exact_curves.csv")}
    assert heads["exact_populations.csv"] == "time_fs,p0,p1,p2"
    assert heads["exact_coherence.csv"] == "time_fs,d_0_1,d_0_2,d_1_2"
    assert heads["exact_bond.csv"].endswith("mean_r_2_bohr,std_r_2_bohr")
    assert heads["exact_curves.csv"] == ("r_bohr,e0_hartree,e1_hartree,e2_hartree,h00_hartree,"
                                         "h01_hartree,h02_hartree,h11_hartree,h12_hartree,"
                                         "h22_hartree,abs_d01_per_bohr,abs_d02_per_bohr,"
                                         "abs_d12_per_bohr")
    # the report reads the N-state tables: populations, every D_nm, <R> on each adiabat
    from qhd_aimd.report.html import Section, fig_bond, load_exact
    ex = load_exact(tmp_path)
    assert ex.populations["p"].shape == (26, 3)
    assert [k for k in ex.coherence if k.startswith("d_")] == ["d_0_1", "d_0_2", "d_1_2"]
    fig = fig_bond(Section("three", "three", [], ex))
    assert len(fig.axes[0].lines) == 4  # exact <R> per state (3) and in total


def test_curve_names_still_importable_from_exact_diatomic():
    """The curves and diabatisation moved to qhd_aimd.diatomic_curves; qhd_aimd.exact_diatomic
    still exports them (the CLI, docs/validation scripts and older callers import them there)."""
    import qhd_aimd.diatomic_curves as dc
    import qhd_aimd.exact_diatomic as ed

    moved = [n for n in ed.__all__ if hasattr(dc, n)]
    assert len(moved) == 11
    assert all(getattr(ed, n) is getattr(dc, n) for n in moved + ["DR_BOHR", "MAX_ANGLE"])
