"""Swarm fields on molecular (degenerate) swarms: an analytic two-state Hamiltonian of the
interatomic distances, so that the physics is known exactly and the runs are cheap.

* a diatomic swarm in 6 Cartesians varies along the bond only (the raw Cartesian estimator gave
  NaN): in the mass-weighted subspace it must reproduce the 1-D model in the bond length with
  the reduced mass, trajectory by trajectory;
* overall translation + rotation of the whole swarm changes nothing internal (distances, rho)
  and rotates the forces;
* the field forces of a planar triatomic exert no net force and no torque.
"""

from dataclasses import dataclass

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from qhd_aimd.dynamics.integrator import Propagator
from qhd_aimd.electronic.models import DiabaticModel, ModelBackend, TullySimple
from qhd_aimd.prepare.wavepacket import sample_wavepacket

AMU = 1822.888486
TULLY = TullySimple()
COUPLED = ("geometric_ehrenfest", "ehrenfest_qc", "geometric_ehrenfest_qc")


@dataclass(frozen=True)
class DistanceModel(DiabaticModel):
    """Tully's simple avoided crossing in the collective coordinate
    s = sum_k a_k (r_k - r0_k) of interatomic distances r_k (pairs of atoms)."""

    atom_masses: tuple = (7.016 * AMU, 1.008 * AMU)
    pairs: tuple = ((0, 1),)
    coef: tuple = (1.0,)
    r0: tuple = (10.0,)

    @property
    def masses(self):
        return np.repeat(np.asarray(self.atom_masses, float), 3)

    def _s(self, x):
        xyz = np.asarray(x, float).reshape(-1, 3)
        s, ds = 0.0, np.zeros_like(xyz)
        for (i, j), a, r0 in zip(self.pairs, self.coef, self.r0):
            d = xyz[j] - xyz[i]
            r = np.linalg.norm(d)
            s += a * (r - r0)
            ds[j] += a * d / r
            ds[i] -= a * d / r
        return s, ds.ravel()

    def h(self, x):
        return TULLY.h(np.array([self._s(x)[0]]))

    def dh(self, x):
        s, ds = self._s(x)
        return ds[:, None, None] * TULLY.dh(np.array([s]))[0]


@dataclass
class MoleculeModelBackend(ModelBackend):
    symbols: tuple = ("Li", "H")


def _mu(m):
    return m[0] * m[1] / (m[0] + m[1])


def _diatomic_swarm(n=40, seed=1):
    """Bond lengths and relative momenta of a Wigner-like swarm through the crossing."""
    r, p = sample_wavepacket(-4.0, 20.0, 1.0, n, seed)
    return r[:, 0] + 10.0, p[:, 0]


def _to_cartesian(r, p, masses, rot=np.eye(3), shift=np.zeros(3)):
    m1, m2 = masses
    e = rot @ np.array([0.0, 0.0, 1.0])
    x = np.concatenate([-(m2 / (m1 + m2)) * r[:, None] * e + shift, (m1 / (m1 + m2)) * r[:, None] * e + shift], 1)
    mom = np.concatenate([-p[:, None] * e, p[:, None] * e], 1)
    return x, mom


def _run(backend, method, x, p, dt=15.0, n_steps=40, demodulate="auto", **kw):
    prop = Propagator(backend, method, dt, 10, demodulate=demodulate, **kw)
    s = prop.initialize(np.arange(len(x)), x, p, np.zeros(len(x), int))
    frames = [s]
    for _ in range(n_steps):
        s = prop.step(s)
        frames.append(s)
    return frames


def _bond(s):
    xyz = s.positions.reshape(len(s.positions), -1, 3)
    return np.linalg.norm(xyz[:, 1] - xyz[:, 0], axis=1)


@pytest.mark.parametrize("method,demodulate", [(m, True) for m in COUPLED]
                         + [("geometric_ehrenfest_qc", False)])
def test_diatomic_swarm_equals_one_dimensional_model_with_reduced_mass(method, demodulate):
    """In the mass-weighted subspace c = sqrt(mu) (r - <r>) the kernel, the regression, the
    co-moving wavevector and the Table II contractions are those of the 1-D model in r with the
    reduced mass mu: same bond lengths and rho to 1e-8 after 40 steps through the crossing."""
    model = DistanceModel()
    mu = _mu(model.atom_masses)
    r, p = _diatomic_swarm()
    one_d = _run(ModelBackend(TullySimple(mass=mu)), method, (r - 10.0)[:, None], p[:, None],
                 demodulate=demodulate)
    x, mom = _to_cartesian(r, p, model.atom_masses)
    mol = _run(MoleculeModelBackend(model), method, x, mom, demodulate=demodulate)
    for a, b in zip(one_d, mol):
        assert np.all(np.isfinite(b.rho)) and b.active.all() and not b.fields_fallback.any()
        assert np.abs(_bond(b) - 10.0 - a.positions[:, 0]).max() < 1e-8
        assert np.abs(b.rho - a.rho).max() < 1e-8  # same real eigenvector convention
    pop = np.real(mol[-1].rho[:, 1, 1]).mean()
    assert 0.2 < pop < 0.8  # really through the coupling region
    assert np.abs(mol[-1].f_geometric + mol[-1].f_qc).max() > 0 or method == "ehrenfest"


