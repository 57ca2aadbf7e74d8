"""Coherence gradients from accumulated adiabatic momenta and the pair-centred quantum momentum.

An alternative to regressing the neighbours' rho (``fields``) for the two swarm fields that make
the quantum-coupling term hbar sum_j u^j d_j rho of Table II decohere (theory.md, "Decoherence in
the coupled methods"):

* **d_j rho of the coherences.** Write the (pure, Eq. 66) rho_el = |C><C| with adiabatic
  amplitudes C_n = |C_n| e^{i S_n}. The phase gradient d_j S_n is the momentum the nuclear
  branch on state n has gained relative to the others; each trajectory accumulates it along its
  own path, f_n = -int d_j E_n dt (the "adiabatic momentum" of CT-MQC: Min, Agostini & Gross,
  PRL 115, 073001 (2015)). Neglecting the amplitude gradient, d_j rho_nm = i (f_n - f_m)_j
  rho_nm = i [F_j, rho] with F_j = diag(f_.j), and d_j^2 rho = -[F_j, [F_j, rho]]. f_n is a
  scalar per state and degree of freedom built from the adiabatic energies only, so d rho
  transforms like rho under any re-phasing of the states (gauge covariant) and no neighbour
  overlap or phase is needed. f is reset to zero where a state's population leaves
  [``POP_MIN``, 1 - ``POP_MIN``] (no coherence left to carry a phase; CT-MQC practice).
  With this d rho, X = sum_j xi_j Q_j d_j rho is exactly the CT-MQC decoherence term and
  2 sum_j xi_j Q_j g_kj (g_kj = Re Tr(rho d_k rho d_j rho)) its force (``qc_generator``,
  ``qc_force``).
* **Quantum momentum** Q_j = -(hbar/2) d_j ln n (u^j = xi_j Q_j). From the kernel density,
  Q_a = alpha_a (x_a - c_a) with the local slope alpha_a = -1/2 d^2 ln n (diagonal) and local
  centre c_a. Pair-centred (Gossel, Agostini & Maitra, JCTC 14, 4513 (2018)): for each pair of
  states (n, m) and degree of freedom the centre is replaced by one swarm-wide centre R_nm
  chosen so that sum_a |rho_nm,a|^2 (f_n - f_m)_a,j Q_nm,a,j = 0, i.e. the quantum-coupling term
  moves no net population between n and m over the swarm when the couplings vanish (the exact
  property the kernel estimate violates). Where R_nm is farther than ``CENTRE_MAX_SIGMA`` swarm
  standard deviations from a trajectory, or the slope is not positive, that trajectory keeps
  its kernel Q (documented fallback).
* **Projected quantum momentum** (default, ``projected_quantum_momentum``): per pair of states,
  Q_nm = (p~_m Q_n + p~_n Q_m) / (p~_n + p~_m) with Q_k = -1/2 d ln n_k of the state-resolved
  kernel densities n_k = n p_k: the rate at which the exact local populations change as the
  branches separate (population-gradient part of the quantum momentum projected on the pair,
  cf. Arribas & Maitra, PRL 133, 233201 (2024)), shifted so that it moves no net population.

Shapes: T trajectories, N states, D degrees of freedom; lengths bohr, momenta a.u., hbar = 1.
"""

from __future__ import annotations

import numpy as np

POP_MIN = 0.01  # populations outside [POP_MIN, 1 - POP_MIN]: adiabatic momentum reset to 0
CENTRE_MAX_SIGMA = 5.0  # pair centre farther than this many swarm std: kernel Q kept
# the quantum-coupling term stops filling state n when E_kin < CLOSED_KINETIC_FRACTION (E_n - Tr rho H)
CLOSED_KINETIC_FRACTION = 0.1


def energy_gradients(dhdx: np.ndarray) -> np.ndarray:
    """d_j E_n from <u_n|d_j H|u_n>, (N, D) hartree/bohr, for one trajectory's dhdx (D, N, N)."""
    return np.real(np.diagonal(dhdx, axis1=1, axis2=2)).T


def accumulate(f: np.ndarray, grad_old: np.ndarray, grad_new: np.ndarray, pops: np.ndarray,
               dt: float, pop_min: float = POP_MIN) -> np.ndarray:
    """Advance the adiabatic momenta over one step, f_n -= dt/2 (dE_n(t) + dE_n(t+dt)).

    f, grad_old, grad_new (T, N, D); pops (T, N) populations at t+dt. A trajectory's f is reset
    to zero for the states whose population is outside [pop_min, 1 - pop_min] (returns a copy).
    """
    out = f - 0.5 * dt * (grad_old + grad_new)
    keep = (pops > pop_min) & (pops < 1.0 - pop_min)
    return np.where(keep[..., None], out, 0.0)


