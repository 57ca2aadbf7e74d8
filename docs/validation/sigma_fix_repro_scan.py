"""electronic.symmetry: sigma fix, reproduction: the dr 0.05 / 0.01 rad scan of lih_sigma_exact with a
wrapper that records the failing solve (R, reference R; pickles the reference to /work/runs/sigma-fix).
Old code: cd /work/main && PYTHONPATH=/work/main python <this file>  -> fails at R = 29.0453 bohr."""
# old code (main): the dr 0.05 / angle 0.01 scan of lih_sigma_exact; report the geometry of the failing solve
import numpy as np, time, traceback
from qhd_aimd.config import load_config
from qhd_aimd.electronic import make_backend
from qhd_aimd.exact_diatomic import scan_curves, scan_range
from qhd_aimd.prepare.molecule import read_xyz
cfg = load_config("config/studies/lih_sigma_exact.yaml")
symbols, x = read_xyz(cfg.system.molecule.xyz)
be = make_backend(cfg, symbols)
orig = be.compute
def compute(x, reference=None):
    try:
        return orig(x, reference=reference)
    except Exception as exc:
        r = float(np.linalg.norm(np.asarray(x)[3:] - np.asarray(x)[:3]))
        rr = None if reference is None else float(np.linalg.norm(np.ravel(reference.handle.coords)[3:] - np.ravel(reference.handle.coords)[:3]))
        print(f"FAILED at R = {r!r} bohr (reference R = {rr!r}): {exc}", flush=True)
        np.save("/work/runs/sigma-fix/fail_ref_mo.npy", reference.handle.mo_coeff if reference is not None else np.zeros(1))
        import pickle; pickle.dump(reference, open("/work/runs/sigma-fix/fail_ref.pkl", "wb"))
        raise
be.compute = compute
t = time.time()
try:
    c = scan_curves(be, x, *scan_range(cfg), dr=0.05, max_angle=0.01, progress=lambda m: None)
    print("scan OK", len(c.r_bohr), time.time() - t)
except Exception as exc:
    print("scan failed", time.time() - t, type(exc).__name__, exc)
