"""Independent textbook FSSH + energy-based decoherence (EDC) on Tully's 1-D models: a cross-check
of ``qhd_aimd``'s ``fssh`` that shares none of its electronic or hopping code.

Usage: python docs/validation/fssh_edc_independent.py [n_trajectories] [model:k ...]
       > docs/validation/fssh_edc_independent.txt

What is independent: the models (re-typed from J. C. Tully, J. Chem. Phys. 93, 1061 (1990)),
the electronic propagation (diabatic amplitudes, exact 2x2 propagator exp(-i H(x_mid) dtau) on
``N_SUB`` sub-steps with x interpolated linearly over the nuclear step), the adiabatic states
(analytic mixing angle theta(x), tan 2 theta = 2 V12 / (V11 - V22), a smooth real gauge since
V12 > 0 in all three models), Tully's 1990 hop probability in the adiabatic basis
g_{a->m} = sum_sub dtau * b_ma / |c_a|^2, b_ma = -2 Re(c_m^* c_a v d_ma), d_ma = <u_m|d/dx u_a>
(analytic, +-theta'), the hop (after the second half kick of velocity Verlet, momentum rescaled
along x = the coupling direction in 1-D, frustrated hops keep the momentum) and Granucci-Persico
EDC (J. Chem. Phys. 126, 134114 (2007), Eqs. 17-18): after the hop decision, with the new active
state a and the kinetic energy after the hop, c_m -> c_m exp(-dt/tau_m), tau_m = (hbar/|E_m - E_a|)
(1 + C/E_kin), c_a -> c_a sqrt((1 - sum_{m!=a} |c_m|^2)/|c_a|^2), in the adiabatic basis.

What is shared with ``docs/validation/fssh_grid.py`` (on purpose, so that the comparison is at
equal statistics): the Wigner sample of the initial conditions (``sample_wavepacket``, seed 1),
the grid (x0, width 20/k, dt = min(8, 120/k), t_final, the |x| > 9 bohr stop rule), the
trajectory number and the scoring (T/R by active state). The hop random numbers differ (numpy
default_rng(1), one uniform per trajectory and step), so the two codes agree only within noise.

Output per case and variant (``edc`` with C = 0.1 Ha, ``none``): T0 T1 R0 R1, err_TR vs the
exact reference and, when docs/validation/fssh_grid.txt holds the same case, qhd_aimd's row and
z = max over channels of |difference| / sqrt(p1(1-p1)/n + p2(1-p2)/n) (independent samples of
the hop draws; |z| < 2 is agreement within noise).
"""

import pathlib
import sys
import time

import numpy as np

from qhd_aimd.prepare.wavepacket import sample_wavepacket

MASS = 2000.0
N_SUB = 10
X_OUT = 9.0


def tully1(x):
    a, b, c, d = 0.01, 1.6, 0.005, 1.0
    e = np.exp(-b * np.abs(x))
    v11 = np.sign(x) * a * (1.0 - e)
    dv11 = a * b * e
    v12 = c * np.exp(-d * x * x)
    return v11, dv11, -v11, -dv11, v12, -2.0 * d * x * v12


def tully2(x):
    a, b, e0, c, d = 0.1, 0.28, 0.05, 0.015, 0.06
    g = np.exp(-b * x * x)
    v22 = -a * g + e0
    dv22 = 2.0 * a * b * x * g
    v12 = c * np.exp(-d * x * x)
    z = np.zeros_like(x)
    return z, z, v22, dv22, v12, -2.0 * d * x * v12


def tully3(x):
    a, b, c = 6e-4, 0.1, 0.9
    neg = x < 0
    en = np.exp(c * np.where(neg, x, 0.0))
    ep = np.exp(-c * np.where(neg, 0.0, x))
    v12 = np.where(neg, b * en, b * (2.0 - ep))
    dv12 = np.where(neg, b * c * en, b * c * ep)
    z = np.zeros_like(x)
    return z + a, z, z - a, z, v12, dv12


MODELS = {"tully_simple": tully1, "tully_dual": tully2, "tully_extended": tully3}


