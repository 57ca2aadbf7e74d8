"""Lock-step velocity-Verlet propagation of a trajectory swarm with rho_el.

One step for every (active) trajectory, all of them in lock-step:

1. half kick p += dt/2 F(t) and drift x += dt p / M;
2. one electronic-structure call at the new geometry (warm-started from the previous step) and
   the step overlap S = <u(x_t)|u(x_t+dt)>;
3. rho propagated over the step in the locally diabatic frame of x_t with H interpolated and the
   method's extra generator X (from the swarm fields at t), then carried to the new basis;
4. mean-field force -Tr(rho dH) at t+dt, swarm fields at t+dt (coupled methods: neighbours'
   positions and rho, exchanged over MPI) giving the geometric / quantum-coupling forces and the
   generator for the next step; second half kick.

The fields at t+dt are reused by the next step, so each step costs one backend ``compute``, one
step ``overlap`` and one ``force`` per trajectory (plus neighbour overlaps for coupled methods).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from qhd_aimd.dynamics import fields as fl
from qhd_aimd.dynamics import fssh
from qhd_aimd.dynamics.density import liouville_step, pure_state, to_frame, unitarize
from qhd_aimd.dynamics.hopping import HoppingOptions
from qhd_aimd.dynamics.methods import METHODS, extra_forces, extra_generator
from qhd_aimd.electronic.base import overlaps
from qhd_aimd.errors import QhdError
from qhd_aimd.swarm.comm import SerialComm


@dataclass
class Swarm:
    """The trajectories this rank owns, at one time. Arrays have a leading axis over them.

    positions (L, D) bohr; momenta (L, D) a.u.; rho (L, N, N) in each trajectory's current
    adiabatic basis; elec list of ``ElectronicData``; forces (L, D) hartree/bohr split into
    mean-field, geometric and quantum-coupling parts (f_qc includes the quantum force of Eq. 68
    when ``Propagator.quantum_force``); extra (L, N, N) hartree: the method's
    generator X - H_el from the fields at this time; active (L,) bool; failures: id -> reason.

    Surface hopping (``fssh``, ``fssh_qc``; else None): active_state (L,) int, the adiabatic
    state the nuclei move on (f_meanfield is then -dE_a/dx and f_geometric the optional Berry
    force); hop_from, hop_to (L,) int, the hop attempted in the last step (-1: none) and
    hop_frustrated (L,) bool (``qhd_aimd.dynamics.fssh``).
    """

    ids: np.ndarray
    step: int
    time_au: float
    positions: np.ndarray
    momenta: np.ndarray
    rho: np.ndarray
    elec: list
    f_meanfield: np.ndarray
    f_geometric: np.ndarray
    f_qc: np.ndarray
    extra: np.ndarray
    active: np.ndarray
    failures: dict = field(default_factory=dict)
    active_state: np.ndarray | None = None
    hop_from: np.ndarray | None = None
    hop_to: np.ndarray | None = None
    hop_frustrated: np.ndarray | None = None

    @property
    def force(self) -> np.ndarray:
        return self.f_meanfield + self.f_geometric + self.f_qc

    def energies(self, masses):
        """(e_kin, e_pot) per trajectory, hartree: sum p^2/2M and Tr(rho H_el)."""
        e_kin = 0.5 * np.einsum("tj,tj,j->t", self.momenta, self.momenta, 1.0 / masses)
        e_adia = np.stack([e.energies for e in self.elec])
        e_pot = np.real(np.einsum("tnn,tn->t", self.rho, e_adia))
        if self.active_state is not None:  # surface hopping: the active state's energy
            e_pot = e_adia[np.arange(len(e_adia)), self.active_state] if len(e_adia) else e_pot
        return e_kin, e_pot


@dataclass
class Propagator:
    """Options of the propagation (no state): backend, method, time step and swarm estimators.

    Parameters
    ----------
    backend : ElectronicBackend
    method : str, one of ``METHODS``
    dt : a.u. of time
    n_substeps : electronic sub-steps per nuclear step
    bandwidth_factor, bandwidth_bohr, ridge, cutoff, demodulate : swarm estimator options
        (``fields``; ``demodulate`` regresses coherences in their co-moving phase frame, see
        ``fields.coherence_wavevector``)
    quantum_force : add the quantum force of Eq. 68 (``fields.quantum_force``), estimated from
        the swarm and recorded with the quantum-coupling force (``f_qc``)
    comm : communicator (``SerialComm`` or mpi4py)
    hopping : ``hopping.HoppingOptions`` of the surface-hopping methods (default options if None)
    seed : seed of the per-(trajectory, step) hop random numbers (``hopping.hop_uniform``)
    """

    backend: object
    method: str
    dt: float
    n_substeps: int = 20
    bandwidth_factor: float = 1.0
    bandwidth_bohr: object = None
    ridge: float = 1e-10
    cutoff: float = 4.0
    comm: object = field(default_factory=SerialComm)
    demodulate: bool = True
    quantum_force: bool = False
    hopping: object = None
    seed: int = 0

    def __post_init__(self):
        self._method = METHODS[self.method]
        self.masses = np.asarray(self.backend.masses, float)
        if self.hopping is None:
            self.hopping = HoppingOptions()

    # ------------------------------------------------------------------ setup
    def initialize(self, ids, positions, momenta, states) -> Swarm:
        """Swarm at t = 0 with rho = |state><state| in the solver's basis at each position."""
        ids = np.asarray(ids, int)
        n = self.backend.n_states
        elec, active, failures = [], np.ones(len(ids), bool), {}
        for i, x in enumerate(positions):
            try:
                elec.append(self.backend.compute(np.asarray(x, float)))
            except QhdError as exc:
                raise QhdError(f"trajectory {ids[i]}: electronic structure failed at t=0: {exc}") from exc
        rho = np.stack([pure_state(n, int(s)) for s in states]) if len(ids) else np.zeros((0, n, n), complex)
        d = self.masses.shape[0]
        swarm = Swarm(ids, 0, 0.0, np.array(positions, float).reshape(-1, d),
                      np.array(momenta, float).reshape(-1, d), rho, elec,
                      np.zeros((len(ids), d)), np.zeros((len(ids), d)), np.zeros((len(ids), d)),
                      np.zeros_like(rho), active, failures)
        if self._method.hopping:
            fssh.start(swarm, states)
        swarm.f_meanfield = self._meanfield(swarm)
        if self._method.hopping:
            fssh.add_berry_force(self, swarm, swarm.momenta)
        self._update_fields(swarm)
        return swarm

    # ------------------------------------------------------------------ step
    def step(self, s: Swarm) -> Swarm:
        """Advance the swarm by dt (collective: every rank must call it)."""
        if self._method.hopping:
            return fssh.step(self, s)
        dt = self.dt
        pos, mom, elec, active, failures = self._drift(s)
        act = np.flatnonzero(active)
        rho = s.rho.copy()
        if len(act):
            u = unitarize(np.stack([self.backend.overlap(s.elec[i], elec[i]) for i in act]))
            e_old = np.stack([s.elec[i].energies for i in act])
            e_new = np.stack([elec[i].energies for i in act])
            extra = s.extra[act] if self._method.coupled else None
            rho[act] = liouville_step(s.rho[act], e_old, e_new, u, dt, self.n_substeps, extra)
        new = replace(s, step=s.step + 1, time_au=s.time_au + dt, positions=pos, momenta=mom,
                      rho=rho, elec=elec, active=active, failures=failures)
        new.f_meanfield = self._meanfield(new)
        self._update_fields(new)
        new.momenta[act] += 0.5 * dt * new.force[act]
        return new

    def _drift(self, s: Swarm):
        """Half kick and drift of the active trajectories, then one backend call each:
        (positions, momenta, elec, active, failures) at t + dt (momenta at t + dt/2)."""
        dt, act = self.dt, np.flatnonzero(s.active)
        pos, mom = s.positions.copy(), s.momenta.copy()
        mom[act] += 0.5 * dt * s.force[act]
        pos[act] += dt * mom[act] / self.masses
        elec, failures, active = list(s.elec), dict(s.failures), s.active.copy()
        for i in act:
            try:
                elec[i] = self.backend.compute(pos[i], reference=s.elec[i])
            except QhdError as exc:
                active[i] = False
                failures[int(s.ids[i])] = f"t={s.time_au + dt:.3f} au: {exc}"
                pos[i], mom[i] = s.positions[i], s.momenta[i]
        return pos, mom, elec, active, failures

    def _meanfield(self, s: Swarm) -> np.ndarray:
        """-Tr(rho dH/dx) per active trajectory; surface hopping: -dE_a/dx (rho = P_a)."""
        f = s.f_meanfield.copy()
        n = s.rho.shape[-1]
        for i in np.flatnonzero(s.active):
            r = s.rho[i] if s.active_state is None else pure_state(n, int(s.active_state[i]))
            f[i] = self.backend.force(s.elec[i], r)
        return f

    # ------------------------------------------------------------------ swarm fields
    def _update_fields(self, s: Swarm) -> None:
        """Geometric / quantum-coupling forces and generator at the swarm's current time."""
        if not self._method.coupled:
            return
        g = self.gather(s)
        act_ids = [i for i in sorted(g) if g[i][3]]
        pos = np.stack([g[i][0] for i in act_ids])
        h = fl.bandwidth(pos, self.bandwidth_factor, self.bandwidth_bohr)
        w = fl.kernel_matrix(pos, h, self.cutoff)
        dlnn = fl.grad_log_density(pos, w, h)
        where = {tid: k for k, tid in enumerate(act_ids)}
        inv_mass = 1.0 / self.masses
        d = pos.shape[1]
        quadratic = self._method.geometric

        local = list(np.flatnonzero(s.active))
        frames = self._frames(g, act_ids, w, [where[int(s.ids[i])] for i in local])

        def rho_in_frame(a, nbrs):
            own = g[act_ids[a]]
            if len(nbrs) == 0:
                return np.zeros((0,) + own[1].shape, complex), own[1]
            others = [g[act_ids[b]] for b in nbrs]
            u_ab = np.stack([frames[(a, b)] if a < b else frames[(b, a)].conj().T for b in nbrs])
            out = to_frame(np.stack([o[1] for o in others]), u_ab), own[1]
            if self.demodulate:  # and the slow parts (populations, slaved coherences)
                out += to_frame(np.stack([o[4] for o in others]), u_ab), own[4]
            return out

        drho = np.zeros((len(local), d) + s.rho.shape[1:], complex)
        d2rho = np.zeros_like(drho)
        gm = np.zeros((len(local), d, d))
        for n, i in enumerate(local):
            a = where[int(s.ids[i])]
            kappa = None
            if self.demodulate:
                kappa = fl.coherence_wavevector(s.elec[i].energies, s.momenta[i] / self.masses)
            drho[n], d2rho[n] = fl.rho_derivatives(a, pos, w, h, rho_in_frame, self.ridge, quadratic, kappa)
            gm[n] = fl.metric(s.rho[i], drho[n])
        dg = np.zeros((len(local), d, d, d))
        if self._method.geometric:
            g_all = self.comm.allgather({int(s.ids[i]): gm[n] for n, i in enumerate(local)})
            g_all = {k: v for part in g_all for k, v in part.items()}
            g_arr = np.stack([g_all[t] for t in act_ids])
            for n, i in enumerate(local):
                dg[n] = fl.metric_gradient(where[int(s.ids[i])], pos, w, h, g_arr, self.ridge)
        dl = np.stack([dlnn[where[int(s.ids[i])]] for i in local]) if local else np.zeros((0, d))
        s.extra = np.zeros_like(s.rho)
        if not self._method.hopping:
            s.f_geometric = np.zeros_like(s.positions)
            s.f_qc = np.zeros_like(s.positions)
        if local:
            s.extra[local] = extra_generator(self._method, inv_mass, dl, drho, d2rho)
            if self._method.hopping:  # fssh_qc: X corrects the hop rate only; forces are fssh's
                return
            s.f_geometric[local], s.f_qc[local] = extra_forces(self._method, inv_mass, dl, gm, dg)
            if self.quantum_force:
                for i in local:
                    s.f_qc[i] += fl.quantum_force(where[int(s.ids[i])], pos, w, h, dlnn, inv_mass,
                                                  self.ridge)

    def _frames(self, g, act_ids, w, mine) -> dict:
        """{(a, b): polar(<u(a)|u(b)>)} for every neighbour pair a < b (indices into ``act_ids``)
        that touches a trajectory of this rank. Each pair is computed once, by the rank that owns
        a, batched over a's neighbours b > a, and shared: the other member uses polar(S)^+ =
        polar(S^+). The same calls on any number of ranks, so results do not depend on it."""
        frames = {}
        for a in mine:
            nbrs = [b for b in np.flatnonzero(w[a]) if b > a]
            if nbrs:
                u = unitarize(overlaps(self.backend, g[act_ids[a]][2], [g[act_ids[b]][2] for b in nbrs]))
                frames.update(((a, int(b)), ub) for b, ub in zip(nbrs, u))
        if getattr(self.comm, "size", 1) > 1:
            for part in self.comm.allgather(frames):
                frames.update(part)
        return frames

    def gather(self, s: Swarm) -> dict:
        """{trajectory id: (position, rho, electronic data, active, slow part of rho or None)}
        over all ranks; the electronic data reduced to what overlaps need
        (``ElectronicData.for_overlaps``); the slow part (``fields.slow_part``) with
        ``demodulate``."""
        def slow(i):
            e = s.elec[i]
            return fl.slow_part(s.rho[i], e.energies, s.momenta[i] / self.masses, e.dhdx) \
                if self.demodulate else None

        mine = {int(t): (s.positions[i], s.rho[i], s.elec[i].for_overlaps(), bool(s.active[i]), slow(i))
                for i, t in enumerate(s.ids)}
        out = {}
        for part in self.comm.allgather(mine):
            out.update(part)
        return out