def energy_consistent(f: np.ndarray, energies: np.ndarray, pops: np.ndarray, momenta: np.ndarray,
                      masses: np.ndarray, pop_min: float = POP_MIN) -> np.ndarray:
    """Adiabatic momenta with their component along the flow set by energy conservation, (T, N, D).

    f (T, N, D); energies, pops (T, N); momenta (T, D); masses (D,). Each f_n is split as
    a_n p + f_perp with f_perp . v = 0 (v = p / M) and a_n is replaced by lambda_n - 1,
    lambda_n = sqrt(max(K + E_bar - E_n, 0) / K), K = sum p^2 / 2M, E_bar = sum_n p_n E_n: the
    branch on state n moves along the trajectory with the momentum lambda_n p that conserves its
    energy. Accumulated forces alone miss the momentum a branch gets when it is created at a
    crossing (on Tully's simple model the gap is the same on both sides, so f_1 - f_0 -> 0 while
    the branches' momenta differ by ~ Delta E / v); this is the coherences' phase gradient
    Delta E / v that ``fields.coherence_wavevector`` demodulates, bounded where a branch turns back
    (lambda_n = 0). To first order v . (f_n - f_m) = -(E_n - E_m), the condition under which the
    quantum-coupling generator and force together conserve E_kin + Tr(rho H_el) (``qc_force``).
    Energies and momenta only: gauge invariant. Trajectories at rest keep f, and so do states
    whose population is outside [pop_min, 1 - pop_min] (there ``accumulate`` has reset f to 0):
    a coherence that only follows the states adiabatically (e.g. berry_2d's passage, P1 ~ 1e-7)
    does not turn with the flow, and giving it the branch wavevector Delta E / v (10 /bohr there)
    broke that passage (geometric methods: Berry kick -2.6 instead of -5; measured).
    """
    v = momenta / masses
    pv = np.einsum("tj,tj->t", momenta, v)  # 2 K
    ok = pv > 1e-300
    safe = np.where(ok, pv, 1.0)
    a = np.einsum("tnj,tj->tn", f, v) / safe[:, None]
    e_bar = np.einsum("tn,tn->t", pops, energies)
    kin = 0.5 * pv
    lam = np.sqrt(np.maximum(kin[:, None] + e_bar[:, None] - energies, 0.0) / np.where(ok, kin, 1.0)[:, None])
    out = f + ((lam - 1.0) - a)[:, :, None] * momenta[:, None, :]
    mixed = (pops > pop_min) & (pops < 1.0 - pop_min)
    return np.where(ok[:, None, None] & mixed[:, :, None], out, f)


def coherence_derivatives(rho: np.ndarray, f: np.ndarray):
    """d_j rho = i [F_j, rho] and d_j^2 rho = -[F_j, [F_j, rho]], each (T, D, N, N).

    rho (T, N, N) in each trajectory's own basis; f (T, N, D). Phase (momentum) part only:
    d_j rho_nm = i (f_n - f_m)_j rho_nm (the populations' gradient is neglected, as in CT-MQC).
    """
    df = f[:, :, None, :] - f[:, None, :, :]  # (T, N, N, D): f_n - f_m
    df = np.moveaxis(df, 3, 1)  # (T, D, N, N)
    d1 = 1j * df * rho[:, None]
    return d1, -df**2 * rho[:, None]


def kernel_quantum_momentum(positions: np.ndarray, w: np.ndarray, h: np.ndarray):
    """Q = -1/2 d ln n and its local slope alpha = -1/2 d^2 ln n (diagonal) from the Gaussian
    product-kernel density with weights ``w`` (T, T) and bandwidths ``h`` (D,); each (T, D).

    d ln n_a = sum_b W_ab (x_b - x_a) / h^2 / sum_b W_ab;
    d^2 ln n_a = sum_b W_ab ((x_b - x_a)^2 / h^4 - 1 / h^2) / sum_b W_ab - (d ln n_a)^2.
    """
    diff = positions[None, :, :] - positions[:, None, :]  # x_b - x_a, [a, b, j]
    norm = w.sum(axis=1)[:, None]
    g = np.einsum("ab,abj->aj", w, diff) / (h**2 * norm)
    g2 = np.einsum("ab,abj->aj", w, diff**2) / (h**4 * norm) - 1.0 / h**2 - g**2
    return -0.5 * g, -0.5 * g2


