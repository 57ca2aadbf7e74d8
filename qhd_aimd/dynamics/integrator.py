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

from qhd_aimd.dynamics import decoherence as dc
from qhd_aimd.dynamics import fields as fl
from qhd_aimd.dynamics.density import liouville_step, pure_state, to_frame, unitarize
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
    generator X - H_el from the fields at this time; active (L,) bool; failures: id -> reason;
    adiabatic_momenta (L, N, D) a.u.: f_n = -int dE_n dt along each trajectory
    (``decoherence``; zeros unless ``Propagator.coherence_gradient == "accumulated"``).
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
    adiabatic_momenta: np.ndarray | None = None

    def __post_init__(self):
        if self.adiabatic_momenta is None:
            self.adiabatic_momenta = np.zeros(self.rho.shape[:2] + self.positions.shape[1:])

    @property
    def force(self) -> np.ndarray:
        return self.f_meanfield + self.f_geometric + self.f_qc

    def energies(self, masses):
        """(e_kin, e_pot) per trajectory, hartree: sum p^2/2M and Tr(rho H_el)."""
        e_kin = 0.5 * np.einsum("tj,tj,j->t", self.momenta, self.momenta, 1.0 / masses)
        e_adia = np.stack([e.energies for e in self.elec])
        e_pot = np.real(np.einsum("tnn,tn->t", self.rho, e_adia))
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
    coherence_gradient : "regression" (neighbours' rho, ``fields``), "accumulated" (phase
        gradient from each trajectory's adiabatic momenta, ``decoherence``) or
        "energy_consistent" (the same with their component along the flow from energy
        conservation, ``decoherence.energy_consistent``); ``fields.coherence_gradient``
    quantum_momentum : "kernel" (-1/2 d ln n) or "pair_centred" (``decoherence``; used with
        the accumulated gradient; ``fields.quantum_momentum``)
    energy_correction : "rescale" (coupled methods: each trajectory's momentum is rescaled
        after every step so that E_kin + Tr(rho H_el) keeps its value) or "none"
        (``dynamics.energy_correction``)
    comm : communicator (``SerialComm`` or mpi4py)
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
    coherence_gradient: str = "regression"
    quantum_momentum: str = "pair_centred"
    energy_correction: str = "none"

    def __post_init__(self):
        self._method = METHODS[self.method]
        self.masses = np.asarray(self.backend.masses, float)
        for key, allowed in (("coherence_gradient", ("regression", "accumulated", "energy_consistent")),
                             ("quantum_momentum", ("kernel", "pair_centred")),
                             ("energy_correction", ("rescale", "none"))):
            if getattr(self, key) not in allowed:
                raise QhdError(f"{key} must be one of {allowed}, got {getattr(self, key)!r}")
        self._accumulated = self._method.coupled and self.coherence_gradient != "regression"

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
        swarm.f_meanfield = self._meanfield(swarm)
        self._update_fields(swarm)
        return swarm

    # ------------------------------------------------------------------ step
    def step(self, s: Swarm) -> Swarm:
        """Advance the swarm by dt (collective: every rank must call it)."""
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
        if self._accumulated and len(act):
            new.adiabatic_momenta = s.adiabatic_momenta.copy()
            new.adiabatic_momenta[act] = self._accumulate(new, act)
        new.f_meanfield = self._meanfield(new)
        self._update_fields(new)
        new.momenta[act] += 0.5 * dt * new.force[act]
        if self.energy_correction == "rescale" and self._method.coupled and len(act):
            e_target = np.add(*s.energies(self.masses))[act]
            e_pot = new.energies(self.masses)[1][act]
            new.momenta[act], _ = dc.rescale_momenta(new.momenta[act], self.masses, e_pot, e_target)
        return new

    def _meanfield(self, s: Swarm) -> np.ndarray:
        f = s.f_meanfield.copy()
        for i in np.flatnonzero(s.active):
            f[i] = self.backend.force(s.elec[i], s.rho[i])
        return f

    # ------------------------------------------------------------------ swarm fields
    def _update_fields(self, s: Swarm) -> None:
        """Geometric / quantum-coupling forces and generator at the swarm's current time."""
        if not self._method.coupled:
            return
        if self._accumulated:
            return self._update_fields_accumulated(s)
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
        s.f_geometric = np.zeros_like(s.positions)
        s.f_qc = np.zeros_like(s.positions)
        if local:
            s.extra[local] = extra_generator(self._method, inv_mass, dl, drho, d2rho)
            s.f_geometric[local], s.f_qc[local] = extra_forces(self._method, inv_mass, dl, gm, dg)
            if self.quantum_force:
                for i in local:
                    s.f_qc[i] += fl.quantum_force(where[int(s.ids[i])], pos, w, h, dlnn, inv_mass,
                                                  self.ridge)

    def _state_gradients(self, e) -> np.ndarray:
        """d_j E_n, (N, D), from the backend's dhdx (``ElectronicData.dhdx`` or ``backend.dhdx``)."""
        dhdx = e.dhdx if e.dhdx is not None else self.backend.dhdx(e)
        return dc.energy_gradients(dhdx)

    def _accumulate(self, s: Swarm, act) -> np.ndarray:
        """Adiabatic momenta at s's time for the trajectories ``act`` (reset where not mixed)."""
        pops = np.real(np.diagonal(s.rho[act], axis1=1, axis2=2))
        mixed = ((pops > dc.POP_MIN) & (pops < 1.0 - dc.POP_MIN)).any(axis=1)
        grad = np.zeros_like(s.adiabatic_momenta[act])
        for n, i in enumerate(act):
            if mixed[n]:  # gradients only where they are used (molecules: one per state)
                grad[n] = self._state_gradients(s.elec[i])
        return dc.accumulate(s.adiabatic_momenta[act], grad, grad, pops, self.dt)

    def _update_fields_accumulated(self, s: Swarm) -> None:
        """Swarm fields with d rho from the adiabatic momenta (``decoherence``): no neighbour
        overlaps; positions, populations and f of the whole swarm are exchanged."""
        f_loc = s.adiabatic_momenta
        if self.coherence_gradient == "energy_consistent":
            f_loc = dc.energy_consistent(f_loc, np.stack([e.energies for e in s.elec]),
                                         np.real(np.diagonal(s.rho, axis1=1, axis2=2)), s.momenta,
                                         self.masses)
        mine = {int(t): (s.positions[i], np.real(np.diagonal(s.rho[i])), f_loc[i])
                for i in np.flatnonzero(s.active) for t in [s.ids[i]]}
        g = {}
        for part in self.comm.allgather(mine):
            g.update(part)
        act_ids = sorted(g)
        pos = np.stack([g[t][0] for t in act_ids])
        pops = np.stack([g[t][1] for t in act_ids])
        f_all = np.stack([g[t][2] for t in act_ids])
        h = fl.bandwidth(pos, self.bandwidth_factor, self.bandwidth_bohr)
        w = fl.kernel_matrix(pos, h, self.cutoff)
        where = {tid: k for k, tid in enumerate(act_ids)}
        local = np.flatnonzero(s.active)
        idx = np.array([where[int(s.ids[i])] for i in local], int)
        inv_mass = 1.0 / self.masses
        s.extra = np.zeros_like(s.rho)
        s.f_geometric = np.zeros_like(s.positions)
        s.f_qc = np.zeros_like(s.positions)
        if not len(local):
            if self._method.geometric:
                self.comm.allgather({})
            return
        rho, f = s.rho[local], f_loc[local]
        drho, d2rho = dc.coherence_derivatives(rho, f)
        if self._method.quantum_coupling:
            q, alpha = dc.kernel_quantum_momentum(pos, w, h)
            if self.quantum_momentum == "pair_centred":
                qp = dc.pair_quantum_momentum(pos, q, alpha, pops, f_all)[idx]
            else:
                qp = np.broadcast_to(q[idx][:, None, None, :], f.shape[:2] + f.shape[1:]).copy()
            closed = dc.closed_states(np.stack([s.elec[i].energies for i in local]),
                                      np.real(np.diagonal(rho, axis1=1, axis2=2)), s.momenta[local],
                                      self.masses)
            s.extra[local] += dc.qc_generator(inv_mass, qp, f, rho, closed)
            s.f_qc[local] = dc.qc_force(inv_mass, qp, f, rho, closed)
            if self.quantum_force:
                dlnn = fl.grad_log_density(pos, w, h)
                for n, i in enumerate(local):
                    s.f_qc[i] += fl.quantum_force(idx[n], pos, w, h, dlnn, inv_mass, self.ridge)
        if self._method.geometric:
            geo = replace(self._method, quantum_coupling=False)
            gm = np.stack([fl.metric(rho[n], drho[n]) for n in range(len(local))])
            g_all = {}
            for part in self.comm.allgather({int(s.ids[i]): gm[n] for n, i in enumerate(local)}):
                g_all.update(part)
            g_arr = np.stack([g_all[t] for t in act_ids])
            dg = np.stack([fl.metric_gradient(a, pos, w, h, g_arr, self.ridge) for a in idx])
            s.extra[local] += extra_generator(geo, inv_mass, np.zeros((len(local), pos.shape[1])),
                                              drho, d2rho)
            s.f_geometric[local] = extra_forces(geo, inv_mass, np.zeros((len(local), pos.shape[1])),
                                                gm, dg)[0]

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
