"""The exact-fields oracle of docs/validation/oracle_fields_grid.py (a validation script, not
part of the package): its fields and its hook into ``Propagator``."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "validation"))
import oracle_fields_grid as ofg  # noqa: E402

from qhd_aimd.dynamics import fields as fl  # noqa: E402
from qhd_aimd.electronic.models import ModelBackend, get_model  # noqa: E402
from qhd_aimd.exact import make_grid  # noqa: E402
from qhd_aimd.prepare.wavepacket import sample_wavepacket  # noqa: E402


def _source(psi_fn, x0=-10.0, k=10.0, width=2.0):
    model = get_model("tully_simple")
    grid = make_grid(model, [x0], [k], [width], 0, 100.0)
    src = ofg.ExactFields(grid.axes[0], model.mass)
    src.set(psi_fn(grid.axes[0]))
    return src, model


def _two_packets(x, x0=-10.0, k=10.0, s=2.0):
    return np.stack([np.exp(-((x - x0) ** 2) / (4 * s**2) + 1j * k * x),
                     0.3 * np.exp(-((x - x0 - 1) ** 2) / (4 * s**2) + 1j * (k - 3) * x)])


def test_exact_fields_are_consistent_derivatives_and_hermitian():
    src, _ = _source(_two_packets)
    x = np.linspace(-14.0, -6.0, 37)
    f, h = src.at(x), 1e-4
    fp, fm = src.at(x + h), src.at(x - h)
    assert np.abs(f["drho"]).max() > 0.5
    assert np.allclose(f["drho"], (fp["rho"] - fm["rho"]) / (2 * h), atol=1e-6)
    assert np.allclose(f["d2rho"], (fp["drho"] - fm["drho"]) / (2 * h), atol=1e-5)
    assert np.allclose(f["dg"], (fp["g"] - fm["g"]) / (2 * h), atol=1e-6)
    for key in ("drho", "d2rho"):
        assert np.allclose(f[key], np.swapaxes(f[key].conj(), 1, 2), atol=1e-12)
    assert np.allclose(np.trace(f["drho"], axis1=1, axis2=2), 0.0, atol=1e-12)


def test_gaussian_log_density_and_quantum_force_match_analytic_and_kernel_estimate():
    x0, s = -10.0, 2.0
    src, model = _source(lambda x: np.stack([np.exp(-((x - x0) ** 2) / (4 * s**2) + 10j * x),
                                             0 * x]))
    pos, _ = sample_wavepacket(x0, 10.0, s, 100, 1)
    f = src.at(pos[:, 0])
    assert np.allclose(f["dlnn"], -(pos[:, 0] - x0) / s**2, atol=1e-9)
    assert np.allclose(f["fq"], (pos[:, 0] - x0) / (4 * model.mass * s**4), atol=1e-12)
    h = fl.bandwidth(pos)
    kern = fl.grad_log_density_at(pos, fl.kernel_matrix(pos, h), h, np.arange(100))[:, 0]
    assert np.corrcoef(kern, f["dlnn"])[0, 1] > 0.95


def test_fields_vanish_where_the_density_is_negligible_or_off_the_grid():
    src, _ = _source(_two_packets)
    f = src.at(np.array([src.axis[-3], src.axis[-1] + 50.0]))
    assert not f["ok"].any() and np.all(f["drho"] == 0) and np.all(f["dlnn"] == 0)


def _final(rows, label):
    return next(r["state"] for r in rows if r["method"] == ofg.LABEL[label])


pytestmark = pytest.mark.filterwarnings("ignore:exact. probability:RuntimeWarning")


def test_ehrenfest_through_the_oracle_hook_is_ehrenfest():
    rows = ofg.run_case("tully_simple", 10.0, -4.0, ["ehrenfest", "ehrenfest_oracle"], 10, 4.0,
                        width=2.0, t_final=200.0)
    a, b = _final(rows, "ehrenfest"), _final(rows, "ehrenfest_oracle")
    assert np.array_equal(a.positions, b.positions) and np.array_equal(a.rho, b.rho)


def test_oracle_is_gauge_invariant_and_acts():
    """Random eigenvector phases at every call: same trajectories (fails if d rho is not carried
    to each trajectory's own adiabatic basis); and the fields change the result vs Ehrenfest."""
    kw = dict(width=2.0, t_final=240.0)
    model = get_model("tully_simple")
    plain = ofg.run_case("tully_simple", 10.0, -4.0, ["ehrenfest", "gqc_exact"], 10, 4.0, **kw)
    phased = ofg.run_case("tully_simple", 10.0, -4.0, ["gqc_exact"], 10, 4.0,
                          backend=ModelBackend(model, random_phases=True), **kw)
    a, b = _final(plain, "gqc_exact"), _final(phased, "gqc_exact")
    assert np.allclose(a.positions, b.positions, atol=1e-8)
    assert np.allclose(a.momenta, b.momenta, atol=1e-8)
    pa, pb = (np.real(np.diagonal(s.rho, axis1=1, axis2=2)) for s in (a, b))
    assert np.allclose(pa, pb, atol=1e-8)
    assert np.allclose(np.abs(a.rho) ** 2, np.abs(b.rho) ** 2, atol=1e-8)
    e = _final(plain, "ehrenfest")
    assert np.abs(np.abs(e.rho[:, 0, 1]) ** 2 - np.abs(a.rho[:, 0, 1]) ** 2).max() > 1e-3