def test_rigidly_moved_swarm_gives_the_same_internal_dynamics():
    model = DistanceModel()
    r, p = _diatomic_swarm(30, seed=4)
    rot = Rotation.from_rotvec([0.4, -0.9, 1.3]).as_matrix()
    ref = _run(MoleculeModelBackend(model), "geometric_ehrenfest_qc", *_to_cartesian(r, p, model.atom_masses))
    mov = _run(MoleculeModelBackend(model), "geometric_ehrenfest_qc",
               *_to_cartesian(r, p, model.atom_masses, rot, np.array([3.0, -2.0, 7.0])))
    for a, b in zip(ref, mov):
        assert np.abs(_bond(a) - _bond(b)).max() < 1e-8
        assert np.abs(a.rho - b.rho).max() < 1e-8
        fa = (a.f_geometric + a.f_qc).reshape(-1, 2, 3)
        fb = (b.f_geometric + b.f_qc).reshape(-1, 2, 3)
        assert np.abs(fa @ rot.T - fb).max() < 1e-8 * max(1.0, np.abs(fa).max())


def test_planar_triatomic_field_forces_have_no_net_force_or_torque():
    masses = (16.0 * AMU, 1.008 * AMU, 1.008 * AMU)
    model = DistanceModel(atom_masses=masses, pairs=((0, 1), (0, 2)), coef=(1.0, 0.5), r0=(5.5, 1.8))
    be = MoleculeModelBackend(model, symbols=("O", "H", "H"))
    x0 = np.array([0.0, 0.0, 0.0, 2.0, 0.0, 0.0, -0.45, 1.75, 0.0])  # planar (xy)
    rng = np.random.default_rng(3)
    n = 40
    # displacements along the two stretches (H atoms), in the plane
    u1, u2 = x0[3:6] / np.linalg.norm(x0[3:6]), x0[6:9] / np.linalg.norm(x0[6:9])
    d1, d2 = rng.normal(0.0, 0.3, n), rng.normal(0.0, 0.1, n)
    pos = np.tile(x0, (n, 1))
    pos[:, 3:6] += d1[:, None] * u1
    pos[:, 6:9] += d2[:, None] * u2
    mom = np.zeros_like(pos)
    mom[:, 3:6] = rng.normal(20.0, 2.0, n)[:, None] * u1
    mom[:, 0:3] = -mom[:, 3:6]
    frames = _run(be, "geometric_ehrenfest_qc", pos, mom, dt=10.0, n_steps=30)
    s = frames[-1]
    assert s.active.all() and np.isfinite(s.rho).all()
    assert np.abs(s.positions.reshape(n, 3, 3)[:, :, 2]).max() < 1e-10  # stays planar
    f = (s.f_geometric + s.f_qc).reshape(n, 3, 3)
    assert np.abs(f).max() > 1e-8  # the fields act
    assert np.abs(f.sum(axis=1)).max() < 1e-10 * np.abs(f).max() * 10
    xyz = s.positions.reshape(n, 3, 3)
    mass = np.asarray(masses)[None, :, None]
    com = (mass * xyz).sum(1, keepdims=True) / mass.sum()
    mean = xyz.mean(0)  # torque about the swarm's mean geometry is zero to first order
    torque = np.cross(mean - com.mean(0), f).sum(axis=1)
    assert np.abs(torque).max() < 1e-8 * np.abs(f).max()


def test_swarm_without_neighbours_falls_back_to_ehrenfest_and_records_it():
    """Each trajectory has fewer neighbours (here: a cutoff of 0.3 bandwidths) than the subspace
    has dimensions: zero fields (an Ehrenfest step), flagged in fields_fallback, never NaN."""
    masses = (16.0 * AMU, 1.008 * AMU, 1.008 * AMU)
    model = DistanceModel(atom_masses=masses, pairs=((0, 1), (0, 2)), coef=(1.0, 0.5), r0=(5.5, 1.8))
    be = MoleculeModelBackend(model, symbols=("O", "H", "H"))
    x0 = np.array([0.0, 0.0, 0.0, 2.0, 0.0, 0.0, -0.45, 1.75, 0.0])
    rng = np.random.default_rng(5)
    pos = x0 + 0.3 * rng.normal(size=(4, 9))  # 3 internal dimensions, 3 neighbours at most
    mom = 3.0 * rng.normal(size=(4, 9))
    coupled = _run(be, "geometric_ehrenfest_qc", pos, mom, dt=10.0, n_steps=5, cutoff=0.3)
    ehr = _run(be, "ehrenfest", pos, mom, dt=10.0, n_steps=5)
    for c, e in zip(coupled, ehr):
        assert c.fields_fallback.all() and c.active.all()
        assert not c.extra.any() and not c.f_geometric.any() and not c.f_qc.any()
        assert np.abs(c.positions - e.positions).max() < 1e-10
        assert np.abs(c.rho - e.rho).max() < 1e-8
