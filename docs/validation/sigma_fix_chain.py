"""electronic.symmetry: sigma fix, regular geometries: the 5 lih_sigma_exact energies on a warm-started
chain R = 2.0..9.0 bohr (71 points) saved to argv[1]; run with old and new code and compare (<= 1.3e-10 Eh)."""
import sys, numpy as np
from qhd_aimd.config import load_config
from qhd_aimd.electronic import make_backend
from qhd_aimd.exact_diatomic import bond_positions
cfg = load_config("config/studies/lih_sigma_exact.yaml")
be = make_backend(cfg, ["Li", "H"])
x = np.array([0, 0, 0, 0, 0, 3.0])
rs = np.arange(2.0, 9.01, 0.1)
out, d = [], None
for r in rs:
    d = be.compute(bond_positions(x, r), reference=d)
    out.append(d.energies)
np.save(sys.argv[1], np.array(out))
print("done", len(rs))
