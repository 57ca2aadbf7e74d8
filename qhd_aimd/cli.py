"""Command line: ``qhd-aimd prepare | run | aggregate | exact | export | coordinates | report``.

Thin on purpose: parse arguments, load the validated config, call the package.
Under MPI launch it as ``mpiexec -n N python -m mpi4py -m qhd_aimd run ...`` so that an
exception on one rank aborts the whole job instead of hanging it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from qhd_aimd.errors import QhdError


def _threads():
    # Spinning OpenMP threads make a shared machine ~10x slower with PySCF.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qhd-aimd", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name, helptext in (("prepare", "initial conditions -> DIR/initial_conditions.h5"),
                           ("run", "propagate the swarm -> DIR/trajectories.h5"),
                           ("exact", "exact quantum reference (analytic models, diatomic "
                                     "molecules) -> DIR/exact.h5")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--config", required=True, help="study YAML")
        s.add_argument("--out", required=True, help="output directory")
        if name == "run":
            s.add_argument("--restart", action="store_true", help="continue from DIR/run/checkpoint.h5")
            s.add_argument("--stale-checkpoint", choices=("error", "archive"), default="error",
                           help="--restart with a checkpoint of another config or other initial "
                                "conditions: error, or move DIR/run to DIR/run.stale-<k> and start again")
            s.add_argument("--quiet", action="store_true", help="no progress lines")
    s = sub.add_parser("aggregate", help="observables and CSVs from DIR/trajectories.h5")
    s.add_argument("dir")
    s = sub.add_parser("export", help="trajectories for viewers: DIR/extxyz/traj_<id>.extxyz")
    s.add_argument("dir", help="run directory (holding trajectories.h5)")
    s.add_argument("--format", choices=["extxyz"], default="extxyz")
    s.add_argument("--out", default=None, help="output directory (default DIR/extxyz)")
    s = sub.add_parser("coordinates", help="internal coordinates per trajectory -> DIR/coordinates.csv")
    s.add_argument("dir", help="run directory (holding trajectories.h5)")
    s.add_argument("--config", required=True, help="YAML with analysis.coordinates")
    s = sub.add_parser("report", help="HTML report of one or more aggregated runs")
    s.add_argument("dirs", nargs="+", help="run directories (aggregated)")
    s.add_argument("--out", required=True, help="report directory (index.html + figures)")
    s.add_argument("--exact", nargs="*", default=[], help="exact-reference directories")
    s.add_argument("--title", default="qhd_aimd study")
    s.add_argument("--study-config", default=None, help="workflow-level study config to include")
    return p


def main(argv=None) -> int:
    _threads()
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except QhdError as exc:
        print(f"qhd-aimd {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _dispatch(args) -> int:
    from qhd_aimd.config import load_config

    if args.command == "run":
        from qhd_aimd.swarm.driver import run_study

        path = run_study(load_config(args.config), args.out, restart=args.restart, progress=not args.quiet,
                         stale=args.stale_checkpoint)
        if path is not None:
            print(path)
    elif args.command == "prepare":
        cfg = load_config(args.config)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        if cfg.system.model is not None:
            raise QhdError("prepare is for molecules; model swarms are sampled by 'run'")
        from qhd_aimd.prepare.molecule import prepare_molecule

        print(prepare_molecule(cfg, args.out))
    elif args.command == "aggregate":
        from qhd_aimd.analysis.aggregate import aggregate

        aggregate(args.dir)
    elif args.command == "exact":
        from qhd_aimd.exact import run_exact, write_exact

        cfg = load_config(args.config)
        if cfg.system.molecule is not None:
            from qhd_aimd.exact_diatomic import run_exact_diatomic, write_exact_diatomic

            write_exact_diatomic(*run_exact_diatomic(cfg, args.out), args.out)
        else:
            write_exact(run_exact(cfg), args.out)
    elif args.command == "export":
        from qhd_aimd.analysis.export import export_extxyz

        paths = export_extxyz(args.dir, args.out)
        print(f"{len(paths)} trajectories -> {paths[0].parent if paths else args.out}")
    elif args.command == "coordinates":
        from qhd_aimd.analysis.coordinates import load_coordinates, write_coordinates

        print(write_coordinates(args.dir, load_coordinates(args.config)))
    elif args.command == "report":
        from qhd_aimd.report.html import write_report

        print(write_report(args.dirs, args.out, exact_dirs=args.exact, title=args.title,
                           study_config=args.study_config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