def adiabatic(model, x):
    """Energies (T, 2) lower/upper, rotation R (T, 2, 2) with columns u_lower, u_upper, forces
    -dE/dx (T, 2) and the coupling d_10 = <u_upper|d/dx u_lower> (T,) (d_01 = -d_10)."""
    v11, dv11, v22, dv22, v12, dv12 = model(x)
    delta = 0.5 * (v11 - v22)
    avg = 0.5 * (v11 + v22)
    w = np.sqrt(delta * delta + v12 * v12)
    theta = 0.5 * np.arctan2(2.0 * v12, v11 - v22)  # upper = (cos, sin), lower = (-sin, cos)
    cs, sn = np.cos(theta), np.sin(theta)
    rot = np.empty(x.shape + (2, 2))
    rot[:, 0, 0], rot[:, 1, 0] = -sn, cs
    rot[:, 0, 1], rot[:, 1, 1] = cs, sn
    energies = np.stack([avg - w, avg + w], axis=1)
    dtheta = 0.5 * ((v11 - v22) * 2.0 * dv12 - 2.0 * v12 * (dv11 - dv22)) / (4.0 * w * w)
    forces = np.empty_like(energies)
    for n in range(2):
        u0, u1 = rot[:, 0, n], rot[:, 1, n]
        forces[:, n] = -(u0 * u0 * dv11 + 2.0 * u0 * u1 * dv12 + u1 * u1 * dv22)
    # d/dx u_lower = theta' (-cos, -sin) = -theta' u_upper  =>  <u_upper|d u_lower> = -theta'
    return energies, rot, forces, -dtheta


def diabatic_propagate(model, x, c, tau):
    """c (T, 2) complex -> exp(-i H(x) tau) c, exact for the real symmetric 2x2 H."""
    v11, _, v22, _, v12, _ = model(x)
    avg, delta = 0.5 * (v11 + v22), 0.5 * (v11 - v22)
    w = np.sqrt(delta * delta + v12 * v12)
    cw, sw = np.cos(w * tau), np.sin(w * tau) / np.where(w > 0, w, 1.0)
    ph = np.exp(-1j * avg * tau)
    c0 = ph * ((cw - 1j * sw * delta) * c[:, 0] - 1j * sw * v12 * c[:, 1])
    c1 = ph * (-1j * sw * v12 * c[:, 0] + (cw + 1j * sw * delta) * c[:, 1])
    return np.stack([c0, c1], axis=1)


