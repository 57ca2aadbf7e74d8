"""Run every benchmark in sequence and print one PASS/MISS summary (target: < 15 min on a
2-core machine). Each script writes benchmarks/results/<name>.json; the summary is also written
to benchmarks/results/summary.md.

    python benchmarks/run_all.py [--quick] [--only step_breakdown warm_start ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["step_breakdown", "warm_start", "force", "mpi_scaling", "fields", "mudslide"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", nargs="*", default=None)
    a = p.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", OPENBLAS_NUM_THREADS="1")
    t_all = time.perf_counter()
    status = {}
    for name in a.only or ORDER:
        cmd = [sys.executable, str(HERE / f"bench_{name}.py")] + (["--quick"] if a.quick else [])
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, env=env).returncode
        status[name] = (rc, time.perf_counter() - t0)
    lines = ["| benchmark | check | value | target | result |", "|---|---|---|---|---|"]
    n_pass = n_all = 0
    for name in a.only or ORDER:
        f = HERE / "results" / f"{name}.json"
        rc, dt = status[name]
        if rc != 0 or not f.exists():
            lines.append(f"| {name} | script failed (exit {rc}) | | | ERROR |")
            continue
        data = json.loads(f.read_text())
        if data.get("skipped"):
            lines.append(f"| {name} | skipped: {data['skipped']} | | | SKIP |")
        for label, value, op, target, ok, _ in data["checks"]:
            n_all += 1
            n_pass += bool(ok)
            lines.append(f"| {name} | {label} | {value:.4g} | {op} {target:g} | {'PASS' if ok else 'MISS'} |")
    total = time.perf_counter() - t_all
    lines.append("")
    lines.append(f"{n_pass}/{n_all} targets PASS; total {total:.0f} s "
                 + ", ".join(f"{k} {v[1]:.0f} s" for k, v in status.items()))
    text = "\n".join(lines)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "summary.md").write_text(text + "\n")
    print("\n" + text)
    return 0 if all(v[0] == 0 for v in status.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
