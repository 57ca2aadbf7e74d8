"""Swarm fields of the coupled methods at one time: the geometric / quantum-coupling forces and
the generator X - H_el of every trajectory of this rank, from the whole swarm (exchanged over MPI).

Two routes (``Propagator.coherence_gradient``):

* ``regression``: d rho from a kernel regression of the neighbours' rho carried to each centre's
  basis with the neighbour overlaps (``_neighbour_frames``; optionally demodulated,
  ``fields.slow_parts``), d ln n from the kernel density (``fields``);
* ``accumulated`` / ``energy_consistent``: d rho from each trajectory's adiabatic momenta
  (``decoherence``), the quantum momentum from the kernel density (``neighbours``,
  ``decoherence``); no neighbour overlaps.

Called by ``Propagator`` (``integrator``) with itself as ``prop`` (options, backend, comm).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from qhd_aimd.dynamics import decoherence as dc
from qhd_aimd.dynamics import fields as fl
from qhd_aimd.dynamics import neighbours as nb
from qhd_aimd.dynamics.coordinates import max_subspace_dim, swarm_frame
from qhd_aimd.dynamics.density import to_frame, unitarize
from qhd_aimd.dynamics.methods import extra_forces, extra_generator
from qhd_aimd.dynamics.swarm_state import TRAJECTORY_ERRORS, Swarm, adiabatic_energies
from qhd_aimd.electronic.base import overlaps


def update(prop, s: Swarm) -> None:
    """Geometric / quantum-coupling forces and generator at the swarm's current time.

    Fields are estimated in the swarm's own coordinates (``coordinates.swarm_frame``:
    Cartesians for a model swarm spread in every direction, else the mass-weighted
    subspace of the swarm's internal spread) for all of this rank's trajectories at once,
    and mapped back to Cartesians. A trajectory with fewer neighbours than the subspace
    dimension, or whose estimate is not finite, gets zero fields for this step (an Ehrenfest
    step) and is flagged in ``s.fields_fallback``.
    """
    s.fields_fallback = np.zeros(len(s.ids), bool)
    if not prop._method.coupled:
        return
    if prop._accumulated:
        return _accumulated_fields(prop, s)
    g = gather(prop, s)
    act_ids = [i for i in sorted(g) if g[i][3]]
    local = np.flatnonzero(s.active)
    d = prop.masses.shape[0]
    s.extra = np.zeros_like(s.rho)
    if not prop._method.hopping:  # fssh_qc: X corrects the hop rate only; forces are fssh's
        s.f_geometric = np.zeros_like(s.positions)
        s.f_qc = np.zeros_like(s.positions)
    if not act_ids:
        return
    pos = np.stack([g[i][0] for i in act_ids])
    frame = swarm_frame(pos, prop.masses, prop._molecule)
    c, p = frame.coords, frame.dim
    where = {tid: k for k, tid in enumerate(act_ids)}
    cent = np.array([where[int(s.ids[i])] for i in local], int)
    n_loc, n_act = len(local), len(act_ids)
    if p == 0:
        s.fields_fallback[local] = True
        return
    if frame.kind == "cartesian":
        h = fl.bandwidth(pos, prop.bandwidth_factor, prop.bandwidth_bohr)
    else:
        h = fl.bandwidth(c, prop.bandwidth_factor)
    w = fl.kernel_matrix(c, h, prop.cutoff)
    ok_all = (w > 0).sum(axis=1) - 1 >= p  # enough neighbours for a first derivative
    frames = _neighbour_frames(prop, g, act_ids, w, ok_all, cent)
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
    if prop._demodulate:
        slow_all = np.stack([g[t][4] for t in act_ids])
        slow_c = slow_all[cent]
        slow_nb = to_frame(slow_all[lb], u_ab)
        energies = np.stack([s.elec[i].energies for i in local]) if len(local) else \
            np.zeros((0, s.rho.shape[1]))  # a rank without trajectories
        kappa = fl.coherence_wavevectors(energies, frame.velocity(s.momenta[local] / prop.masses))
    quadratic = prop._method.geometric
    drho_c, d2rho_c = fl.rho_derivatives_pairs(la, n_loc, dx, wp, h, rho_nb, rho_c, slow_nb, slow_c,
                                               kappa, quadratic, prop.ridge)
    dlnn_c = fl.grad_log_density_at(c, w[cent], h, cent)
    drho = frame.first_to_cartesian(drho_c)
    d2rho = frame.second_to_cartesian(d2rho_c)
    dl = frame.first_to_cartesian(dlnn_c)
    gm = fl.metrics(s.rho[local], drho)
    bad = ~ok | ~np.isfinite(drho).all(axis=(1, 2, 3)) | ~np.isfinite(d2rho).all(axis=(1, 2, 3)) \
        | ~np.isfinite(dl).all(axis=1) | ~np.isfinite(gm).all(axis=(1, 2))
    dg = np.zeros((n_loc, d, d, d))
    inv_mass = 1.0 / prop.masses
    if prop._method.geometric:
        g_all = prop.comm.allgather({int(s.ids[i]): gm[n] for n, i in enumerate(local) if not bad[n]})
        g_all = {k: v for part in g_all for k, v in part.items()}
        have = np.array([t in g_all for t in act_ids])[lb]
        g_arr = np.stack([g_all.get(t, np.zeros((d, d))) for t in act_ids])
        dg_c, _ = fl.local_fit_pairs(la[have], n_loc, dx[have], g_arr[lb[have]] - gm[la[have]], wp[have],
                                     h, False, prop.ridge)
        dg = frame.first_to_cartesian(dg_c)
        bad |= ~np.isfinite(dg).all(axis=(1, 2, 3))
    fq = None
    if prop.quantum_force:
        dlnn_all = fl.grad_log_density_at(c, w, h, np.arange(n_act))
        fq_c = fl.quantum_force_pairs(la, n_loc, dx, wp, h, dlnn_c, dlnn_all[lb],
                                      frame.inverse_metric(inv_mass), prop.ridge)
        fq = frame.first_to_cartesian(fq_c)
        bad |= ~np.isfinite(fq).all(axis=1)
    for arr in (drho, d2rho, dl, gm, dg) + ((fq,) if fq is not None else ()):
        arr[bad] = 0.0
    s.fields_fallback[local] = bad
    if n_loc:
        s.extra[local] = extra_generator(prop._method, inv_mass, dl, drho, d2rho)
        if prop._method.hopping:
            return
        s.f_geometric[local], s.f_qc[local] = extra_forces(prop._method, inv_mass, dl, gm, dg)
        if fq is not None:
            s.f_qc[local] += fq


def _accumulated_fields(prop, s: Swarm) -> None:
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
    if prop.coherence_gradient == "energy_consistent":
        f_loc = dc.energy_consistent(f_loc, adiabatic_energies(s, range(len(s.elec))),
                                     np.real(np.diagonal(s.rho, axis1=1, axis2=2)), s.momenta,
                                     prop.masses)
    local = np.flatnonzero(s.active)
    mine = (np.asarray(s.ids)[local], s.positions[local],
            np.real(np.diagonal(s.rho[local], axis1=1, axis2=2)), f_loc[local])
    parts = prop.comm.allgather(mine) if getattr(prop.comm, "size", 1) > 1 else [mine]
    all_ids, pos, pops, f_all = (np.concatenate([q[k] for q in parts]) for k in range(4))
    order = np.argsort(all_ids, kind="stable")  # by id: the same arrays on any number of ranks
    all_ids, pos, pops, f_all = all_ids[order], pos[order], pops[order], f_all[order]
    act_ids = all_ids.tolist()
    inv_mass = 1.0 / prop.masses
    s.extra = np.zeros_like(s.rho)
    s.f_geometric = np.zeros_like(s.positions)
    s.f_qc = np.zeros_like(s.positions)
    if not act_ids:
        return
    n_act = len(act_ids)
    frame = swarm_frame(pos, prop.masses, prop._molecule, max_dim=max_subspace_dim(n_act))
    c, p = frame.coords, frame.dim
    if p == 0:  # no spread (one trajectory, or all at one point): zero fields
        s.fields_fallback[local] = True  # (every rank returns here: same swarm)
        return
    h = fl.bandwidth(pos, prop.bandwidth_factor, prop.bandwidth_bohr) if frame.kind == "cartesian" \
        else fl.bandwidth(c, prop.bandwidth_factor)
    pa, pb, pw = nb.kernel_pairs(c, h, prop.cutoff)
    kernel_ok = np.bincount(pa, minlength=n_act) >= p  # local tier
    gauss = None
    if not kernel_ok.all():
        gauss = nb.gaussian_log_density(c)
    idx = np.searchsorted(all_ids, np.asarray(s.ids)[local]).astype(int)
    if not len(local):  # a rank without active trajectories joins the metric exchange
        if prop._method.geometric and getattr(prop.comm, "size", 1) > 1:
            d = prop.masses.shape[0]
            prop.comm.allgather((np.zeros(0, int), np.zeros((0, d, d))))
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
    if prop._method.quantum_coupling:
        g1, g2 = nb.kernel_log_density(c, h, pa, pb, pw, ldx if la is pa else None)
        if gauss is not None:
            g1 = np.where(kernel_ok[:, None], g1, gauss[0])
            g2 = np.where(kernel_ok[:, None], g2, gauss[1][None, :])
        q, alpha = -0.5 * g1, -0.5 * g2
        f_c = frame.covector(f_all, prop.masses)  # (T, N, P)
        if prop.quantum_momentum == "pair_centred":
            qp_c = dc.pair_quantum_momentum(c, q, alpha, pops, f_c)[idx]
        elif prop.quantum_momentum == "ctmqc":  # slope of the kernel Gaussians, 1/(2 h^2)
            slope = np.broadcast_to(0.5 / h**2, c.shape)
            qp_c = dc.pair_quantum_momentum(c, q, slope, pops, f_c, np.inf)[idx]
        elif prop.quantum_momentum == "projected":  # truncated kernel incl. prop weight 1
            wk = nb.kernel_matrix_with_self(pa, pb, pw, n_act)
            qp_c = dc.projected_quantum_momentum(c, wk, h, pops, q, f_c)[idx]
            qp_c = np.where(ok_loc[:, None, None, None], qp_c, q[idx][:, None, None, :])
        else:
            n_st = f_c.shape[1]
            qp_c = np.broadcast_to(q[idx][:, None, None, :], (len(idx), n_st, n_st, p)).copy()
        qp = np.moveaxis(frame.first_to_cartesian(np.moveaxis(qp_c, 3, 1)), 1, 3)  # (L, N, N, D)
        e_loc = adiabatic_energies(s, local)
        closed = dc.closed_states(e_loc, np.real(np.diagonal(rho, axis1=1, axis2=2)), s.momenta[local],
                                  prop.masses, float(prop.closed_kinetic_fraction))
        limit = None
        if prop.power_limit:
            e_kin = 0.5 * np.einsum("tj,tj,j->t", s.momenta[local], s.momenta[local], inv_mass)
            limit = (rho, e_loc, e_kin, prop.dt)
        s.extra[local] += dc.qc_generator(inv_mass, qp, f, rho, closed, limit)
        s.f_qc[local] = dc.qc_force(inv_mass, qp, f, rho, closed, limit)
        if prop.quantum_force:
            fq_c = fl.quantum_force_pairs(la, len(local), ldx, lw, h, g1[idx], g1[lb],
                                          frame.inverse_metric(inv_mass), prop.ridge)
            fq_c[~ok_loc] = 0.0  # the quantum force needs the local tier
            s.f_qc[local] += frame.first_to_cartesian(fq_c)
    if prop._method.geometric:
        geo = replace(prop._method, quantum_coupling=False)
        gm = fl.metrics(rho, drho)
        gparts = prop.comm.allgather((np.asarray(s.ids)[local], gm)) \
            if getattr(prop.comm, "size", 1) > 1 else [(np.asarray(s.ids)[local], gm)]
        g_ids = np.concatenate([q[0] for q in gparts])
        g_arr = np.concatenate([q[1] for q in gparts])[np.argsort(g_ids, kind="stable")]
        dg_c, _ = fl.local_fit_pairs(la, len(local), ldx, g_arr[lb] - gm[la], lw, h, False, prop.ridge)
        if not ok_loc.all():
            dg_c[~ok_loc] = nb.global_linear_fit(c, g_arr, prop.ridge)
        dg = frame.first_to_cartesian(dg_c)
        zero = np.zeros((len(local), pos.shape[1]))
        s.extra[local] += extra_generator(geo, inv_mass, zero, drho, d2rho)
        s.f_geometric[local] = extra_forces(geo, inv_mass, zero, gm, dg)[0]
    bad = ~(np.isfinite(s.extra[local]).all(axis=(1, 2)) & np.isfinite(s.f_qc[local]).all(axis=1)
            & np.isfinite(s.f_geometric[local]).all(axis=1))
    for arr in (s.extra, s.f_qc, s.f_geometric):
        arr[local[bad]] = 0.0
    s.fields_fallback[local] = bad


def _neighbour_frames(prop, g, act_ids, w, ok, mine) -> dict:
    """polar(<u(a)|u(b)>) for every neighbour pair a < b (indices into ``act_ids``) that
    touches a trajectory of this rank and that a centre with enough neighbours needs
    (``ok``). Each pair is computed once, by the rank that owns a, batched over a's
    neighbours b > a, and shared: the other member uses polar(S)^+ = polar(S^+). The same
    calls on any number of ranks, so results do not depend on it. A pair whose overlap
    fails (or is not finite) is dropped from the neighbours of both.

    Returns {"weights": w without failed pairs, "lookup": f(a, b) -> (K, N, N) U_ab}.
    """
    pa, pb, us, failed = [], [], [], []
    pair_overlaps = getattr(prop.backend, "overlap_pairs", None)
    polar = (lambda x: x) if getattr(prop.backend, "unitary_overlaps", False) else unitarize
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
            u = polar(overlaps(prop.backend, g[act_ids[a]][2], [g[act_ids[b]][2] for b in nbrs]))
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
    parts = prop.comm.allgather(part) if getattr(prop.comm, "size", 1) > 1 else [part]
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


def gather(prop, s: Swarm) -> dict:
    """{trajectory id: (position, rho, electronic data, active, slow part of rho or None)}
    over all ranks; the electronic data reduced to what overlaps need
    (``ElectronicData.for_overlaps``); the slow part (``fields.slow_part``) with
    ``demodulate``."""
    slow = [None] * len(s.ids)
    if prop._demodulate and len(s.ids):
        dh = [e.dhdx for e in s.elec]
        slow = fl.slow_parts(s.rho, np.stack([e.energies for e in s.elec]), s.momenta / prop.masses,
                             None if any(x is None for x in dh) else np.stack(dh))
    mine = {int(t): (s.positions[i], s.rho[i], s.elec[i].for_overlaps(), bool(s.active[i]), slow[i])
            for i, t in enumerate(s.ids)}
    out = {}
    for part in prop.comm.allgather(mine):
        out.update(part)
    return out
