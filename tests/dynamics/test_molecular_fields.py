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
from thread_ranks import run_on_thread_ranks

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


# ------------------------------------------------------------------ polyatomic, default fields
CH2NH2 = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 2.42], [0.0, 1.78, -1.04], [0.0, -1.78, -1.04],
                   [0.0, 1.64, 3.46], [0.0, -1.64, 3.46]]).ravel()  # planar, bohr
CH2NH2_MASSES = (12.0 * AMU, 14.003 * AMU, 1.008 * AMU, 1.008 * AMU, 1.008 * AMU, 1.008 * AMU)
DEFAULT_FIELDS = dict(coherence_gradient="energy_consistent", quantum_momentum="pair_centred",
                      energy_correction="rescale")


def _rigid_basis_at(x0, masses):
    from qhd_aimd.dynamics.coordinates import rigid_basis
    return rigid_basis(x0, np.repeat(np.asarray(masses), 3))


def _polyatomic_swarm(n, planar, seed=7):
    """n Wigner-like samples of a 6-atom molecule: Gaussian mass-weighted internal displacements
    (12-D, or the 9 in-plane ones with ``planar``), momenta likewise; (positions, momenta)."""
    m = np.repeat(np.asarray(CH2NH2_MASSES), 3)
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, 18)) * 0.5
    pq = rng.normal(size=(n, 18)) * 3.0
    if planar:  # no out-of-plane (x) spread at all
        q.reshape(n, 6, 3)[:, :, 0] = 0.0
        pq.reshape(n, 6, 3)[:, :, 0] = 0.0
    rig = _rigid_basis_at(CH2NH2, CH2NH2_MASSES)
    q -= (q @ rig) @ rig.T
    pq -= (pq @ rig) @ rig.T
    return CH2NH2 + q / np.sqrt(m), pq * np.sqrt(m) / 100.0


def _mixed_swarm(prop, x, p):
    """Swarm at t = 0 with a mixed rho and non-zero adiabatic momenta (the state after a passage
    through a crossing), fields evaluated."""
    n = len(x)
    s = prop.initialize(np.arange(n), x, p, np.zeros(n, int))
    rng = np.random.default_rng(11)
    a = rng.uniform(0.3, 0.7, n)
    ph = np.exp(1j * rng.uniform(0, 2 * np.pi, n))
    c = np.stack([np.sqrt(a), np.sqrt(1 - a) * ph], 1)
    s.rho = np.einsum("tn,tm->tnm", c, c.conj())
    return s


@pytest.mark.parametrize("planar", [False, True])
@pytest.mark.parametrize("method", ["ehrenfest_qc", "geometric_ehrenfest_qc"])
def test_polyatomic_swarm_fields_are_finite_invariant_and_never_fall_back(method, planar):
    """48 trajectories of a 6-atom molecule spread in 12 (or, planar, 9) internal dimensions: no
    trajectory has the neighbours of a local kernel (P = min(rank, 48 // 4) = 12 or 9), so the
    whole-swarm Gaussian / linear-fit tier gives the fields. They are finite and non-zero, no
    trajectory falls back, and an overall rotation + translation of the swarm (positions,
    momenta, adiabatic momenta) leaves the generator unchanged and rotates the forces."""
    model = DistanceModel(atom_masses=CH2NH2_MASSES, pairs=((0, 1), (0, 2), (1, 4), (2, 3)),
                          coef=(1.0, 0.6, -0.4, 0.3), r0=(2.42, 2.06, 2.06, 3.56))
    symbols = ("C", "N", "H", "H", "H", "H")
    x, p = _polyatomic_swarm(48, planar)
    rot = Rotation.from_rotvec([0.7, -0.2, 1.1]).as_matrix()
    shift = np.array([1.5, -3.0, 0.4])

    def moved(a, translate):
        out = a.reshape(a.shape[:-1] + (6, 3)) @ rot.T
        return (out + (shift if translate else 0.0)).reshape(a.shape)

    res = []
    for xs, ps, tr in ((x, p, None), (moved(x, True), moved(p, False), True)):
        prop = Propagator(MoleculeModelBackend(model, symbols=symbols), method, 10.0, 10, **DEFAULT_FIELDS)
        s = _mixed_swarm(prop, xs, ps)
        f = np.random.default_rng(5).normal(size=s.adiabatic_momenta.shape).reshape(48, 2, 6, 3) * 2.0
        f = (f - f.mean(axis=2, keepdims=True)).reshape(48, 2, 18)  # no net force, as -int dE dt
        s.adiabatic_momenta = f if tr is None else moved(f, False)
        prop._update_fields(s)
        res.append(s)
    ref, mov = res
    for s in res:
        assert not s.fields_fallback.any()
        assert np.isfinite(s.extra).all() and np.isfinite(s.f_qc).all() and np.isfinite(s.f_geometric).all()
        assert np.abs(s.f_qc).max() > 1e-6 and np.abs(s.extra).max() > 1e-8
        if method.startswith("geometric"):
            assert np.abs(s.f_geometric).max() > 1e-8
    scale = np.abs(ref.extra).max()
    np.testing.assert_allclose(mov.extra, ref.extra, atol=1e-9 * scale)
    for name in ("f_qc", "f_geometric"):
        a, b = getattr(ref, name), getattr(mov, name)
        np.testing.assert_allclose(b, moved(a, False), atol=1e-9 * max(np.abs(a).max(), 1e-300))
    # the field forces exert no net force on the molecule
    tot = (ref.f_qc + ref.f_geometric).reshape(48, 6, 3).sum(axis=1)
    assert np.abs(tot).max() < 1e-9 * np.abs(ref.f_qc + ref.f_geometric).max()


