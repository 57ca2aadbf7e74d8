"""One lock-step velocity-Verlet step of a surface-hopping swarm (``fssh``, ``fssh_qc``).

Physics in ``qhd_aimd.dynamics.hopping``; this module applies it to a ``Swarm``:

1. half kick with the active-state force at t, drift, one backend call per trajectory
   (``Propagator._drift``, shared with the Ehrenfest-type methods);
2. step propagator T (old basis -> new basis) from the unitarised step overlap; rho <- T rho T^dag
   (the Ehrenfest step); hop probabilities of the step from (rho(t), T) plus, for ``fssh_qc``,
   the coupled-trajectory term from the swarm generator at t;
3. force -dE_a/dx at t + dt (``backend.force(data, P_a)``: one response solve for PySCF),
   optional Berry force, second half kick;
4. one uniform number per (trajectory id, step) decides the hop; an accepted hop rescales the
   momentum (the coupling vector is computed only then) and recomputes the force on the new
   state; a frustrated one keeps or reverses the momentum along the rescaling direction;
5. energy-based decoherence of rho (default), then the swarm fields at t + dt (``fssh_qc``).

The total energy sum p^2/2M + E_a is conserved by Verlet within a surface and exactly across a
hop (the hop happens at t + dt, after the second half kick).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from qhd_aimd.dynamics import hopping as hp
from qhd_aimd.dynamics.density import unitarize


def start(swarm, states) -> None:
    """Active states at t = 0 (the initial electronic states) and empty hop records."""
    swarm.active_state = np.asarray(states, int).reshape(-1).copy()
    _clear_hops(swarm)


def _clear_hops(s) -> None:
    n = len(s.ids)
    s.hop_from = np.full(n, -1, int)
    s.hop_to = np.full(n, -1, int)
    s.hop_frustrated = np.zeros(n, bool)


def coupling_vector(backend, data, a: int, m: int, force_a) -> np.ndarray:
    """h_am = <u_a|dH/dx|u_m> (D,), hartree/bohr, in the basis of ``data``.

    From ``data.dhdx`` when the backend gives it (models); otherwise (PySCF, real states) from
    one extra force call: with P = P_a + (|a><m| + |m><a|)/2, -Tr(P dH) = F_a - h_am, so
    h_am = F_a - force(data, P), ``force_a`` = -dE_a/dx at the same geometry.
    """
    if data.dhdx is not None:
        return data.dhdx[:, a, m]
    n = data.n_states
    p = np.zeros((n, n))
    p[a, a] = 1.0
    p[a, m] = p[m, a] = 0.5
    return np.asarray(force_a) - backend.force(data, p)


def add_berry_force(prop, s, momenta) -> None:
    """s.f_geometric <- Berry force of the active state at velocity momenta/M (zero without
    ``hopping.berry_force``)."""
    s.f_geometric = np.zeros_like(s.positions)
    if not prop.hopping.berry_force:
        return
    for i in np.flatnonzero(s.active):
        e = s.elec[i]
        s.f_geometric[i] = hp.berry_force(e.dhdx, e.energies, int(s.active_state[i]),
                                          momenta[i] / prop.masses)


def step(prop, s):
    """Advance a surface-hopping swarm by dt (collective: every rank must call it)."""
    dt, opts = prop.dt, prop.hopping
    pos, mom, elec, active, failures = prop._drift(s)
    act = np.flatnonzero(active)
    rho = s.rho.copy()
    state = s.active_state.copy()
    probs = np.zeros((len(s.ids), s.rho.shape[-1]))
    if len(act):
        u = unitarize(np.stack([prop.backend.overlap(s.elec[i], elec[i]) for i in act]))
        e_old = np.stack([s.elec[i].energies for i in act])
        e_new = np.stack([elec[i].energies for i in act])
        t = hp.step_propagator(e_old, e_new, u, dt, prop.n_substeps)
        probs[act] = hp.hop_probabilities(s.rho[act], t, state[act])
        if prop._method.quantum_coupling:
            qc = hp.qc_correction(s.rho[act], s.extra[act], state[act], dt)
            probs[act] = np.clip(probs[act] + qc, 0.0, None)
        rho[act] = t @ s.rho[act] @ np.swapaxes(t.conj(), -1, -2)
    new = replace(s, step=s.step + 1, time_au=s.time_au + dt, positions=pos, momenta=mom,
                  rho=rho, elec=elec, active=active, failures=failures, active_state=state,
                  f_meanfield=s.f_meanfield.copy(), f_geometric=s.f_geometric.copy(),
                  f_qc=s.f_qc.copy(), extra=s.extra.copy())
    _clear_hops(new)
    new.f_meanfield = prop._meanfield(new)
    if opts.berry_force:  # velocity at t + dt predicted with the gradient force
        add_berry_force(prop, new, mom + 0.5 * dt * new.f_meanfield)
    new.momenta[act] += 0.5 * dt * (new.f_meanfield[act] + new.f_geometric[act])
    for i in act:
        _attempt_hop(prop, new, i, probs[i])
    if opts.decoherence == "edc":
        e_kin = 0.5 * np.einsum("tj,tj,j->t", new.momenta, new.momenta, 1.0 / prop.masses)
        if len(act):
            e = np.stack([new.elec[i].energies for i in act])
            new.rho[act] = hp.edc(new.rho[act], e, new.active_state[act], e_kin[act], dt,
                                  opts.edc_constant_hartree)
    prop._update_fields(new)
    return new


def _attempt_hop(prop, s, i: int, probs) -> None:
    a = int(s.active_state[i])
    if not np.any(probs > 0):  # the draw is stateless: skipping it changes no other draw
        return
    m = hp.choose_target(probs, a, hp.hop_uniform(prop.seed, int(s.ids[i]), s.step))
    if m is None:
        return
    e = s.elec[i]
    if prop.hopping.rescale == "momentum":
        h = s.momenta[i].copy()
    else:
        h = hp.real_direction(coupling_vector(prop.backend, e, a, m, s.f_meanfield[i]))
    de = float(e.energies[m] - e.energies[a])
    p_new, ok = hp.rescale_momentum(s.momenta[i], prop.masses, h, de, prop.hopping.frustrated)
    s.momenta[i] = p_new
    s.hop_from[i], s.hop_to[i], s.hop_frustrated[i] = a, m, not ok
    if ok:
        s.active_state[i] = m
        s.f_meanfield[i] = prop.backend.force(e, hp.active_projector(e.n_states, m))
    if prop.hopping.berry_force and (ok or prop.hopping.frustrated == "reverse"):
        s.f_geometric[i] = hp.berry_force(e.dhdx, e.energies, int(s.active_state[i]),
                                          s.momenta[i] / prop.masses)
