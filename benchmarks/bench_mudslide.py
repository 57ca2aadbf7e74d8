"""Ehrenfest on Tully's simple avoided crossing: qhd_aimd vs mudslide (PyPI, ``bench`` extra).

Same initial conditions (Wigner sample of the wavepacket, ``sample_wavepacket``), same dt and
number of steps, ground adiabatic state. Figures: wall time per trajectory-step of each code and
their ratio, and the swarm-averaged final adiabatic populations.

Physics differences (so the populations are compared with a loose tolerance):
* mudslide 0.12 ``Ehrenfest._force`` sums only rho_ii * F_i (diagonal Hellmann-Feynman terms);
  the off-diagonal (E_j - E_i) d_ij rho_ij part of -Tr(rho dH/dx) is missing, so its total
  energy is not conserved; qhd_aimd uses the full mean-field force;
* electronic propagation: mudslide one exponential mid-point step with the NAC term per nuclear
  step; qhd_aimd 20 sub-steps in the locally diabatic frame (overlap transport).
Both total-energy drifts are reported.

Targets: time per trajectory-step ratio mudslide/qhd_aimd >= 1 (lock-step batching must not be
slower than a per-trajectory code); |P1(qhd) - P1(mudslide)| <= 0.02.

FSSH part (``fssh_side_by_side``): mudslide's ``SurfaceHoppingMD`` (Tully's hopping, rescaling
along the derivative coupling, no decoherence correction) vs qhd_aimd ``fssh`` with
``decoherence: none`` (local-diabatization probabilities from the step propagator, rescaling
along the gauge-invariant coupling direction) on Tully 1 (k = 15, 30) and Tully 2 (k = 20, 30),
same Wigner sample (width 20/k), dt = 4 a.u., t_final = 1.3 * 2 |x0| M / k. Targets: final
fraction on each channel (transmitted / reflected x active state) within two standard errors
of the difference; time per trajectory-step mudslide/qhd_aimd reported.

    python benchmarks/bench_mudslide.py [--quick] [--fssh-only]
"""

from __future__ import annotations

import sys
import time

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from common import Report, quick_flag  # noqa: E402


def fssh_side_by_side(rep, quick):
    """Surface hopping, qhd_aimd vs mudslide (module docstring)."""
    import mudslide
    from mudslide.models import TullyDualAvoidedCrossing, TullySimpleAvoidedCrossing

    from qhd_aimd.dynamics.hopping import HoppingOptions
    from qhd_aimd.dynamics.integrator import Propagator
    from qhd_aimd.electronic.models import ModelBackend, get_model
    from qhd_aimd.prepare.wavepacket import sample_wavepacket

    n_traj, dt, x0, mass = (40 if quick else 200), 4.0, -10.0, 2000.0
    mud_models = {"tully_simple": TullySimpleAvoidedCrossing, "tully_dual": TullyDualAvoidedCrossing}
    rows = []
    for name, k in (("tully_simple", 15.0), ("tully_simple", 30.0), ("tully_dual", 20.0), ("tully_dual", 30.0)):
        t_final = 1.3 * 2 * abs(x0) * mass / k
        n_steps = int(round(t_final / dt))
        pos, mom = sample_wavepacket(x0, k, 20.0 / k, n_traj, 1)
        prop = Propagator(ModelBackend(get_model(name)), "fssh", dt, 10,
                          hopping=HoppingOptions(decoherence="none"), seed=1)
        t0 = time.perf_counter()
        s = prop.initialize(np.arange(n_traj), pos, mom, np.zeros(n_traj, int))
        for _ in range(n_steps):
            s = prop.step(s)
        per_ours = (time.perf_counter() - t0) / (n_traj * n_steps)
        ours = _channels(s.positions[:, 0] > 0, s.active_state)
        model = mud_models[name]()
        t0 = time.perf_counter()
        right, state, steps = [], [], 0
        for i in range(n_traj):
            traj = mudslide.SurfaceHoppingMD(model, pos[i].copy(), mom[i] / mass, 0, dt=dt,
                                             max_steps=n_steps, seed_sequence=i)
            traj.simulate()
            steps += n_steps
            right.append(traj.position[0] > 0)
            state.append(traj.state)
        per_mud = (time.perf_counter() - t0) / steps
        theirs = _channels(np.array(right), np.array(state))
        se = np.sqrt((ours * (1 - ours) + theirs * (1 - theirs)) / n_traj)
        z = np.max(np.abs(ours - theirs) / np.where(se > 0, se, np.inf))
        rows.append([f"{name} k={k:g}", n_traj, *np.round(ours, 3), *np.round(theirs, 3),
                     1e6 * per_ours, 1e6 * per_mud, z])
        rep.check(f"FSSH {name} k={k:g}: max |channel diff| / SE", z, "<=", 2.0)
        rep.check(f"FSSH {name} k={k:g}: time per traj-step mudslide/qhd_aimd", per_mud / per_ours, ">=", 1.0)
    rep.table(["case", "traj", "qhd T0", "qhd T1", "qhd R0", "qhd R1", "mud T0", "mud T1", "mud R0",
               "mud R1", "qhd us/traj-step", "mud us/traj-step", "max |diff|/SE"], rows,
              caption="FSSH without decoherence correction, x0=-10, width 20/k, dt=4 au, "
                      "final fraction of trajectories per channel (T: x>0, R: x<0; active state)")