def pair_quantum_momentum(positions: np.ndarray, q: np.ndarray, alpha: np.ndarray,
                          pops: np.ndarray, f: np.ndarray,
                          max_sigma: float = CENTRE_MAX_SIGMA) -> np.ndarray:
    """Pair-centred quantum momentum Q_nm, (T, N, N, D), symmetric in (n, m) (Gossel, Agostini &
    Maitra 2018).

    positions (T, D); q, alpha (T, D) from ``kernel_quantum_momentum`` over the same swarm;
    pops (T, N); f (T, N, D). Per pair and degree of freedom j, with W_a = p_n p_m (f_n - f_m)_j
    and alpha_a > 0: R_nm = sum_a alpha_a W_a x_a / sum_a alpha_a W_a, Q_nm,a = alpha_a (x_a -
    R_nm), so sum_a W_a Q_nm,a = 0 over the trajectories that use it. Trajectories with
    alpha_a <= 0 or |x_a - R_nm| > ``max_sigma`` std of the swarm, and pairs with no coherence
    anywhere, keep the kernel Q. Must be called with the whole (active) swarm.
    """
    t, n = pops.shape
    d = positions.shape[1]
    out = np.broadcast_to(q[:, None, None, :], (t, n, n, d)).copy()
    if t < 2:
        return out
    sigma = positions.std(axis=0)
    ok_slope = alpha > 0
    for a in range(n):
        for b in range(a + 1, n):
            wgt = (pops[:, a] * pops[:, b])[:, None] * (f[:, a] - f[:, b]) * np.where(ok_slope, alpha, 0.0)
            den = wgt.sum(axis=0)  # (D,)
            scale = np.abs(wgt).sum(axis=0)
            good = np.abs(den) > 1e-3 * np.maximum(scale, 1e-300)
            centre = np.where(good, (wgt * positions).sum(axis=0) / np.where(good, den, 1.0), 0.0)
            qp = alpha * (positions - centre)
            use = good[None, :] & ok_slope & (np.abs(positions - centre) <= max_sigma * sigma)
            qab = np.where(use, qp, q)
            out[:, a, b] = out[:, b, a] = qab
    return out


