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

The swarm state (``Swarm``) is in ``swarm_state``, the assembly of the swarm fields (forces
and generator of the coupled methods) in ``swarm_fields``, the surface-hopping parts in ``fssh``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from qhd_aimd.dynamics import decoherence as dc
from qhd_aimd.dynamics import fssh, swarm_fields
from qhd_aimd.dynamics.density import liouville_step, pure_state, unitarize
from qhd_aimd.dynamics.hopping import HoppingOptions
from qhd_aimd.dynamics.methods import METHODS
from qhd_aimd.dynamics.swarm_state import TRAJECTORY_ERRORS, Swarm, not_finite, reason
from qhd_aimd.errors import QhdError
from qhd_aimd.swarm.comm import SerialComm


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
        ``fields.coherence_wavevector``; ``"auto"``: for models, not for molecules)
    quantum_force : add the quantum force of Eq. 68 (``fields.quantum_force``), estimated from
        the swarm and recorded with the quantum-coupling force (``f_qc``)
    coherence_gradient : "regression" (neighbours' rho, ``fields``), "accumulated" (phase
        gradient from each trajectory's adiabatic momenta, ``decoherence``) or
        "energy_consistent" (the same with their component along the flow from energy
        conservation, ``decoherence.energy_consistent``); ``fields.coherence_gradient``
    quantum_momentum : "projected" (state-resolved kernel densities projected on each pair,
        ``decoherence.projected_quantum_momentum``), "pair_centred" (``decoherence``) or
        "kernel" (-1/2 d ln n) or "ctmqc" (``decoherence.pair_quantum_momentum`` with the
        kernel Gaussians' slope 1/(2 h^2), Min, Agostini & Gross 2015); used with the
        accumulated gradient (``fields.quantum_momentum``)
    closed_kinetic_fraction : the quantum-coupling term stops filling state n when the kinetic
        energy is below this fraction of E_n - Tr(rho H) (``decoherence.closed_states``)
    power_limit : scale each trajectory's quantum-coupling rates so that one step raises
        Tr(rho H) by at most half its kinetic energy (``decoherence.power_limited_rates``)
    energy_correction : "rescale" (coupled methods: each trajectory's momentum is rescaled
        after every step so that E_kin + Tr(rho H_el) keeps its value) or "none"
        (``dynamics.energy_correction``)
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
    demodulate: object = "auto"
    quantum_force: bool = False
    coherence_gradient: str = "regression"
    quantum_momentum: str = "projected"
    energy_correction: str = "none"
    closed_kinetic_fraction: float = dc.CLOSED_KINETIC_FRACTION
    power_limit: bool = False
    hopping: object = None
    seed: int = 0

    def __post_init__(self):
        self._method = METHODS[self.method]
        self.masses = np.asarray(self.backend.masses, float)
        if self.hopping is None:
            self.hopping = HoppingOptions()
        for key, allowed in (("coherence_gradient", ("regression", "accumulated", "energy_consistent")),
                             ("quantum_momentum", ("kernel", "pair_centred", "projected", "ctmqc")),
                             ("energy_correction", ("rescale", "none"))):
            if getattr(self, key) not in allowed:
                raise QhdError(f"{key} must be one of {allowed}, got {getattr(self, key)!r}")
        self._accumulated = self._method.coupled and self.coherence_gradient != "regression"
        # atoms in 3-D (rigid motions projected out of the fields' coordinates)
        self._molecule = getattr(self.backend, "symbols", None) is not None
        # co-moving demodulation assumes a stationary (scattering) flow; a vibrating molecular
        # swarm started at one instant has turning points where kappa = dE/v diverges
        self._demodulate = (not self._molecule) if self.demodulate == "auto" else bool(self.demodulate)

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
        swarm.f_meanfield, bad = self._meanfield(swarm)
        for i, why in bad.items():
            swarm.active[i] = False
            swarm.failures[int(ids[i])] = f"t=0.000 au: {why}"
        if self._method.hopping:
            fssh.add_berry_force(self, swarm, swarm.momenta)
        self._update_fields(swarm)
        return swarm

    # ------------------------------------------------------------------ step
    def step(self, s: Swarm) -> Swarm:
        """Advance the swarm by dt (collective: every rank must call it).

        One trajectory's numerics never stop the swarm: an electronic-structure error, a
        ``LinAlgError``, a non-finite position, momentum, energy, overlap, rho or force, or a
        failing force (response) solve freezes that trajectory at its last good state (inactive
        from this step on) and records the reason in ``failures``; the others go on. Every check
        is per trajectory, so the result does not depend on the number of ranks.
        """
        dt, t_new = self.dt, s.time_au + self.dt
        act = np.flatnonzero(s.active)
        pos, mom, rho = s.positions.copy(), s.momenta.copy(), s.rho.copy()
        with np.errstate(all="ignore"):
            mom[act] += 0.5 * dt * s.force[act]
            pos[act] += dt * mom[act] / self.masses
        elec, failures, active = list(s.elec), dict(s.failures), s.active.copy()
        f_old = (s.f_meanfield, s.f_geometric, s.f_qc)

        def freeze(i, why, new=None):
            active[i] = False
            failures[int(s.ids[i])] = f"t={t_new:.3f} au: {why}"
            pos[i], mom[i], rho[i], elec[i] = s.positions[i], s.momenta[i], s.rho[i], s.elec[i]
            if new is not None:
                new.positions[i], new.momenta[i] = s.positions[i], s.momenta[i]
                new.f_meanfield[i], new.f_geometric[i], new.f_qc[i] = (f[i] for f in f_old)

        for i in act[~(np.isfinite(pos[act]).all(axis=1) & np.isfinite(mom[act]).all(axis=1))]:
            freeze(i, "non-finite position or momentum")
        for i in np.flatnonzero(active):
            try:
                elec[i] = self.backend.compute(pos[i], reference=s.elec[i])
            except TRAJECTORY_ERRORS as exc:
                freeze(i, reason(exc))
        for i in not_finite(active, [e.energies for e in elec]):
            freeze(i, "FloatingPointError: non-finite adiabatic energies")
        ovl = {}
        for i in np.flatnonzero(active):
            try:
                ovl[i] = self.backend.overlap(s.elec[i], elec[i])
            except TRAJECTORY_ERRORS as exc:
                freeze(i, reason(exc))
        for i in not_finite(active, [ovl.get(i, 0.0) for i in range(len(elec))]):
            freeze(i, "FloatingPointError: non-finite step overlap")
        act = np.flatnonzero(active)
        hopping, probs = self._method.hopping, None
        if len(act):
            if hopping:  # rho as in Ehrenfest + the step's hop probabilities (fssh)
                step_bad, probs = fssh.electronic_step(self, s, elec, act, ovl, rho)
            else:
                step_bad = self._electronic_step(s, elec, act, ovl, rho)
            for k, why in step_bad.items():
                freeze(act[k], why)
        new = replace(s, step=s.step + 1, time_au=t_new, positions=pos, momenta=mom,
                      rho=rho, elec=elec, active=active, failures=failures)
        if hopping:
            fssh.begin(new)
        if self._accumulated:
            new.adiabatic_momenta = s.adiabatic_momenta.copy()
            acc = np.flatnonzero(new.active)
            if len(acc):
                new.adiabatic_momenta[acc] = self._accumulate(new, acc)
        new.f_meanfield, bad = self._meanfield(new)
        for i, why in bad.items():
            freeze(i, why, new)
        if hopping:  # Berry force at the velocity predicted with the gradient force
            fssh.add_berry_force(self, new, new.momenta + 0.5 * dt * new.f_meanfield)
        else:
            self._update_fields(new)
        act = np.flatnonzero(new.active)
        with np.errstate(all="ignore"):
            new.momenta[act] += 0.5 * dt * new.force[act]
        for i in act[~np.isfinite(new.momenta[act]).all(axis=1)]:
            freeze(i, "non-finite momentum after the second half kick", new)
        if hopping:  # hops at t + dt, decoherence, then the fields (fssh_qc: X for the next step)
            for i, why in fssh.after_kick(self, new, probs).items():
                freeze(i, why, new)
            self._update_fields(new)
        act = np.flatnonzero(new.active)
        if self.energy_correction == "rescale" and self._method.coupled and not hopping and len(act):
            e_target = np.add(*s.energies(self.masses))[act]
            e_pot = new.energies(self.masses)[1][act]
            new.momenta[act], _ = dc.rescale_momenta(new.momenta[act], self.masses, e_pot, e_target)
        return new

    def _electronic_step(self, s: Swarm, elec, act, ovl, rho) -> dict:
        """rho over the step for the trajectories ``act`` (batched), written into ``rho``;
        returns {position in act: reason} for those whose step failed or gave a non-finite /
        non-normalised rho (rho not written for them)."""
        e_old = np.stack([s.elec[i].energies for i in act])
        e_new = np.stack([elec[i].energies for i in act])
        s_ab = np.stack([ovl[i] for i in act])
        extra = s.extra[act] if self._method.coupled else None

        def one(sl):
            u = unitarize(s_ab[sl])
            x = extra[sl] if extra is not None else None
            return liouville_step(s.rho[act[sl]], e_old[sl], e_new[sl], u, self.dt, self.n_substeps, x)

        bad = {}
        try:
            with np.errstate(all="ignore"):
                out = one(slice(None))
        except TRAJECTORY_ERRORS:  # find the culprit(s) one by one
            out = np.full((len(act),) + rho.shape[1:], np.nan, complex)
            for k in range(len(act)):
                try:
                    with np.errstate(all="ignore"):
                        out[k] = one(slice(k, k + 1))[0]
                except TRAJECTORY_ERRORS as exc:
                    bad[k] = f"electronic step: {reason(exc)}"
        tr = np.real(np.trace(out, axis1=1, axis2=2))
        fine = np.isfinite(out).all(axis=(1, 2)) & (np.abs(tr - 1.0) < 1e-6)
        for k in np.flatnonzero(~fine):
            bad.setdefault(int(k), "electronic step: non-finite or non-normalised rho")
        good = np.flatnonzero(fine)
        rho[act[good]] = out[good]
        return bad

    def _meanfield(self, s: Swarm):
        """Mean-field forces of the active trajectories (others keep theirs), and
        {index: reason} for those whose force failed or is not finite."""
        f, bad = s.f_meanfield.copy(), {}
        n = s.rho.shape[-1]
        for i in np.flatnonzero(s.active):
            try:  # surface hopping: rho = P_a, the force is -dE_a/dx
                r = s.rho[i] if s.active_state is None else pure_state(n, int(s.active_state[i]))
                f[i] = self.backend.force(s.elec[i], r)
            except TRAJECTORY_ERRORS as exc:
                bad[i] = f"force: {reason(exc)}"
        ok = s.active.copy()
        ok[list(bad)] = False
        for i in not_finite(ok, f):
            bad[i] = "force: FloatingPointError: non-finite mean-field force"
        return f, bad

    # ------------------------------------------------------------------ swarm fields
    def _update_fields(self, s: Swarm) -> None:
        """Geometric / quantum-coupling forces and generator at the swarm's current time
        (``swarm_fields.update``)."""
        swarm_fields.update(self, s)

    def _state_gradients(self, e) -> np.ndarray:
        """d_j E_n, (N, D), from the backend's dhdx (``ElectronicData.dhdx`` or ``backend.dhdx``)."""
        if e.dhdx is None and hasattr(self.backend, "state_gradients"):  # PySCF: no couplings
            return np.asarray(self.backend.state_gradients(e), float)
        dhdx = e.dhdx if e.dhdx is not None else self.backend.dhdx(e)
        return dc.energy_gradients(dhdx)

    def _accumulate(self, s: Swarm, act) -> np.ndarray:
        """Adiabatic momenta at s's time for the trajectories ``act`` (reset where not mixed)."""
        pops = np.real(np.diagonal(s.rho[act], axis1=1, axis2=2))
        mixed = ((pops > dc.POP_MIN) & (pops < 1.0 - dc.POP_MIN)).any(axis=1)
        grad = np.zeros_like(s.adiabatic_momenta[act])
        dh = [s.elec[i].dhdx for i, m in zip(act, mixed) if m]
        if dh and all(x is not None for x in dh):  # models: dhdx at hand, one batched diagonal
            grad[mixed] = np.real(np.diagonal(np.stack(dh), axis1=2, axis2=3)).transpose(0, 2, 1)
            mixed = np.zeros_like(mixed)
        for n, i in enumerate(act):
            if mixed[n]:  # gradients only where they are used (molecules: one per state)
                try:
                    grad[n] = self._state_gradients(s.elec[i])
                except TRAJECTORY_ERRORS:  # no increment this step (f kept); flagged below
                    grad[n] = 0.0
        grad[~np.isfinite(grad)] = 0.0
        return dc.accumulate(s.adiabatic_momenta[act], grad, grad, pops, self.dt)