def _channels(right, state):
    """(T0, T1, R0, R1) fractions of trajectories by side and active state."""
    return np.array([np.mean(right & (state == 0)), np.mean(right & (state == 1)),
                     np.mean(~right & (state == 0)), np.mean(~right & (state == 1))])


def main():
    quick = quick_flag()
    rep = Report("mudslide", "Ehrenfest and FSSH, Tully models: qhd_aimd vs mudslide")
    try:
        import mudslide
        from mudslide.models import TullySimpleAvoidedCrossing
    except ImportError as exc:
        return rep.skip(f"mudslide not installed ({exc}); pip install mudslide (the 'bench' extra)")
    if "--fssh-only" in sys.argv:
        rep = Report("mudslide_fssh", "FSSH, Tully models: qhd_aimd vs mudslide")
        fssh_side_by_side(rep, quick)
        return rep.finish()
    from qhd_aimd.dynamics.integrator import Propagator
    from qhd_aimd.electronic.models import ModelBackend, get_model
    from qhd_aimd.prepare.wavepacket import sample_wavepacket

    n_traj = 20 if quick else 50
    dt, t_final, x0, k0, width = 5.0, 2500.0, -10.0, 15.0, 1.0
    n_steps = int(round(t_final / dt))
    pos, mom = sample_wavepacket(x0, k0, width, n_traj, 1)
    mass = 2000.0

    # --- qhd_aimd: one lock-step swarm
    be = ModelBackend(get_model("tully_simple"))
    prop = Propagator(be, "ehrenfest", dt, n_substeps=20)
    t0 = time.perf_counter()
    s = prop.initialize(np.arange(n_traj), pos, mom, np.zeros(n_traj, int))
    ek, ep = s.energies(prop.masses)
    e0 = ek + ep
    for _ in range(n_steps):
        s = prop.step(s)
    t_ours = time.perf_counter() - t0
    ek, ep = s.energies(prop.masses)
    drift_ours = float(np.abs(ek + ep - e0).max())
    p_ours = np.real(np.einsum("tnn->tn", s.rho)).mean(axis=0)

    # --- mudslide: one trajectory at a time
    model = TullySimpleAvoidedCrossing()
    t0 = time.perf_counter()
    p_mud, drift_mud = [], 0.0
    for i in range(n_traj):
        traj = mudslide.Ehrenfest(model, pos[i].copy(), mom[i] / mass, 0, dt=dt, max_steps=n_steps,
                                  seed_sequence=i)
        trace = traj.simulate()
        p_mud.append(np.real(np.diag(traj.rho)))
        energies = [snap["energy"] for snap in trace] if hasattr(trace, "__iter__") else []
        if energies:
            drift_mud = max(drift_mud, float(np.abs(np.array(energies) - energies[0]).max()))
    t_mud = time.perf_counter() - t0
    p_mud = np.mean(p_mud, axis=0)

    per_ours = t_ours / (n_traj * n_steps)
    per_mud = t_mud / (n_traj * n_steps)
    rep.table(["code", "traj", "steps", "wall s", "us/traj-step", "P0 final", "P1 final", "max |dE_tot| Ha"],
              [["qhd_aimd (lock-step swarm)", n_traj, n_steps, t_ours, 1e6 * per_ours, p_ours[0], p_ours[1], drift_ours],
               [f"mudslide {getattr(mudslide, '__version__', '')}", n_traj, n_steps, t_mud, 1e6 * per_mud,
                p_mud[0], p_mud[1], drift_mud]],
              caption=f"x0={x0}, k0={k0}, width={width} bohr, dt={dt} au, t_final={t_final} au, ground state")
    rep.check("time per trajectory-step mudslide/qhd_aimd", per_mud / per_ours, ">=", 1.0)
    rep.check("|P1(qhd_aimd) - P1(mudslide)|", abs(p_ours[1] - p_mud[1]), "<=", 0.02,
              "mudslide's Ehrenfest force omits the off-diagonal NAC term (see docstring)")
    # same population physics check on our side with a single trajectory (batching cost)
    t0 = time.perf_counter()
    s1 = prop.initialize([0], pos[:1], mom[:1], [0])
    for _ in range(n_steps):
        s1 = prop.step(s1)
    rep.figure("qhd_aimd single trajectory: us per step", 1e6 * (time.perf_counter() - t0) / n_steps, "us")
    fssh_side_by_side(rep, quick)
    return rep.finish()


if __name__ == "__main__":
    raise SystemExit(main())
