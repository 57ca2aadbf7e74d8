"""Fewest-switches surface hopping in the gauge-invariant rho_el frame (``fssh``, ``fssh_qc``).

The nuclei move on one active adiabatic state a (force -dE_a/dx, optionally plus the Berry force
of a); rho_el evolves exactly as in Ehrenfest (i drho/dt = [H_el, rho], carried between the
bases of successive steps by the unitarised step overlap U, ``density``); once per nuclear step
a hop a -> m is drawn. hbar = 1, atomic units throughout.

Hop probabilities (``hop_probabilities``)
    Local diabatization, G. Granucci, M. Persico, A. Toniolo, J. Chem. Phys. 114, 10608 (2001):
    with T the step's propagator from the old adiabatic basis to the new one (T = U^dag Pi, Pi
    the in-step propagator of the locally diabatic frame, ``step_propagator``),

        P_{a->m} = (1 - rho'_aa / rho_aa) Re[(T rho)_ma T*_ma] / (rho_aa - Re[(T rho)_aa T*_aa])

    (zero if rho'_aa >= rho_aa, and clipped at 0), rho' = T rho T^dag. The products
    (T rho)_ma T*_ma are invariant under u_n -> e^{i phi_n} u_n at either end of the step (T
    picks up e^{-i phi'_m} ... e^{i phi_k}, rho the matching phases), so no phase or sign of a
    state is ever chosen; at a trivial (unavoided) crossing T carries the population to the
    other index and the formula forces the hop. The probabilities sum to 1 - rho'_aa/rho_aa
    (unitarity of T): the net population flux out of a, distributed over the targets m by the
    part of it that went to m. This is the paper's gamma_{n->m} dt (Sec. IV A, after Table II),
    integrated over the step.

Coupled-trajectory correction (``fssh_qc``)
    gamma_bar = gamma - (2/p_a) Im(X_am rho_ma), X = the quantum-coupling generator
    sum_j u^j d_j rho (the paper's approximate form, which neglects the geometric term; the same
    swarm estimator as ``ehrenfest_qc``, ``methods.extra_generator``), evaluated at the start of
    the step; added as dt * (-(2/p_a) Im(X_am rho_ma)) to P_{a->m}, then clipped at 0.

Energy conservation at a hop (``rescale_momentum``)
    p -> p + g h with h the rescaling direction and g the root of smaller |g| of
    sum_k (p_k + g h_k)^2 / 2M_k = sum_k p_k^2 / 2M_k - (E_m - E_a). ``coupling``: h is the
    principal real direction of the interstate vector h_am = <u_a|dH/dx|u_m> = (E_m - E_a) d_am
    (``real_direction``): the top eigenvector of Re(h h^dag) = Re h Re h^T + Im h Im h^T, which
    is unchanged by h -> e^{i chi} h (the only thing a phase change of u_a or u_m does to h), and
    for a real h is h itself; its sign is irrelevant. ``momentum``: h = p. Frustrated (no real
    root): ``keep`` the momentum, or ``reverse`` its component along h (p -> p - (b/a) h, kinetic
    energy unchanged).

Decoherence (``edc``)
    Energy-based decoherence correction, G. Granucci, M. Persico, J. Chem. Phys. 126, 134114
    (2007): after the step, c_m -> c_m exp(-dt/tau_m) for m != a with
    tau_m = (1/|E_m - E_a|)(1 + C/E_kin), and c_a rescaled to keep the norm. On rho this is
    rho -> S rho S with S = diag(s) real and positive: purity, Hermiticity and gauge covariance
    are kept.

Berry force (``berry_force``)
    F_k = sum_j Omega_kj v^j with Omega_kj = -2 Im Q_kj, Q_kj = Tr(P_a d_k P_a d_j P_a)
    = sum_{m != a} conj(d^k_ma) d^j_ma (Eq. 73 with rho = P_a = |u_a><u_a|; Eq. 97), from the
    backend's dhdx (d^k_ma = (dH_k)_ma / (E_a - E_m)). Zero for real Hamiltonians.

Random numbers: one uniform number per (trajectory id, step) from
``SeedSequence([seed, FSSH_STREAM, id, step])`` (``hop_uniform``): the same hops on any number
of MPI ranks and after a restart, with no generator state to checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qhd_aimd.dynamics.density import expm_hermitian, pure_state

#: distinguishes the hop stream from the other uses of ``initial.seed``
FSSH_STREAM = 0x46535348


@dataclass(frozen=True)
class HoppingOptions:
    """Options of the hopping algorithm (config section ``hopping:``).

    decoherence : 'edc' | 'none'; edc_constant_hartree : C of the EDC (hartree);
    rescale : 'coupling' | 'momentum'; frustrated : 'keep' | 'reverse';
    berry_force : add the Berry force of the active state (models with dhdx).
    """

    decoherence: str = "edc"
    edc_constant_hartree: float = 0.1
    rescale: str = "coupling"
    frustrated: str = "keep"
    berry_force: bool = False

    @classmethod
    def from_config(cls, spec) -> "HoppingOptions":
        if spec is None:
            return cls()
        return cls(spec.decoherence, spec.edc_constant_hartree, spec.rescale, spec.frustrated,
                   spec.berry_force)


def hop_uniform(seed: int, trajectory_id: int, step: int) -> float:
    """The uniform number in [0, 1) that decides the hop of ``trajectory_id`` at ``step``."""
    ss = np.random.SeedSequence([int(seed), FSSH_STREAM, int(trajectory_id), int(step)])
    return float(np.random.default_rng(ss).random())


def step_propagator(energies_old, energies_new, u, dt: float, n_substeps: int) -> np.ndarray:
    """T = U^dag Pi: the electronic propagator of one nuclear step from the old adiabatic basis
    to the new one, (T, N, N) complex.

    Pi is the product of the exponential mid-point sub-steps of ``density.liouville_step`` (H
    interpolated linearly between diag(E_old) and U diag(E_new) U^dag in the old basis), so
    T rho T^dag is the Ehrenfest step of ``liouville_step`` without the extra generator.
    energies (T, N) hartree; u (T, N, N) unitarised step overlap; dt a.u. of time.
    """
    n = energies_old.shape[-1]
    h0 = _diag(energies_old)
    h1 = u @ _diag(energies_new) @ _dag(u)
    tau = dt / n_substeps
    prop = np.broadcast_to(np.eye(n, dtype=complex), h0.shape).copy()
    for k in range(n_substeps):
        s = (k + 0.5) / n_substeps
        prop = expm_hermitian((1.0 - s) * h0 + s * h1, tau) @ prop
    return _dag(u) @ prop


def hop_probabilities(rho: np.ndarray, t: np.ndarray, active: np.ndarray,
                      floor: float = 1e-12) -> np.ndarray:
    """Local-diabatization hop probabilities P_{a->m} of one step (module docstring), (T, N).

    rho (T, N, N) at the start of the step (old basis); t (T, N, N) the step propagator
    (``step_propagator``); active (T,) int. Entry [i, a_i] is 0. Zero when rho_aa < ``floor``.
    """
    idx = np.arange(len(active))
    trho = t @ rho
    rho_new = trho @ _dag(t)
    paa = np.real(rho[idx, active, active])
    paa_new = np.real(rho_new[idx, active, active])
    flux = np.real(trho[idx, :, active] * t[idx, :, active].conj())  # (T, N): Re (T rho)_ma T*_ma
    denom = paa - flux[idx, active]
    ok = (paa > floor) & (paa_new < paa) & (denom > floor * paa)
    frac = np.where(ok, (paa - paa_new) / np.where(ok, paa, 1.0), 0.0)
    p = np.clip(frac[:, None] * flux / np.where(ok, denom, 1.0)[:, None], 0.0, None)
    p[idx, active] = 0.0
    return p


def qc_correction(rho: np.ndarray, x: np.ndarray, active: np.ndarray, dt: float,
                  floor: float = 1e-12) -> np.ndarray:
    """dt * (-(2/p_a) Im(X_am rho_ma)): the seed's coupled-trajectory term of the hop
    probability (Sec. IV A), (T, N); rho, x (T, N, N) in the same basis, x in hartree."""
    idx = np.arange(len(active))
    paa = np.real(rho[idx, active, active])
    term = np.imag(x[idx, active, :] * rho[idx, :, active])  # Im(X_am rho_ma), (T, N)
    out = np.where((paa > floor)[:, None], -2.0 * dt * term / np.maximum(paa, floor)[:, None], 0.0)
    out[idx, active] = 0.0
    return out


def choose_target(probabilities: np.ndarray, active: int, r: float) -> int | None:
    """The state m with cumulative probability (states in index order, a skipped) first above r,
    or None (no hop). Total probabilities above 1 are scaled to 1."""
    p = np.asarray(probabilities, float).copy()
    p[active] = 0.0
    total = p.sum()
    if total > 1.0:
        p /= total
    cum = np.cumsum(p)
    hit = np.flatnonzero(r < cum)
    return int(hit[0]) if len(hit) else None


def real_direction(h: np.ndarray) -> np.ndarray:
    """Gauge-invariant real direction (D,) of a complex vector h (D,): the top eigenvector of
    Re(h h^dag), scaled to |h| (sign arbitrary). Unchanged (up to sign) by h -> e^{i chi} h."""
    h = np.asarray(h)
    if not np.iscomplexobj(h) or not np.any(np.imag(h)):
        return np.real(h).astype(float)
    m = np.outer(h.real, h.real) + np.outer(h.imag, h.imag)
    w, v = np.linalg.eigh(m)
    return v[:, -1] * np.sqrt(max(w[-1], 0.0))


def rescale_momentum(p: np.ndarray, masses: np.ndarray, h: np.ndarray, de: float,
                     frustrated: str = "keep") -> tuple[np.ndarray, bool]:
    """Momentum after a hop that changes the potential energy by ``de`` = E_m - E_a (hartree),
    adjusting p (D,) along h (D,) only; masses (D,) m_e.

    Returns (new momentum, accepted). Not accepted (frustrated): the momentum is kept
    (``frustrated='keep'``) or its component along h reversed (``'reverse'``).
    """
    inv_m = 1.0 / masses
    a = 0.5 * np.sum(h * h * inv_m)
    b = np.sum(p * h * inv_m)
    if a <= 0.0:
        return p.copy(), False
    disc = b * b - 4.0 * a * de
    if disc < 0.0:
        if frustrated == "reverse":
            return p - (b / a) * h, False
        return p.copy(), False
    root = np.sqrt(disc)
    g = (-b + root) / (2 * a) if b >= 0 else (-b - root) / (2 * a)
    return p + g * h, True


def edc(rho: np.ndarray, energies: np.ndarray, active: np.ndarray, e_kin: np.ndarray, dt: float,
        c_hartree: float = 0.1) -> np.ndarray:
    """Energy-based decoherence over dt (module docstring), batched: rho (T, N, N), energies
    (T, N) hartree, active (T,) int, e_kin (T,) hartree. Trajectories with rho_aa = 0 or no
    kinetic energy are returned unchanged."""
    idx = np.arange(len(active))
    paa = np.real(rho[idx, active, active])
    ok = (paa > 0.0) & (e_kin > 0.0)
    gap = np.abs(energies - energies[idx, active][:, None])
    s = np.exp(-dt * gap / (1.0 + c_hartree / np.where(ok, e_kin, 1.0))[:, None])
    s[idx, active] = 0.0
    rest = np.sum(s**2 * np.real(np.diagonal(rho, axis1=-2, axis2=-1)), axis=-1)
    s[idx, active] = np.sqrt(np.clip(1.0 - rest, 0.0, None) / np.where(ok, paa, 1.0))
    out = s[:, :, None] * rho * s[:, None, :]
    out /= np.real(np.trace(out, axis1=-2, axis2=-1))[:, None, None]
    return np.where(ok[:, None, None], out, rho)


def berry_force(dhdx: np.ndarray, energies: np.ndarray, active: int,
                velocity: np.ndarray) -> np.ndarray:
    """(D,) hartree/bohr: sum_j Omega_kj v^j of the active state (module docstring);
    dhdx (D, N, N), energies (N,), velocity (D,) bohr per a.u. of time."""
    others = [m for m in range(len(energies)) if m != active]
    d = dhdx[:, others, active] / (energies[active] - energies[others])[None, :]  # d^k_ma, (D, M)
    q = np.einsum("km,jm->kj", d.conj(), d)
    omega = -2.0 * np.imag(q)
    return omega @ velocity


def active_projector(n: int, a: int) -> np.ndarray:
    """P_a = |u_a><u_a| in the adiabatic basis: the 'density' whose force is -dE_a/dx."""
    return pure_state(n, a)


def _diag(e):
    out = np.zeros(e.shape + (e.shape[-1],), dtype=complex)
    i = np.arange(e.shape[-1])
    out[..., i, i] = e
    return out


def _dag(a):
    return np.swapaxes(a.conj(), -1, -2)