def run(name, k, x0, n_traj, decoherence, c_edc=0.1, seed=1, dt_scale=1.0, prob="tully"):
    """Final T (2,), R (2,) fractions by active state, mean |c_n|^2 transmitted / reflected,
    hops and frustrated hops per trajectory. ``prob``: "tully" (Tully 1990, summed over the
    sub-steps) or "step" (max(0, 1 - |c_a(t+dt)|^2/|c_a(t)|^2): the two-state form of the
    step-integrated local-diabatization probability that qhd_aimd uses)."""
    model = MODELS[name]
    dt = min(8.0, 120.0 / k) * dt_scale
    t_final = 1.3 * 2 * abs(x0) * MASS / k
    pos, mom = sample_wavepacket(x0, k, 20.0 / k, n_traj, 1)
    x, p = pos[:, 0].copy(), mom[:, 0].copy()
    rng = np.random.default_rng(seed)
    idx = np.arange(n_traj)
    act = np.zeros(n_traj, int)
    _, rot, forces, _ = adiabatic(model, x)
    c = rot[:, :, 0].astype(complex)  # lower adiabatic state in the diabatic basis
    f = forces[idx, act]
    hops = frustrated = 0
    for step in range(int(round(t_final / dt))):
        if step % 25 == 0 and np.all((np.abs(x) > X_OUT) & (x * p > 0)):
            break
        p_half = p + 0.5 * dt * f
        x_new = x + dt * p_half / MASS
        v = p_half / MASS
        tau = dt / N_SUB
        g = np.zeros(n_traj)
        pop_a = np.abs(np.einsum("tji,tj->ti", rot, c)[idx, act]) ** 2
        for j in range(N_SUB):
            xm = x + (j + 0.5) / N_SUB * (x_new - x)
            c = diabatic_propagate(model, xm, c, 0.5 * tau)
            _, r, _, d10 = adiabatic(model, xm)
            a = np.einsum("tji,tj->ti", r, c)  # adiabatic amplitudes R^T c
            aa, am = a[idx, act], a[idx, 1 - act]
            d_ma = np.where(act == 0, d10, -d10)
            b = -2.0 * np.real(np.conj(am) * aa * v * d_ma)
            g += tau * b / np.maximum(np.abs(aa) ** 2, 1e-14)
            c = diabatic_propagate(model, xm, c, 0.5 * tau)
        x = x_new
        energies, rot, forces, _ = adiabatic(model, x)
        if prob == "step":
            pop_new = np.abs(np.einsum("tji,tj->ti", rot, c)[idx, act]) ** 2
            g = 1.0 - pop_new / np.maximum(pop_a, 1e-14)
        p = p_half + 0.5 * dt * forces[idx, act]
        # hop after the second half kick
        hop = rng.random(n_traj) < np.clip(g, 0.0, None)
        de = energies[idx, 1 - act] - energies[idx, act]
        ke = p * p / (2.0 * MASS)
        ok = hop & (ke >= de)
        frustrated += int((hop & ~ok).sum())
        hops += int(ok.sum())
        p = np.where(ok, np.sign(p) * np.sqrt(np.clip(p * p - 2.0 * MASS * de, 0.0, None)), p)
        act = np.where(ok, 1 - act, act)
        f = forces[idx, act]
        if decoherence == "edc":
            a = np.einsum("tji,tj->ti", rot, c)
            ke = p * p / (2.0 * MASS)
            gap = np.abs(energies[idx, 1 - act] - energies[idx, act])
            s = np.exp(-dt * gap / (1.0 + c_edc / ke))
            am = a[idx, 1 - act] * s
            aa = a[idx, act]
            rest = 1.0 - np.abs(am) ** 2
            aa = aa * np.sqrt(rest / np.maximum(np.abs(aa) ** 2, 1e-300))
            a[idx, 1 - act], a[idx, act] = am, aa
            c = np.einsum("tij,tj->ti", rot, a)
    right = x > 0
    on = np.stack([act == 0, act == 1], axis=1)
    pops = np.abs(np.einsum("tji,tj->ti", adiabatic(model, x)[1], c)) ** 2
    return ((on & right[:, None]).mean(0), (on & ~right[:, None]).mean(0),
            (pops * right[:, None]).mean(0), (pops * ~right[:, None]).mean(0),
            hops / n_traj, frustrated / n_traj)


def lower_path_populations(name, k, x_end=10.0, dt=0.5):
    """Upper adiabatic population |c_1|^2 along ONE classical path on the lower surface from
    x = -10 at momentum k (no hops, no decoherence): at x = 0 (between the two Tully 2
    crossings) and at x_end. Coherent two-crossing value vs the incoherent 2P(1-P) that a full
    decoherence between the crossings gives (P = the x = 0 value)."""
    model = MODELS[name]
    x, p = np.array([-10.0]), np.array([k])
    _, rot, forces, _ = adiabatic(model, x)
    c = rot[:, :, 0].astype(complex)
    p_mid = None
    while x[0] < x_end:
        p_half = p + 0.5 * dt * forces[:, 0]
        x_new = x + dt * p_half / MASS
        for j in range(4):
            c = diabatic_propagate(model, x + (j + 0.5) / 4 * (x_new - x), c, dt / 4)
        if x[0] < 0.0 <= x_new[0]:
            p_mid = abs(np.einsum("tji,tj->ti", adiabatic(model, x_new)[1], c)[0, 1]) ** 2
        x = x_new
        _, rot, forces, _ = adiabatic(model, x)
        p = p_half + 0.5 * dt * forces[:, 0]
    return p_mid, abs(np.einsum("tji,tj->ti", rot, c)[0, 1]) ** 2