def projected_quantum_momentum(positions: np.ndarray, w: np.ndarray, h: np.ndarray,
                               pops: np.ndarray, q: np.ndarray, f=None) -> np.ndarray:
    """State-projected quantum momentum Q_nm, (T, N, N, D), symmetric in (n, m).

    positions (T, D); w (T, T) kernel weights and h (D,) bandwidths (``fields.kernel_matrix``);
    pops (T, N); q (T, D) the kernel Q of the whole density (``kernel_quantum_momentum``), the
    fallback. With the state-resolved densities n_k = n p_k (kernel sums of the neighbours'
    populations, n_k(x_a) = sum_b W_ab p_k,b) and Q_k = -1/2 d ln n_k,

        Q_nm = (p~_m Q_n + p~_n Q_m) / (p~_n + p~_m),   p~_k = n_k / n at x_a.

    Why: if the branch densities n_k move rigidly with velocities v_k while a trajectory moves
    with the mean velocity, the exact local population p_n = n_n / n changes as
    dp_n/dt = sum_m 2 p_n p_m (v_n - v_m) . Q_nm (two states: derived from d_t n_k = -v_k d n_k);
    the CT-MQC term 2 xi Q (f_n - f_m) p_n p_m has this form with Q_nm in place of Q, which it
    equals where the populations are uniform. The difference, -1/2 d p_n (p_m - p_n) / (p_n p_m)
    for two states, is the population-gradient part of the quantum momentum projected on the
    pair (Arribas & Maitra, PRL 133, 233201 (2024)); it makes a population gradient sharpen as
    the branches separate, so decoherence completes. The swarm integral of n p_n p_m Q_nm
    vanishes identically (d/dx [n_n n_m / (n_n + n_m)] for two states): no net population
    transfer between a pair without a centre fit (Gossel, Agostini & Maitra, JCTC 14, 4513
    (2018)). Where n_k vanishes at x_a the kernel Q is used for that pair (documented fallback).
    On a finite swarm that integral is only approximately zero; with ``f`` (T, N, D) the
    adiabatic momenta, each pair's Q is shifted by one swarm-wide constant per degree of
    freedom so that sum_a p_n p_m (f_n - f_m)_j Q_nm,j = 0 holds exactly (the Gossel-Agostini-
    Maitra condition; cf. ``pair_quantum_momentum``). Must then be called with the whole swarm.
    """
    t, n = pops.shape
    d = positions.shape[1]
    nk = w @ pops  # (T, N) state-resolved kernel densities (unnormalised)
    # sum_b W_ab p_k,b (x_b - x_a)_j / h_j^2, as matrix products (no (T, T, D) array)
    px = (w @ (pops[:, :, None] * positions[:, None, :]).reshape(t, n * d)).reshape(t, n, d)
    dnk = (px - nk[:, :, None] * positions[:, None, :]) / h**2  # (T, N, D)
    tot = nk.sum(axis=1)
    ok_k = nk > 1e-12 * np.maximum(tot, 1e-300)[:, None]
    qk = np.where(ok_k[..., None], -0.5 * dnk / np.where(ok_k, nk, 1.0)[..., None], 0.0)
    pt = nk / np.where(tot > 0, tot, 1.0)[:, None]  # smoothed populations
    num = pt[:, None, :, None] * qk[:, :, None, :] + pt[:, :, None, None] * qk[:, None, :, :]
    den = pt[:, :, None] + pt[:, None, :]
    good = ok_k[:, :, None] & ok_k[:, None, :] & (den > 0)
    out = np.where(good[..., None], num / np.where(good, den, 1.0)[..., None],
                   np.broadcast_to(q[:, None, None, :], (t, n, n, d)))
    if f is not None:
        for a in range(n):
            for b in range(a + 1, n):
                wgt = (pops[:, a] * pops[:, b])[:, None] * (f[:, a] - f[:, b])  # (T, D)
                den_w = wgt.sum(axis=0)
                ok = np.abs(den_w) > 1e-3 * np.maximum(np.abs(wgt).sum(axis=0), 1e-300)
                shift = np.where(ok, (wgt * out[:, a, b]).sum(axis=0) / np.where(ok, den_w, 1.0), 0.0)
                out[:, a, b] = out[:, a, b] - shift
                out[:, b, a] = out[:, a, b]
    return out


def coupling_rates(inv_mass: np.ndarray, q_pair: np.ndarray, f: np.ndarray, closed=None,
                   limit=None) -> np.ndarray:
    """K_nm = sum_j xi_j Q_nm,j (f_n - f_m)_j, (T, N, N), hartree (antisymmetric).

    ``closed`` (T, N) bool (``closed_states``): a state the trajectory can no longer fill with
    its kinetic energy only gives population away: K_nm <= 0 for closed n and open m (dp_n/dt =
    2 sum_m K_nm p_n p_m), so the quantum-coupling term never drives Tr(rho H) above the
    trajectory's total energy (where no momentum rescaling can conserve it). The integrator
    uses ``CLOSED_KINETIC_FRACTION`` = 0.1: filling goes on until the kinetic energy is a tenth
    of the gap E_n - Tr(rho H), so a trajectory can decelerate on a mostly-upper mixture and
    turn back (Tully 3's upper-state reflection; with 1, i.e. E_n above the total energy, the
    filling stopped too early and no trajectory reflected).
    """
    df = f[:, :, None, :] - f[:, None, :, :]
    k = np.einsum("j,tnmj,tnmj->tnm", inv_mass, q_pair, df)
    if closed is not None:
        block = closed[:, :, None] & ~closed[:, None, :]  # n closed, m open
        k = np.where(block, np.minimum(k, 0.0), k)
        k = np.where(np.swapaxes(block, 1, 2), np.maximum(k, 0.0), k)
    if limit is not None:  # (rho, energies, e_kin, dt): ``power_limited_rates``
        k = power_limited_rates(k, *limit)
    return k


