"""Wrapper run under mpiexec by bench_mpi_scaling.py (prints one JSON line on rank 0).

    mpiexec -n 2 python -m mpi4py benchmarks/mpi_worker.py run --model tully_simple \
        --method ehrenfest --n-traj 32 --steps 10 --compute-ms 20 --out /tmp/x
    mpiexec -n 2 python -m mpi4py benchmarks/mpi_worker.py exchange --kind model --sizes 64 256

``run``: the real driver (``qhd_aimd.swarm.driver.run_study``: Propagator.step + per-step
frame gather + checkpoints + HDF5 on rank 0) with ``make_backend`` swapped for
``SlowModelBackend`` when --compute-ms > 0; the wall time per step is taken between consecutive
per-step records on rank 0.
``exchange``: time of ``comm.allgather`` of the per-step swarm payload that
``Propagator.gather`` sends ({id: (position, rho, ElectronicData, active)}) for T trajectories
in total, and its pickled size.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402


def cmd_run(a, comm):
    from qhd_aimd.config import parse_config
    from qhd_aimd.electronic.models import get_model
    from qhd_aimd.swarm import driver
    from slow_backend import SlowModelBackend

    if a.model == "berry_2d":
        ini = {"position_bohr": [-3.0, 0.0], "momentum_au": [20.0, 0.0], "width_bohr": [0.7, 0.7]}
    else:
        ini = {"position_bohr": -4.0, "momentum_au": 15.0, "width_bohr": 1.0}
    cfg = parse_config({
        "system": {"model": a.model},
        "initial": {"n_trajectories": a.n_traj, "state": 0, "seed": 1, **ini},
        "method": a.method,
        "dynamics": {"dt_au": a.dt, "t_final_au": a.dt * a.steps, "n_substeps": 20},
        "output": {"checkpoint_every": max(a.steps, 1)},
    })
    if a.compute_ms > 0:
        driver.make_backend = lambda cfg, symbols=None: SlowModelBackend(
            get_model(cfg.system.model), compute_s=a.compute_ms / 1e3, mode=a.mode)
    stamps = []
    record = driver._record

    def timed_record(*args, **kw):
        record(*args, **kw)
        stamps.append(time.perf_counter())

    driver._record = timed_record
    if comm.rank == 0 and os.path.exists(a.out):
        shutil.rmtree(a.out)
    comm.barrier()
    t0 = time.perf_counter()
    driver.run_study(cfg, a.out, progress=False)
    wall = time.perf_counter() - t0
    if comm.rank == 0:
        per_step = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
        print(json.dumps({"ranks": comm.size, "per_step_s": per_step, "wall_s": wall,
                          "init_s": stamps[0] - t0, "steps": len(stamps) - 1}), flush=True)
        shutil.rmtree(a.out, ignore_errors=True)


def payload(kind, ids):
    """{id: (position, rho, ElectronicData, active)} as Propagator.gather builds it."""
    from qhd_aimd.electronic.base import ElectronicData

    rng = np.random.default_rng(0)
    out = {}
    for t in ids:
        if kind == "model":  # tully_simple: D=1, N=2
            d, n = 1, 2
            el = ElectronicData(rng.standard_normal(d), np.sort(rng.standard_normal(n)),
                                rng.standard_normal((n, n)), rng.standard_normal((d, n, n)).astype(complex))
        else:  # SA-CASSCF handle sized like C2H4 SA2-CAS(2,2)/6-31G* (38 AOs, 2 states), as
            # exchanged (``for_overlaps``: core + active orbitals only)
            from qhd_aimd.electronic.pyscf import CasscfHandle

            syms = ("C", "C", "H", "H", "H", "H")
            d, n, nao = 18, 2, 38
            h = CasscfHandle(symbols=syms, coords=rng.standard_normal((6, 3)), basis="6-31g*",
                             charge=0, spin=0, ncore=7, ncas=2, nelecas=(1, 1),
                             mo_coeff=rng.standard_normal((nao, nao)),
                             ci=tuple(rng.standard_normal((2, 2)) for _ in range(n)),
                             energies=np.sort(rng.standard_normal(n)), weights=(0.5, 0.5))
            el = ElectronicData(rng.standard_normal(d), h.energies, h, None).for_overlaps()
        rho = np.eye(n, dtype=complex) / n
        out[int(t)] = (el.positions, rho, el, True)
    return out


def cmd_exchange(a, comm):
    from qhd_aimd.swarm.comm import local_ids

    rows = []
    for total in a.sizes:
        mine = payload(a.kind, local_ids(total, comm.rank, comm.size))
        nbytes = len(pickle.dumps(mine, protocol=pickle.HIGHEST_PROTOCOL))
        all_bytes = comm.allgather(nbytes)
        times = []
        for _ in range(a.repeats):
            comm.barrier()
            t0 = time.perf_counter()
            parts = comm.allgather(mine)
            merged = {}
            for p in parts:
                merged.update(p)
            times.append(time.perf_counter() - t0)
        # serial pickle cost of the whole swarm's payload (dumps of own part + loads of all)
        whole = payload(a.kind, range(total))
        t0 = time.perf_counter()
        blob = pickle.dumps(whole, protocol=pickle.HIGHEST_PROTOCOL)
        t1 = time.perf_counter()
        pickle.loads(blob)
        t2 = time.perf_counter()
        rows.append({"T": total, "bytes_total": int(sum(all_bytes)), "allgather_s": float(np.median(times)),
                     "dumps_all_s": t1 - t0, "loads_all_s": t2 - t1})
    if comm.rank == 0:
        print(json.dumps({"ranks": comm.size, "kind": a.kind, "rows": rows}), flush=True)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--model", default="tully_simple")
    r.add_argument("--method", default="ehrenfest")
    r.add_argument("--n-traj", type=int, default=32)
    r.add_argument("--steps", type=int, default=10)
    r.add_argument("--dt", type=float, default=5.0)
    r.add_argument("--compute-ms", type=float, default=0.0)
    r.add_argument("--mode", default="spin", choices=["spin", "sleep"])
    r.add_argument("--out", required=True)
    e = sub.add_parser("exchange")
    e.add_argument("--kind", default="model", choices=["model", "casscf"])
    e.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024])
    e.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    from qhd_aimd.swarm.comm import get_comm

    comm = get_comm()
    (cmd_run if a.cmd == "run" else cmd_exchange)(a, comm)


if __name__ == "__main__":
    main()
