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
from qhd_aimd.dynamics import fssh
from qhd_aimd.dynamics import neighbours as nb
from qhd_aimd.dynamics.coordinates import max_subspace_dim, swarm_frame
from qhd_aimd.dynamics.density import liouville_step, pure_state, to_frame, unitarize
from qhd_aimd.dynamics.hopping import HoppingOptions
from qhd_aimd.dynamics.methods import METHODS, extra_forces, extra_generator
from qhd_aimd.electronic.base import overlaps
from qhd_aimd.errors import QhdError
from qhd_aimd.swarm.comm import SerialComm

#: what one trajectory's numerics may raise: caught per trajectory, which is then frozen and
#: listed in ``Swarm.failures`` with the reason (the swarm goes on); anything else is a bug
TRAJECTORY_ERRORS = (QhdError, np.linalg.LinAlgError, ArithmeticError, ValueError)


@dataclass
class Swarm:
    """The trajectories this rank owns, at one time. Arrays have a leading axis over them.

    positions (L, D) bohr; momenta (L, D) a.u.; rho (L, N, N) in each trajectory's current
    adiabatic basis; elec list of ``ElectronicData``; forces (L, D) hartree/bohr split into
    mean-field, geometric and quantum-coupling parts (f_qc includes the quantum force of Eq. 68
    when ``Propagator.quantum_force``); extra (L, N, N) hartree: the method's
    generator X - H_el from the fields at this time; active (L,) bool; failures: id -> reason;
    fields_fallback (L,) bool: the swarm fields of this time could not be estimated for the
    trajectory (too few neighbours, non-finite estimate) and were set to zero (Ehrenfest step);
    adiabatic_momenta (L, N, D) a.u.: f_n = -int dE_n dt along each trajectory
    (``decoherence``; zeros with ``Propagator.coherence_gradient == "regression"``).

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
    fields_fallback: np.ndarray | None = None
    active_state: np.ndarray | None = None
    hop_from: np.ndarray | None = None
    hop_to: np.ndarray | None = None
    hop_frustrated: np.ndarray | None = None
    adiabatic_momenta: np.ndarray | None = None
    branch_displacement: np.ndarray | None = None

    def __post_init__(self):
        if self.adiabatic_momenta is None:
            self.adiabatic_momenta = np.zeros(self.rho.shape[:2] + self.positions.shape[1:])
        if self.branch_displacement is None:  # (L, N, D) bohr, ``quantum_momentum: branch``
            self.branch_displacement = np.zeros(self.rho.shape[:2] + self.positions.shape[1:])

    @property
    def force(self) -> np.ndarray:
        return self.f_meanfield + self.f_geometric + self.f_qc

    def energies(self, masses):
        """(e_kin, e_pot) per trajectory, hartree: sum p^2/2M and Tr(rho H_el)."""
        e_kin = 0.5 * np.einsum("tj,tj,j->t", self.momenta, self.momenta, 1.0 / masses)
        if not self.elec:  # a rank without trajectories (more ranks than trajectories)
            return e_kin, np.zeros(0)
        e_adia = np.stack([e.energies for e in self.elec])
        e_pot = np.real(np.einsum("tnn,tn->t", self.rho, e_adia))
        if self.active_state is not None and len(e_adia):  # surface hopping: active state's energy
            e_pot = e_adia[np.arange(len(e_adia)), self.active_state]
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
                             ("quantum_momentum", ("kernel", "pair_centred", "projected", "ctmqc", "branch")),
                             ("energy_correction", ("rescale", "none"))):
            if getattr(self, key) not in allowed:
                raise QhdError(f"{key} must be one of {allowed}, got {getattr(self, key)!r}")
        self._accumulated = self._method.coupled and self.coherence_gradient != "regression"
        # atoms in 3-D (rigid motions projected out of the fields' coordinates)
        self._molecule = getattr(self.backend, "symbols", None) is not None
        if self.quantum_momentum == "branch" and self._molecule:
            raise QhdError("fields.quantum_momentum 'branch' is implemented for model swarms only")
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
                freeze(i, _reason(exc))
        for i in _not_finite(active, [e.energies for e in elec]):
            freeze(i, "FloatingPointError: non-finite adiabatic energies")
        ovl = {}
        for i in np.flatnonzero(active):
            try:
                ovl[i] = self.backend.overlap(s.elec[i], elec[i])
            except TRAJECTORY_ERRORS as exc:
                freeze(i, _reason(exc))
        for i in _not_finite(active, [ovl.get(i, 0.0) for i in range(len(elec))]):
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
                    bad[k] = f"electronic step: {_reason(exc)}"
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
                bad[i] = f"force: {_reason(exc)}"
        ok = s.active.copy()
        ok[list(bad)] = False
        for i in _not_finite(ok, f):
            bad[i] = "force: FloatingPointError: non-finite mean-field force"
        return f, bad

    # ------------------------------------------------------------------ swarm fields
    def _update_fields(self, s: Swarm) -> None:
        """Geometric / quantum-coupling forces and generator at the swarm's current time.

        Fields are estimated in the swarm's own coordinates (``coordinates.swarm_frame``:
        Cartesians for a model swarm spread in every direction, else the mass-weighted
        subspace of the swarm's internal spread) for all of this rank's trajectories at once,
        and mapped back to Cartesians. A trajectory with fewer neighbours than the subspace
        dimension, or whose estimate is not finite, gets zero fields for this step (an Ehrenfest
        step) and is flagged in ``s.fields_fallback``.
        """
        s.fields_fallback = np.zeros(len(s.ids), bool)
        if not self._method.coupled:
            return
        if self._accumulated:
            return self._update_fields_accumulated(s)
        g = self.gather(s)
        act_ids = [i for i in sorted(g) if g[i][3]]
        local = np.flatnonzero(s.active)
        d, shape = self.masses.shape[0], s.rho.shape[1:]
        s.extra = np.zeros_like(s.rho)
        if not self._method.hopping:  # fssh_qc: X corrects the hop rate only; forces are fssh's
            s.f_geometric = np.zeros_like(s.positions)
            s.f_qc = np.zeros_like(s.positions)
        if not act_ids:
            return
        pos = np.stack([g[i][0] for i in act_ids])
        frame = swarm_frame(pos, self.masses, self._molecule)
        c, p = frame.coords, frame.dim
        where = {tid: k for k, tid in enumerate(act_ids)}
        cent = np.array([where[int(s.ids[i])] for i in local], int)
        n_loc, n_act = len(local), len(act_ids)
        if p == 0:
            s.fields_fallback[local] = True
            return
        if frame.kind == "cartesian":
            h = fl.bandwidth(pos, self.bandwidth_factor, self.bandwidth_bohr)
        else:
            h = fl.bandwidth(c, self.bandwidth_factor)
        w = fl.kernel_matrix(c, h, self.cutoff)
        ok_all = (w > 0).sum(axis=1) - 1 >= p  # enough neighbours for a first derivative
        frames = self._frames(g, act_ids, w, ok_all, cent)
        w = frames.pop("weights")  # pairs whose overlap failed removed
        ok_all = (w > 0).sum(axis=1) - 1 >= p
        ok = ok_all[cent]

        # (centre, neighbour) pairs of the local centres, sorted by centre
        wl = w[cent].copy()
        wl[np.arange(n_loc), cent] = 0.0
        wl[~ok] = 0.0
        la, lb = np.nonzero(wl)
        wp = wl[la, lb]
        dx = c[lb] - c[cent[la]]  # (K, P)
        u_ab = frames["lookup"](cent[la], lb)
        rho_all = np.stack([g[t][1] for t in act_ids])
        rho_c = rho_all[cent]
        rho_nb = to_frame(rho_all[lb], u_ab)
        slow_nb = slow_c = kappa = None
        if self._demodulate:
            slow_all = np.stack([g[t][4] for t in act_ids])
            slow_c = slow_all[cent]
            slow_nb = to_frame(slow_all[lb], u_ab)
            energies = np.stack([s.elec[i].energies for i in local]) if len(local) else \
                np.zeros((0, s.rho.shape[1]))  # a rank without trajectories
            kappa = fl.coherence_wavevectors(energies, frame.velocity(s.momenta[local] / self.masses))
        quadratic = self._method.geometric
        drho_c, d2rho_c = fl.rho_derivatives_pairs(la, n_loc, dx, wp, h, rho_nb, rho_c, slow_nb, slow_c,
                                                   kappa, quadratic, self.ridge)
        dlnn_c = fl.grad_log_density_at(c, w[cent], h, cent)
        drho = frame.first_to_cartesian(drho_c)
        d2rho = frame.second_to_cartesian(d2rho_c)
        dl = frame.first_to_cartesian(dlnn_c)
        gm = fl.metrics(s.rho[local], drho)
        bad = ~ok | ~np.isfinite(drho).all(axis=(1, 2, 3)) | ~np.isfinite(d2rho).all(axis=(1, 2, 3)) \
            | ~np.isfinite(dl).all(axis=1) | ~np.isfinite(gm).all(axis=(1, 2))
        dg = np.zeros((n_loc, d, d, d))
        inv_mass = 1.0 / self.masses
        if self._method.geometric:
            g_all = self.comm.allgather({int(s.ids[i]): gm[n] for n, i in enumerate(local) if not bad[n]})
            g_all = {k: v for part in g_all for k, v in part.items()}
            have = np.array([t in g_all for t in act_ids])[lb]
            g_arr = np.stack([g_all.get(t, np.zeros((d, d))) for t in act_ids])
            dg_c, _ = fl.local_fit_pairs(la[have], n_loc, dx[have], g_arr[lb[have]] - gm[la[have]], wp[have],
                                         h, False, self.ridge)
            dg = frame.first_to_cartesian(dg_c)
            bad |= ~np.isfinite(dg).all(axis=(1, 2, 3))
        fq = None
        if self.quantum_force:
            dlnn_all = fl.grad_log_density_at(c, w, h, np.arange(n_act))
            fq_c = fl.quantum_force_pairs(la, n_loc, dx, wp, h, dlnn_c, dlnn_all[lb],
                                          frame.inverse_metric(inv_mass), self.ridge)
            fq = frame.first_to_cartesian(fq_c)
            bad |= ~np.isfinite(fq).all(axis=1)
        for arr in (drho, d2rho, dl, gm, dg) + ((fq,) if fq is not None else ()):
            arr[bad] = 0.0
        s.fields_fallback[local] = bad
        if n_loc:
            s.extra[local] = extra_generator(self._method, inv_mass, dl, drho, d2rho)
            if self._method.hopping:
                return
            s.f_geometric[local], s.f_qc[local] = extra_forces(self._method, inv_mass, dl, gm, dg)
            if fq is not None:
                s.f_qc[local] += fq

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

    def _update_fields_accumulated(self, s: Swarm) -> None:
        """Swarm fields with d rho from the adiabatic momenta (``decoherence``): no neighbour
        overlaps; positions, populations and f of the whole swarm are exchanged.

        The density (quantum momentum) and the metric gradient are estimated in the swarm's own
        coordinates (``coordinates.swarm_frame``; molecules: at most ``max_subspace_dim(T)``
        leading mass-weighted principal components) with two tiers per trajectory: the truncated
        kernel over its neighbours (sparse pairs, ``neighbours.kernel_pairs``) when it has at
        least as many neighbours as there are coordinates, else the whole-swarm Gaussian /
        linear fit (``neighbours``). Zero fields (flagged in ``fields_fallback``) only for a
        swarm without spread or a non-finite estimate.
        """
        f_loc = s.adiabatic_momenta
        if self.coherence_gradient == "energy_consistent":
            f_loc = dc.energy_consistent(f_loc, _energies(s, range(len(s.elec))),
                                         np.real(np.diagonal(s.rho, axis1=1, axis2=2)), s.momenta,
                                         self.masses)
        local = np.flatnonzero(s.active)
        if self.quantum_momentum == "branch" and s.step > 0:  # branch displacements over the last step
            disp = s.branch_displacement.copy()
            disp[local] = dc.advance_displacement(disp[local], f_loc[local],
                                                  np.real(np.diagonal(s.rho[local], axis1=1, axis2=2)),
                                                  self.masses, self.dt)
            s.branch_displacement = disp
        mine = (np.asarray(s.ids)[local], s.positions[local],
                np.real(np.diagonal(s.rho[local], axis1=1, axis2=2)), f_loc[local],
                s.branch_displacement[local])
        parts = self.comm.allgather(mine) if getattr(self.comm, "size", 1) > 1 else [mine]
        all_ids, pos, pops, f_all, disp_all = (np.concatenate([q[k] for q in parts]) for k in range(5))
        order = np.argsort(all_ids, kind="stable")  # by id: the same arrays on any number of ranks
        all_ids, pos, pops, f_all, disp_all = (all_ids[order], pos[order], pops[order], f_all[order],
                                               disp_all[order])
        act_ids = all_ids.tolist()
        inv_mass = 1.0 / self.masses
        s.extra = np.zeros_like(s.rho)
        s.f_geometric = np.zeros_like(s.positions)
        s.f_qc = np.zeros_like(s.positions)
        if not act_ids:
            return
        n_act = len(act_ids)
        frame = swarm_frame(pos, self.masses, self._molecule, max_dim=max_subspace_dim(n_act))
        c, p = frame.coords, frame.dim
        if p == 0:  # no spread (one trajectory, or all at one point): zero fields
            s.fields_fallback[local] = True  # (every rank returns here: same swarm)
            return
        h = fl.bandwidth(pos, self.bandwidth_factor, self.bandwidth_bohr) if frame.kind == "cartesian" \
            else fl.bandwidth(c, self.bandwidth_factor)
        pa, pb, pw = nb.kernel_pairs(c, h, self.cutoff)
        kernel_ok = np.bincount(pa, minlength=n_act) >= p  # local tier
        gauss = None
        if not kernel_ok.all():
            gauss = nb.gaussian_log_density(c)
        idx = np.searchsorted(all_ids, np.asarray(s.ids)[local]).astype(int)
        if not len(local):  # a rank without active trajectories joins the metric exchange
            if self._method.geometric and getattr(self.comm, "size", 1) > 1:
                d = self.masses.shape[0]
                self.comm.allgather((np.zeros(0, int), np.zeros((0, d, d))))
            return
        rho, f = s.rho[local], f_loc[local]
        drho, d2rho = dc.coherence_derivatives(rho, f)
        # pairs with a centre on this rank, sorted by the centre's local index
        if len(idx) == n_act and np.array_equal(idx, np.arange(n_act)):  # every centre, in order
            la, lb, lw = pa, pb, pw
        else:
            loc_of = np.full(n_act, -1, int)
            loc_of[idx] = np.arange(len(idx))
            sel = loc_of[pa] >= 0
            la, lb, lw = loc_of[pa[sel]], pb[sel], pw[sel]
            if len(la) > 1 and np.any(la[1:] < la[:-1]):  # centres in the rank's own order
                order = np.argsort(la, kind="stable")
                la, lb, lw = la[order], lb[order], lw[order]
        ldx = c[lb] - c[la] if la is pa else c[lb] - c[idx[la]]
        ok_loc = kernel_ok[idx]
        if self._method.quantum_coupling:
            g1, g2 = nb.kernel_log_density(c, h, pa, pb, pw, ldx if la is pa else None)
            if gauss is not None:
                g1 = np.where(kernel_ok[:, None], g1, gauss[0])
                g2 = np.where(kernel_ok[:, None], g2, gauss[1][None, :])
            q, alpha = -0.5 * g1, -0.5 * g2
            f_c = frame.covector(f_all, self.masses)  # (T, N, P)
            if self.quantum_momentum == "pair_centred":
                qp_c = dc.pair_quantum_momentum(c, q, alpha, pops, f_c)[idx]
            elif self.quantum_momentum == "branch":  # models (Cartesian frame) only
                if frame.kind != "cartesian":
                    raise QhdError("quantum_momentum 'branch' is implemented for model swarms only")
                qp_c = dc.branch_quantum_momentum(c, disp_all, h, pops, q, f_c)[idx]
            elif self.quantum_momentum == "ctmqc":  # slope of the kernel Gaussians, 1/(2 h^2)
                slope = np.broadcast_to(0.5 / h**2, c.shape)
                qp_c = dc.pair_quantum_momentum(c, q, slope, pops, f_c, np.inf)[idx]
            elif self.quantum_momentum == "projected":  # truncated kernel incl. self weight 1
                wk = nb.kernel_matrix_with_self(pa, pb, pw, n_act)
                qp_c = dc.projected_quantum_momentum(c, wk, h, pops, q, f_c)[idx]
                qp_c = np.where(ok_loc[:, None, None, None], qp_c, q[idx][:, None, None, :])
            else:
                n_st = f_c.shape[1]
                qp_c = np.broadcast_to(q[idx][:, None, None, :], (len(idx), n_st, n_st, p)).copy()
            qp = np.moveaxis(frame.first_to_cartesian(np.moveaxis(qp_c, 3, 1)), 1, 3)  # (L, N, N, D)
            e_loc = _energies(s, local)
            closed = dc.closed_states(e_loc, np.real(np.diagonal(rho, axis1=1, axis2=2)), s.momenta[local],
                                      self.masses, float(self.closed_kinetic_fraction))
            limit = None
            if self.power_limit:
                e_kin = 0.5 * np.einsum("tj,tj,j->t", s.momenta[local], s.momenta[local], inv_mass)
                limit = (rho, e_loc, e_kin, self.dt)
            s.extra[local] += dc.qc_generator(inv_mass, qp, f, rho, closed, limit)
            s.f_qc[local] = dc.qc_force(inv_mass, qp, f, rho, closed, limit)
            if self.quantum_force:
                fq_c = fl.quantum_force_pairs(la, len(local), ldx, lw, h, g1[idx], g1[lb],
                                              frame.inverse_metric(inv_mass), self.ridge)
                fq_c[~ok_loc] = 0.0  # the quantum force needs the local tier
                s.f_qc[local] += frame.first_to_cartesian(fq_c)
        if self._method.geometric:
            geo = replace(self._method, quantum_coupling=False)
            gm = fl.metrics(rho, drho)
            gparts = self.comm.allgather((np.asarray(s.ids)[local], gm)) \
                if getattr(self.comm, "size", 1) > 1 else [(np.asarray(s.ids)[local], gm)]
            g_ids = np.concatenate([q[0] for q in gparts])
            g_arr = np.concatenate([q[1] for q in gparts])[np.argsort(g_ids, kind="stable")]
            dg_c, _ = fl.local_fit_pairs(la, len(local), ldx, g_arr[lb] - gm[la], lw, h, False, self.ridge)
            if not ok_loc.all():
                dg_c[~ok_loc] = nb.global_linear_fit(c, g_arr, self.ridge)
            dg = frame.first_to_cartesian(dg_c)
            zero = np.zeros((len(local), pos.shape[1]))
            s.extra[local] += extra_generator(geo, inv_mass, zero, drho, d2rho)
            s.f_geometric[local] = extra_forces(geo, inv_mass, zero, gm, dg)[0]
        bad = ~(np.isfinite(s.extra[local]).all(axis=(1, 2)) & np.isfinite(s.f_qc[local]).all(axis=1)
                & np.isfinite(s.f_geometric[local]).all(axis=1))
        for arr in (s.extra, s.f_qc, s.f_geometric):
            arr[local[bad]] = 0.0
        s.fields_fallback[local] = bad

    def _frames(self, g, act_ids, w, ok, mine) -> dict:
        """polar(<u(a)|u(b)>) for every neighbour pair a < b (indices into ``act_ids``) that
        touches a trajectory of this rank and that a centre with enough neighbours needs
        (``ok``). Each pair is computed once, by the rank that owns a, batched over a's
        neighbours b > a, and shared: the other member uses polar(S)^+ = polar(S^+). The same
        calls on any number of ranks, so results do not depend on it. A pair whose overlap
        fails (or is not finite) is dropped from the neighbours of both.

        Returns {"weights": w without failed pairs, "lookup": f(a, b) -> (K, N, N) U_ab}.
        """
        pa, pb, us, failed = [], [], [], []
        pair_overlaps = getattr(self.backend, "overlap_pairs", None)
        polar = (lambda x: x) if getattr(self.backend, "unitary_overlaps", False) else unitarize
        if pair_overlaps is not None and len(mine):
            need = np.zeros(w.shape, bool)
            need[mine] = True
            need &= (w > 0) & np.triu(np.ones(w.shape, bool), 1) & (ok[:, None] | ok[None, :])
            ia, ib = np.nonzero(need)
            try:
                u = polar(pair_overlaps([g[t][2] for t in act_ids], ia, ib))
            except TRAJECTORY_ERRORS:
                u = np.full((len(ia),) + g[act_ids[0]][1].shape, np.nan, complex)
            fin = np.isfinite(u).all(axis=(1, 2))
            pa, pb, us = [ia[fin]], [ib[fin]], [u[fin]]  # index arrays, joined below
            failed = list(zip(ia[~fin].tolist(), ib[~fin].tolist()))
            mine = []
        for a in mine:
            nbrs = [int(b) for b in np.flatnonzero(w[a]) if b > a and (ok[a] or ok[b])]
            if not nbrs:
                continue
            try:
                u = polar(overlaps(self.backend, g[act_ids[a]][2], [g[act_ids[b]][2] for b in nbrs]))
            except TRAJECTORY_ERRORS:
                u = np.full((len(nbrs),) + g[act_ids[a]][1].shape, np.nan, complex)
            fin = np.isfinite(u).all(axis=(1, 2))
            pa.append(np.full(int(fin.sum()), a, int))
            pb.append(np.array(nbrs, int)[fin])
            us.append(u[fin])
            failed += [(a, b) for b, f in zip(nbrs, fin) if not f]
        n = g[act_ids[0]][1].shape[-1]
        part = (np.concatenate(pa).astype(int) if pa else np.zeros(0, int),
                np.concatenate(pb).astype(int) if pb else np.zeros(0, int),
                np.concatenate(us) if us else np.zeros((0, n, n), complex), failed)
        parts = self.comm.allgather(part) if getattr(self.comm, "size", 1) > 1 else [part]
        pa = np.concatenate([q[0] for q in parts])
        pb = np.concatenate([q[1] for q in parts])
        u_all = np.concatenate([q[2] for q in parts])
        w = w.copy()
        for q in parts:
            for a, b in q[3]:
                w[a, b] = w[b, a] = 0.0
        index = np.full(w.shape, -1, int)
        index[pa, pb] = np.arange(len(pa))

        def lookup(a, b):
            lo, hi = np.minimum(a, b), np.maximum(a, b)
            u = u_all[index[lo, hi]]
            flip = a > b
            u[flip] = np.swapaxes(u[flip].conj(), -1, -2)
            return u

        return {"weights": w, "lookup": lookup}

    def gather(self, s: Swarm) -> dict:
        """{trajectory id: (position, rho, electronic data, active, slow part of rho or None)}
        over all ranks; the electronic data reduced to what overlaps need
        (``ElectronicData.for_overlaps``); the slow part (``fields.slow_part``) with
        ``demodulate``."""
        slow = [None] * len(s.ids)
        if self._demodulate and len(s.ids):
            dh = [e.dhdx for e in s.elec]
            slow = fl.slow_parts(s.rho, np.stack([e.energies for e in s.elec]), s.momenta / self.masses,
                                 None if any(x is None for x in dh) else np.stack(dh))
        mine = {int(t): (s.positions[i], s.rho[i], s.elec[i].for_overlaps(), bool(s.active[i]), slow[i])
                for i, t in enumerate(s.ids)}
        out = {}
        for part in self.comm.allgather(mine):
            out.update(part)
        return out


def _reason(exc: Exception) -> str:
    """One line: the message of our own errors, type and message of numerical ones."""
    msg = " ".join(str(exc).split())
    return msg if isinstance(exc, QhdError) else f"{type(exc).__name__}: {msg}"


def _not_finite(mask: np.ndarray, values) -> np.ndarray:
    """Indices i with mask[i] whose values[i] (equal-shaped arrays) hold a NaN or infinity."""
    idx = np.flatnonzero(mask)
    if not len(idx):
        return idx
    v = np.stack([np.asarray(values[i]) for i in idx])
    return idx[~np.isfinite(v).reshape(len(idx), -1).all(axis=1)]


def _energies(s: Swarm, idx) -> np.ndarray:
    """Adiabatic energies (len(idx), N) of the listed trajectories; (0, N) on a rank without
    trajectories (more ranks than trajectories)."""
    idx = list(idx)
    if not idx:
        return np.zeros((0, s.rho.shape[1]))
    return np.stack([s.elec[i].energies for i in idx])