def power_limited_rates(k: np.ndarray, rho: np.ndarray, energies: np.ndarray, e_kin: np.ndarray,
                        dt: float, fraction: float = 0.5) -> np.ndarray:
    """Coupling rates K (T, N, N) scaled per trajectory so that the quantum-coupling term raises
    Tr(rho H) by at most ``fraction`` of the kinetic energy over one step of ``dt`` a.u.

    rho (T, N, N); energies (T, N) hartree; e_kin (T,) hartree. The rate of Tr(rho H) is
    P = sum_n E_n 2 sum_m K_nm |rho_nm|^2 (``qc_generator``); where P dt > fraction * e_kin the
    whole K of that trajectory is multiplied by fraction * e_kin / (P dt) (K stays antisymmetric,
    generator and force keep their ratio). Guarantees that the energy rescaling after the step
    always has kinetic energy to take from (a trajectory driven by a large quantum momentum into a
    state it can barely reach otherwise overshoots its total energy within one step, and the
    rescaling cannot restore it: measured on Tully 3 k=10 with ``ctmqc`` Q, 72 mHa).
    """
    rate = 2.0 * np.einsum("tnm,tnm->tn", k, np.abs(rho) ** 2)
    power = np.einsum("tn,tn->t", energies, rate)
    budget = fraction * np.maximum(e_kin, 0.0)
    over = power * dt > budget
    scale = np.where(over, budget / np.where(over, power * dt, 1.0), 1.0)
    return k * scale[:, None, None]


def closed_states(energies: np.ndarray, pops: np.ndarray, momenta: np.ndarray,
                  masses: np.ndarray, kinetic_fraction: float = 1.0) -> np.ndarray:
    """(T, N) bool: E_kin < kinetic_fraction * (E_n - Tr(rho H)) (energies, pops (T, N);
    momenta (T, D); masses (D,)). kinetic_fraction 1: E_n above the trajectory's total energy."""
    e_kin = 0.5 * np.einsum("tj,tj,j->t", momenta, momenta, 1.0 / masses)
    gap = energies - np.einsum("tn,tn->t", pops, energies)[:, None]
    return e_kin[:, None] < kinetic_fraction * gap


def qc_generator(inv_mass: np.ndarray, q_pair: np.ndarray, f: np.ndarray, rho: np.ndarray,
                 closed=None, limit=None) -> np.ndarray:
    """Quantum-coupling generator X_nm = i K_nm rho_nm, (T, N, N) Hermitian, hartree.

    With one Q for all pairs this is sum_j xi_j Q_j d_j rho with d rho from
    ``coherence_derivatives`` (the Table II term); for a pure rho it gives the CT-MQC equation
    dC_n/dt = sum_m K_nm |C_m|^2 C_n, population transfer d p_n/dt = 2 sum_m K_nm p_n p_m.
    """
    return 1j * coupling_rates(inv_mass, q_pair, f, closed, limit) * rho


def qc_force(inv_mass: np.ndarray, q_pair: np.ndarray, f: np.ndarray, rho: np.ndarray,
             closed=None, limit=None) -> np.ndarray:
    """Quantum-coupling force F_k = sum_nm |rho_nm|^2 (f_n - f_m)_k K_nm, (T, D) hartree/bohr.

    With one Q for all pairs this is 2 sum_j xi_j Q_j g_kj, g = Re Tr(rho d_k rho d_j rho) for
    the d rho of ``coherence_derivatives`` (the Table II force; CT-MQC's quantum-momentum force).
    Together with ``qc_generator`` it changes E_kin + Tr(rho H_el) at the rate
    sum_nm K_nm |rho_nm|^2 (E_n - E_m + v.(f_n - f_m)), which vanishes only when the adiabatic
    momenta are energy-consistent; ``integrator`` restores the energy by rescaling (see
    ``rescale_momenta``).
    """
    df = f[:, :, None, :] - f[:, None, :, :]
    k = coupling_rates(inv_mass, q_pair, f, closed, limit)
    return np.einsum("tnm,tnmk,tnm->tk", np.abs(rho) ** 2, df, k)


def rescale_momenta(momenta: np.ndarray, masses: np.ndarray, e_pot: np.ndarray,
                    e_target: np.ndarray):
    """Scale each momentum so that sum p^2/2M + e_pot = e_target (energy correction).

    momenta (T, D) a.u.; e_pot, e_target (T,) hartree. Where the target kinetic energy is not
    positive (or there is no kinetic energy to scale) the momentum is left unchanged.
    Returns (new momenta, (T,) bool mask of the trajectories that were corrected).
    """
    e_kin = 0.5 * np.einsum("tj,tj,j->t", momenta, momenta, 1.0 / masses)
    want = e_target - e_pot
    ok = (want > 0) & (e_kin > 0)
    factor = np.sqrt(np.where(ok, want, 1.0) / np.where(ok, e_kin, 1.0))
    return momenta * np.where(ok, factor, 1.0)[:, None], ok