def qhd_rows(path):
    """{(model, k): {variant: [T0, T1, R0, R1]}} from docs/validation/fssh_grid.txt."""
    out, key = {}, None
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        if line.startswith("#") or line.startswith("model"):
            continue
        f = line.split()
        if len(f) >= 8 and f[0] in MODELS:
            key = (f[0], float(f[1]))
            out[key] = {"exact": [float(v) for v in f[4:8]]}
        elif key and len(f) >= 5 and f[0] in ("fssh", "fssh_none"):
            try:
                out[key][f[0]] = [float(v) for v in f[1:5]]
            except ValueError:
                pass
    return out


GRID = ([("tully_simple", k, -10.0) for k in (10.0, 15.0, 20.0, 30.0)]
        + [("tully_dual", k, -10.0) for k in (20.0, 30.0, 40.0, 50.0)])


def main(n_traj=500, only=None):
    ref = qhd_rows(pathlib.Path(__file__).with_name("fssh_grid.txt"))
    print(f"# independent FSSH (+EDC C = 0.1 Ha), {n_traj} trajectories, same Wigner sample as "
          "fssh_grid.py; qhd = qhd_aimd fssh_grid.txt row (500 trajectories)")
    print("model           k  variant   code     T0     T1     R0     R1  err_TR  |z|max  |frac-rho|  hops  frustr  wall_s")
    for name, k, x0 in GRID + [("tully_extended", k, -15.0) for k in (8.0, 10.0, 25.0, 30.0)]:
        if (only and f"{name}:{k:g}" not in only) or (not only and name == "tully_extended"):
            continue
        case = ref.get((name, k), {})
        exact = case.get("exact")
        for dec, qname in (("edc", "fssh"), ("none", "fssh_none")):
            t0 = time.perf_counter()
            t_, r_, te, re, hops, fr = run(name, k, x0, n_traj, dec)
            incons = np.abs(t_ - te).sum() + np.abs(r_ - re).sum()
            wall = time.perf_counter() - t0
            mine = np.concatenate([t_, r_])
            err = f"{np.abs(mine - exact).sum():6.3f}" if exact else "   n/a"
            other = case.get(qname)
            z = "   n/a"
            if other is not None:
                o = np.array(other)
                var = mine * (1 - mine) / n_traj + o * (1 - o) / 500
                zz = np.abs(mine - o) / np.sqrt(np.where(var > 0, var, np.inf))
                z = f"{zz.max():6.2f}"
            print(f"{name:15s} {k:3.0f}  {dec:8s} indep  " + " ".join(f"{v:6.3f}" for v in mine)
                  + f"  {err}  {z}  {incons:9.3f}  {hops:4.2f}  {fr:6.2f}  {wall:6.1f}", flush=True)
            if other is not None:
                qerr = f"{np.abs(np.array(other) - exact).sum():6.3f}" if exact else "   n/a"
                print(f"{'':15s} {'':3s}  {dec:8s} qhd    " + " ".join(f"{v:6.3f}" for v in other)
                      + f"  {qerr}", flush=True)
        if exact:
            print(f"{'':15s} {'':3s}  {'':8s} exact  " + " ".join(f"{v:6.3f}" for v in exact),
                  flush=True)


    if not only or any(o.startswith("tully_dual") for o in only):
        print("# Tully 2, one classical path on the lower surface from x = -10 at momentum k: upper"
              " population P at x = 0 (after the first crossing), after both crossings coherently,"
              " and the incoherent 2P(1-P) left when the coherence is destroyed between them")
        for k in (20.0, 30.0, 40.0, 50.0):
            p_mid, p_end = lower_path_populations("tully_dual", k)
            print(f"tully_dual {k:3.0f}  P(x=0) {p_mid:6.3f}  coherent {p_end:6.3f}  "
                  f"incoherent 2P(1-P) {2 * p_mid * (1 - p_mid):6.3f}", flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    main(int(args[0]) if args and args[0].isdigit() else 500, [a for a in args if ":" in a])
