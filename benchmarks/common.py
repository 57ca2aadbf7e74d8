"""Shared helpers of the benchmark scripts (not part of the package, not tests).

Every benchmark prints its figures as RATIOS measured in the same run, each with a target and
PASS / MISS, through ``Report``; ``Report.finish`` also writes a JSON file next to the output
directory (``benchmarks/results/<name>.json``) so that ``run_all.py`` can tabulate them.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
ANGSTROM = 1.8897261245650618  # bohr per angstrom

# Geometries (angstrom). Ethylene: planar D2h near the MP2/6-31G* minimum. Methaniminium
# CH2NH2+: planar C2v. LiH: near r_e.
GEOMETRIES = {
    "lih": (["Li", "H"], [[0, 0, 0], [0, 0, 1.595]]),
    "ethylene": (["C", "C", "H", "H", "H", "H"],
                 [[0, 0, 0.6695], [0, 0, -0.6695], [0, 0.9289, 1.2321], [0, -0.9289, 1.2321],
                  [0, 0.9289, -1.2321], [0, -0.9289, -1.2321]]),
    "methaniminium": (["C", "N", "H", "H", "H", "H"],
                      [[0, 0, 0], [0, 0, 1.28], [0, 0.94, -0.55], [0, -0.94, -0.55],
                       [0, 0.87, 1.83], [0, -0.87, 1.83]]),
}

#: electronic-structure settings of the benchmark systems (CasscfBackend keyword arguments):
#: package defaults (conv_tol 1e-8 Ha, conv_tol_grad 1e-6; the Newton solver converges the
#: individual state energies to conv_tol, so no tighter orbital gradient is needed).
SYSTEMS = {
    "lih": dict(basis="6-31g", ncas=2, nelecas=2, n_states=2),
    "ethylene": dict(basis="6-31g*", ncas=2, nelecas=2, n_states=2),
    "methaniminium": dict(basis="6-31g*", ncas=3, nelecas=4, n_states=3, charge=1),
}

LABELS = {
    "lih": "LiH SA2-CAS(2,2)/6-31G",
    "ethylene": "C2H4 SA2-CAS(2,2)/6-31G*",
    "methaniminium": "CH2NH2+ SA3-CAS(4,3)/6-31G*",
}


def casscf_available():
    """(True, None) or (False, reason) for the PySCF backend."""
    try:
        from qhd_aimd.electronic.pyscf import CasscfBackend  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means "skip"
        return False, f"{type(exc).__name__}: {exc}"
    return True, None


def molecule(name, **overrides):
    """(backend, positions (D,) bohr) of a benchmark system."""
    from qhd_aimd.electronic.pyscf import CasscfBackend

    symbols, xyz = GEOMETRIES[name]
    kw = {**SYSTEMS[name], **overrides}
    return CasscfBackend(symbols, **kw), np.asarray(xyz, float).ravel() * ANGSTROM


def thermal_momenta(masses, temperature_k, seed, displace_bohr=0.0, x=None):
    """Maxwell-Boltzmann momenta (D,) a.u. without centre-of-mass motion; optionally displaced
    positions. Only used to give the benchmark trajectories a realistic step length."""
    kb = 3.166811563e-6  # hartree / K
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(masses.shape) * np.sqrt(masses * kb * temperature_k)
    p3 = p.reshape(-1, 3)
    m3 = masses.reshape(-1, 3)[:, 0]
    p3 -= m3[:, None] * (p3.sum(axis=0) / m3.sum())[None, :]
    if x is None:
        return p3.ravel()
    return p3.ravel(), x + displace_bohr * rng.standard_normal(x.shape)


class Timer:
    """Accumulating wall-clock timer: ``with t: ...`` adds to t.total and t.count."""

    def __init__(self):
        self.total = 0.0
        self.count = 0

    def __enter__(self):
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.total += time.perf_counter() - self._t0
        self.count += 1
        return False


@contextmanager
def stopwatch(out: dict, key: str):
    t0 = time.perf_counter()
    yield
    out[key] = out.get(key, 0.0) + time.perf_counter() - t0


class Report:
    """Collects figures and target checks of one benchmark and prints them."""

    def __init__(self, name: str, title: str):
        self.name, self.title = name, title
        self.rows = []       # (label, value, unit)
        self.checks = []     # (label, value, op, target, passed, note)
        self.notes = []
        self.tables = []
        self.skipped = None
        self.t0 = time.perf_counter()
        print(f"=== {name}: {title}", flush=True)

    def figure(self, label, value, unit=""):
        self.rows.append((label, float(value), unit))
        print(f"  {label:<58s} {value:12.5g} {unit}", flush=True)

    def check(self, label, value, op, target, note=""):
        """op is '>=' or '<='; returns PASS/MISS."""
        value = float(value)
        ok = value >= target if op == ">=" else value <= target
        self.checks.append((label, value, op, target, bool(ok), note))
        status = "PASS" if ok else "MISS"
        print(f"  [{status}] {label}: {value:.4g} (target {op} {target:g}){' - ' + note if note else ''}",
              flush=True)
        return status

    def note(self, text):
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def table(self, header, rows, caption=""):
        self.tables.append({"header": list(header), "rows": [list(r) for r in rows], "caption": caption})
        widths = [max(len(str(h)), *(len(_fmt(r[i])) for r in rows)) for i, h in enumerate(header)]
        if caption:
            print(f"  {caption}")
        print("  " + "  ".join(str(h).rjust(w) for h, w in zip(header, widths)))
        for r in rows:
            print("  " + "  ".join(_fmt(v).rjust(w) for v, w in zip(r, widths)))
        sys.stdout.flush()

    def skip(self, reason):
        self.skipped = reason
        print(f"  SKIPPED: {reason}", flush=True)
        return self.finish()

    def finish(self):
        elapsed = time.perf_counter() - self.t0
        RESULTS.mkdir(exist_ok=True)
        data = {"name": self.name, "title": self.title, "elapsed_s": elapsed,
                "figures": self.rows, "checks": self.checks, "notes": self.notes,
                "tables": self.tables, "skipped": self.skipped,
                "command": "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])}
        (RESULTS / f"{self.name}.json").write_text(json.dumps(data, indent=1, default=float))
        n_pass = sum(c[4] for c in self.checks)
        print(f"=== {self.name}: {n_pass}/{len(self.checks)} targets PASS, {elapsed:.1f} s", flush=True)
        return 0


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def quick_flag(argv=None):
    return "--quick" in (argv if argv is not None else sys.argv[1:])