def test_polyatomic_subspace_dimension_follows_the_trajectory_count():
    from qhd_aimd.dynamics.coordinates import max_subspace_dim, swarm_frame
    m = np.repeat(np.asarray(CH2NH2_MASSES), 3)
    for n, planar, want in ((48, False, 12), (48, True, 9), (24, False, 6), (8, True, 2)):
        x, _ = _polyatomic_swarm(n, planar)
        fr = swarm_frame(x, m, True, max_dim=max_subspace_dim(n))
        assert fr.dim == want
        np.testing.assert_allclose(fr.jacobian.T @ (fr.jacobian / m[:, None]), np.eye(want), atol=1e-10)


@pytest.mark.parametrize("method", ["ehrenfest_qc", "geometric_ehrenfest_qc"])
def test_polyatomic_fields_are_identical_on_one_and_two_ranks(method):
    """The whole-swarm tier and the sparse kernel use the gathered swarm in id order: a 48-
    trajectory polyatomic swarm split over 2 ranks (threads) gets bitwise the fields of 1 rank."""
    from qhd_aimd.swarm.comm import local_ids
    model = DistanceModel(atom_masses=CH2NH2_MASSES, pairs=((0, 1), (0, 2), (1, 4), (2, 3)),
                          coef=(1.0, 0.6, -0.4, 0.3), r0=(2.42, 2.06, 2.06, 3.56))
    be = MoleculeModelBackend(model, symbols=("C", "N", "H", "H", "H", "H"))
    x, p = _polyatomic_swarm(48, planar=False)
    ref = _mixed_swarm(Propagator(be, method, 10.0, 10, **DEFAULT_FIELDS), x, p)
    f = np.random.default_rng(5).normal(size=ref.adiabatic_momenta.shape).reshape(48, 2, 6, 3)
    ref.adiabatic_momenta = (f - f.mean(axis=2, keepdims=True)).reshape(48, 2, 18)
    rho, fam = ref.rho.copy(), ref.adiabatic_momenta.copy()
    Propagator(be, method, 10.0, 10, **DEFAULT_FIELDS)._update_fields(ref)
    def rank(r, comm):
        ids = np.array(local_ids(48, r, 2))
        prop = Propagator(be, method, 10.0, 10, comm=comm, **DEFAULT_FIELDS)
        s = prop.initialize(ids, x[ids], p[ids], np.zeros(len(ids), int))
        s.rho, s.adiabatic_momenta = rho[ids].copy(), fam[ids].copy()
        prop._update_fields(s)
        return ids, s

    out = run_on_thread_ranks(2, rank)
    for ids, s in out:
        assert len(ids) == 24
        for name in ("extra", "f_qc", "f_geometric", "fields_fallback"):
            np.testing.assert_array_equal(getattr(s, name), getattr(ref, name)[ids])
