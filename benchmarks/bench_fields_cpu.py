"""CPU cost of the swarm fields vs the electronic structure on a running molecular swarm
(issue 11 item 6: fields + neighbour overlaps <= 25 % of the electronic structure).

Loads the swarm state of a run's checkpoint (``DIR/run/checkpoint.h5``: positions, momenta, rho,
adiabatic momenta, electronic data), evaluates the method's swarm fields on it serially
(``Propagator._update_fields``, the study's ``fields`` options) and, for a few of its
trajectories, the electronic structure of one step (``compute`` warm-started at a displaced
geometry, the one-solve ``force`` and, for the coupled methods' adiabatic momenta,
``state_gradients``). Process CPU time, so the figures do not depend on the load of a shared
machine; the electronic structure per step is the per-trajectory cost x T.

    python benchmarks/bench_fields_cpu.py RUN_DIR [N_ES_SAMPLES]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Report  # noqa: E402


def main():
    from qhd_aimd.config import load_config
    from qhd_aimd.dynamics.integrator import Propagator
    from qhd_aimd.electronic import make_backend
    from qhd_aimd.io import checkpoint
    from qhd_aimd.prepare.molecule import load_initial_conditions
    from qhd_aimd.swarm.driver import _unpack

    run = Path(sys.argv[1])
    n_es = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    cfg = load_config(run / "study.yaml")
    ic = load_initial_conditions(run / "initial_conditions.h5")
    be = make_backend(cfg, list(ic["symbols"]))
    f = cfg.fields
    prop = Propagator(be, cfg.method, cfg.dynamics.dt, cfg.dynamics.n_substeps, f.bandwidth_factor,
                      f.bandwidth_bohr, f.ridge, f.cutoff_sigma, demodulate=f.demodulate,
                      quantum_force=f.quantum_force, coherence_gradient=f.coherence_gradient,
                      quantum_momentum=f.quantum_momentum,
                      energy_correction=cfg.dynamics.energy_correction)
    state = checkpoint.read(run / "run" / "checkpoint.h5")
    ids = sorted(state["trajectories"])
    s = _unpack(state, ids)
    t = len(ids)
    rep = Report("fields_cpu", f"swarm fields vs electronic structure (CPU), {cfg.method}, T={t}, "
                 f"step {s.step}")
    prop._update_fields(s)  # warm-up
    c0 = time.process_time()
    reps = 5
    for _ in range(reps):
        prop._update_fields(s)
    fields = (time.process_time() - c0) / reps
    pops = np.real(np.diagonal(s.rho, axis1=1, axis2=2))
    es = {"compute": 0.0, "force": 0.0, "state_gradients": 0.0}
    rng = np.random.default_rng(0)
    for i in range(n_es):
        x = s.positions[i] + 1e-3 * rng.standard_normal(s.positions.shape[1])
        c0 = time.process_time()
        e = be.compute(x, reference=s.elec[i])
        c1 = time.process_time()
        be.force(e, s.rho[i])
        c2 = time.process_time()
        if prop._method.coupled and prop.coherence_gradient != "regression":
            be.state_gradients(e)
        c3 = time.process_time()
        es["compute"] += (c1 - c0) / n_es
        es["force"] += (c2 - c1) / n_es
        es["state_gradients"] += (c3 - c2) / n_es
    mixed = ((pops > 0.01) & (pops < 0.99)).any(axis=1).mean()
    per_traj = es["compute"] + es["force"] + mixed * es["state_gradients"]
    rows = [[k, v, v * t] for k, v in es.items()]
    rows.append(["state_gradients x fraction mixed", mixed * es["state_gradients"], mixed * es["state_gradients"] * t])
    rep.table(["part", "CPU s per trajectory", "CPU s per step (x T)"], rows,
              caption=f"electronic structure, mean over {n_es} trajectories; {100 * mixed:.0f} % of "
                      f"the trajectories mixed (adiabatic momenta need the state gradients)")
    rep.figure("fields CPU s per step (serial, whole swarm)", fields, "s")
    rep.figure("fallback trajectories", int(s.fields_fallback.sum()))
    rep.figure("electronic structure CPU s per step (whole swarm)", per_traj * t, "s")
    rep.check("fields / electronic structure (no neighbour overlaps on this path)", fields / (per_traj * t),
              "<=", 0.25)
    return rep.finish()


if __name__ == "__main__":
    raise SystemExit(main())
