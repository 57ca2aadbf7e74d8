"""The surface-hopping parts of a lock-step velocity-Verlet step (``fssh``, ``fssh_qc``), called by
``Propagator.initialize`` / ``Propagator.step``.

Physics in ``qhd_aimd.dynamics.hopping``; this module applies it to a ``Swarm``:

1. half kick with the active-state force at t, drift, one backend call per trajectory
   (``Propagator.step``, shared with the Ehrenfest-type methods, with its per-trajectory
   failure handling);
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

import numpy as np

from qhd_aimd.dynamics import hopping as hp
from qhd_aimd.dynamics.density import unitarize
from qhd_aimd.dynamics.swarm_state import TRAJECTORY_ERRORS, reason


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


def begin(new) -> None:
    """Fresh per-step arrays of the swarm at t + dt (``replace`` shares them with t)."""
    new.active_state = new.active_state.copy()
    _clear_hops(new)


def electronic_step(prop, s, elec, act, ovl, rho):
    """rho over the step for the trajectories ``act`` exactly as Ehrenfest (T rho T^dag, written
    into ``rho``) and the step's hop probabilities (L, N) (``fssh_qc``: plus the coupled-
    trajectory term from the generator at t). Returns ({position in act: reason}, probs);
    a trajectory whose rho is not finite or not normalised is reported, not written."""
    probs = np.zeros((len(s.ids), s.rho.shape[-1]))
    e_old = np.stack([s.elec[i].energies for i in act])
    e_new = np.stack([elec[i].energies for i in act])
    bad = {}
    with np.errstate(all="ignore"):
        u = unitarize(np.stack([ovl[i] for i in act]))
        t = hp.step_propagator(e_old, e_new, u, prop.dt, prop.n_substeps)
        out = t @ s.rho[act] @ np.swapaxes(t.conj(), -1, -2)
        p = hp.hop_probabilities(s.rho[act], t, s.active_state[act])
        if prop._method.quantum_coupling:
            qc = hp.qc_correction(s.rho[act], s.extra[act], s.active_state[act], prop.dt)
            p = np.clip(p + qc, 0.0, None)
    tr = np.real(np.trace(out, axis1=1, axis2=2))
    fine = np.isfinite(out).all(axis=(1, 2)) & (np.abs(tr - 1.0) < 1e-6) & np.isfinite(p).all(axis=1)
    for k in np.flatnonzero(~fine):
        bad[int(k)] = "electronic step: non-finite or non-normalised rho"
    good = np.flatnonzero(fine)
    rho[act[good]] = out[good]
    probs[act[good]] = p[good]
    return bad, probs


def after_kick(prop, s, probs) -> dict:
    """Hops at t + dt (after the second half kick) and the decoherence correction of the active
    trajectories; returns {index: reason} for those whose new-state force failed."""
    bad = {}
    act = np.flatnonzero(s.active)
    for i in act:
        try:
            _attempt_hop(prop, s, i, probs[i])
        except TRAJECTORY_ERRORS as exc:
            bad[int(i)] = f"hop: {reason(exc)}"
    act = np.array([i for i in act if i not in bad], int)
    opts = prop.hopping
    if opts.decoherence == "edc" and len(act):
        e_kin = 0.5 * np.einsum("tj,tj,j->t", s.momenta[act], s.momenta[act], 1.0 / prop.masses)
        e = np.stack([s.elec[i].energies for i in act])
        s.rho[act] = hp.edc(s.rho[act], e, s.active_state[act], e_kin, prop.dt,
                            opts.edc_constant_hartree)
    return bad


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
