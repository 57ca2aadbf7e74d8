"""HDF5 checkpoints (issue 13, item 7): no pickle, verified on load, damaged checkpoints and
segments recovered at restart with a result bit-identical to an uninterrupted run; stale
checkpoints (other config / initial conditions) refused or archived."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from runlib import assert_same_run, require_mpiexec, run, study, write_study

from qhd_aimd.config import parse_config
from qhd_aimd.errors import QhdError
from qhd_aimd.io import checkpoint as ckpt
from qhd_aimd.swarm.driver import _SWARM_FIELDS, run_study

N_STEPS = 30


def _cfg(method="ehrenfest"):
    cfg = study(method, n=6, dt=15.0, t_final=15.0 * N_STEPS, every=7)
    cfg["initial"].update(position_bohr=-4.0, momentum_au=20.0)
    return cfg


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """method -> finished run directory (uninterrupted), computed once."""
    cache = {}

    def get(method):
        if method not in cache:
            d = tmp_path_factory.mktemp(f"ref_{method}")
            run_study(parse_config(_cfg(method)), d, progress=False)
            cache[method] = d
        return cache[method]

    return get


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    (dst / "trajectories.h5").unlink()
    return dst


def _restart(out: Path, method="ehrenfest") -> Path:
    return run_study(parse_config(_cfg(method)), out, restart=True, progress=False)


def test_checkpoint_holds_every_swarm_field_and_no_pickle(done):
    out = done("geometric_ehrenfest_qc")
    state = ckpt.read(out / "run" / "checkpoint.h5")
    assert state["step"] == N_STEPS and set(state["trajectories"]) == set(range(6))
    for t in state["trajectories"].values():
        assert set(_SWARM_FIELDS) | {"elec"} == set(t)
    with h5py.File(out / "run" / "checkpoint.h5") as f:
        for k in _SWARM_FIELDS:  # one dataset per Swarm field, (T, ...)
            assert f["trajectories/stacked"][k].shape[0] == 6
        tags = set()
        f.visititems(lambda n, o: tags.add(str(o.attrs.get("t", ""))))
    assert "dataclass" in tags and b"\x80\x04\x95" not in (out / "run" / "checkpoint.h5").read_bytes()
    assert (out / "run" / "checkpoint.prev.h5").exists()
    assert ckpt.read(out / "run" / "checkpoint.prev.h5")["step"] == 28


def test_unknown_class_is_refused(tmp_path):
    """Reading a checkpoint constructs only whitelisted dataclasses (no code from the file)."""
    path = tmp_path / "evil.h5"
    ckpt.write(path, {"step": 0, "trajectories": {}})
    with h5py.File(path, "a") as f:
        g = f["state"].create_group("1")
        g.attrs["t"] = "dataclass"
        g.attrs["cls"] = "os:system"
        f["state"].attrs["n"] = 2
        g.attrs["key"] = "x"
        g.attrs["key_t"] = "str"
        f.attrs["sha256"] = ckpt.digest(f)  # even with a valid digest
    with pytest.raises(ckpt.CheckpointError, match="'os:system' is not allowed"):
        ckpt.read(path)


@pytest.mark.parametrize("damage", ["empty", "flip", "garbage"])
def test_damaged_checkpoint_falls_back_to_previous(tmp_path, done, damage):
    ref = done("ehrenfest")
    out = _copy(ref, tmp_path / "run")
    path = out / "run" / "checkpoint.h5"
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(os.urandom(4096))
    else:  # one bit of the stored positions changed: only the digest can tell
        with h5py.File(path, "a") as f:
            d = f["trajectories/stacked/positions"]
            v = d[()]
            v.view(np.uint64)[0, 0] ^= 1
            d[...] = v
    _restart(out)
    assert_same_run(ref / "trajectories.h5", out / "trajectories.h5")
    assert (out / "run" / "damaged" / "checkpoint.h5").exists()  # kept for inspection


@pytest.mark.parametrize("damage", ["empty_last", "empty_old", "missing_old", "flip_old",
                                    "empty_first"])
def test_damaged_or_missing_segment_is_recomputed(tmp_path, done, damage, capfd):
    """An empty/altered/missing segment is found at restart (not at the final merge) and the
    frames from the state of the last good segment before it are recomputed, bit-identically."""
    ref = done("ehrenfest")
    out = _copy(ref, tmp_path / "run")
    last = out / "run" / f"segment_{N_STEPS:09d}.h5"
    old = out / "run" / "segment_000000014.h5"
    if damage == "empty_last":
        last.write_bytes(b"")
    elif damage == "empty_old":
        old.write_bytes(b"")
    elif damage == "missing_old":
        old.unlink()
    elif damage == "empty_first":
        (out / "run" / "segment_000000000.h5").write_bytes(b"")
    else:
        with h5py.File(old, "a") as f:  # one bit of one momentum: only the digest can tell
            v = f["momenta_au"][()]
            v.view(np.uint64)[0, 0, 0] ^= 1
            f["momenta_au"][...] = v
    later = out / "run" / "segment_000000021.h5"
    inode = later.stat().st_ino
    _restart(out)
    assert_same_run(ref / "trajectories.h5", out / "trajectories.h5")
    if damage != "missing_old":
        assert list((out / "run" / "damaged").iterdir())
    err = capfd.readouterr().err
    if damage == "empty_last":  # segments end at 0, 7, 14, 21, 28, 30
        assert "frames on disk end at step 28: continuing from step 28" in err
    elif damage == "empty_first":
        assert "steps 0..0 missing" in err and "from t = 0" in err
        assert later.stat().st_ino == inode
    else:  # only steps 8..14 recomputed, the later segments kept as they were
        assert "steps 8..14 missing" in err and "recomputing them from step 7" in err
        assert later.stat().st_ino == inode


def test_both_checkpoints_damaged_uses_segment_state_else_one_clear_error(tmp_path, done):
    """Every segment holds the swarm state at its last step: with both checkpoints damaged the
    run continues from the last good segment (bit-identical result); with no usable state at
    all (checkpoints and every segment damaged) the restart stops with one line."""
    ref = done("ehrenfest")
    conf = write_study(tmp_path / "study.yaml", _cfg())
    out = _copy(ref, tmp_path / "run")
    (out / "run" / "checkpoint.h5").write_bytes(b"")
    (out / "run" / "checkpoint.prev.h5").write_bytes(b"\x89HDF")
    (out / "run" / f"segment_{N_STEPS:09d}.h5").unlink()  # and the newest segment is gone
    run(["run", "--config", str(conf), "--out", str(out), "--restart", "--quiet"])
    assert_same_run(ref / "trajectories.h5", out / "trajectories.h5")
    assert sorted(p.name for p in (out / "run" / "damaged").iterdir()) == [
        "checkpoint.h5", "checkpoint.prev.h5"]

    out = _copy(ref, tmp_path / "run2")
    (out / "run" / "checkpoint.h5").write_bytes(b"")
    (out / "run" / "checkpoint.prev.h5").write_bytes(b"")
    for seg in (out / "run").glob("segment_*.h5"):
        seg.write_bytes(b"")
    proc = run(["run", "--config", str(conf), "--out", str(out), "--restart", "--quiet"], check=False)
    assert proc.returncode == 2
    msg = [ln for ln in proc.stderr.splitlines() if "error" in ln]
    assert len(msg) == 1 and "no usable checkpoint" in msg[0] and "Traceback" not in proc.stderr


@pytest.mark.mpi
def test_damaged_segment_restart_on_two_ranks(tmp_path, done):
    require_mpiexec()
    ref = done("geometric_ehrenfest_qc")
    out = _copy(ref, tmp_path / "run")
    (out / "run" / "segment_000000021.h5").write_bytes(b"")
    conf = write_study(tmp_path / "study.yaml", _cfg("geometric_ehrenfest_qc"))
    run(["run", "--config", str(conf), "--out", str(out), "--restart", "--quiet"], ranks=2)
    assert_same_run(ref / "trajectories.h5", out / "trajectories.h5")


def test_stale_checkpoint_refused_or_archived(tmp_path, done):
    """Other initial conditions (seed) or config: refused; archived with stale='archive' (the
    workflow), then the run equals a fresh one."""
    ref = done("ehrenfest")
    out = _copy(ref, tmp_path / "run")
    cfg = _cfg()
    cfg["initial"]["seed"] = 11
    with pytest.raises(QhdError, match="different config and initial conditions"):
        run_study(parse_config(cfg), out, restart=True, progress=False)
    run_study(parse_config(cfg), out, restart=True, progress=False, stale="archive")
    assert (out / "run.stale-1" / "checkpoint.h5").exists()
    fresh = run_study(parse_config(cfg), tmp_path / "fresh", progress=False)
    assert_same_run(fresh, out / "trajectories.h5")


@pytest.mark.pyscf
def test_casscf_handle_roundtrip_warm_start_bitwise(tmp_path):
    """The PySCF warm-start reference (orbitals, CI, extrapolation history) survives the HDF5
    checkpoint bit for bit: the next warm-started step is identical. One OpenMP thread: with
    more, PySCF's threaded integral-derivative reductions may differ in the last bit between two
    calls on identical input (seen once in 2-thread runs of the suite), which is not a property of
    the checkpoint (a swarm runs one thread per MPI rank)."""
    pyscf = pytest.importorskip("pyscf")
    with pyscf.lib.with_omp_threads(1):
        _casscf_handle_roundtrip(tmp_path)


def _casscf_handle_roundtrip(tmp_path):
    from qhd_aimd.electronic.pyscf import CasscfBackend
    b = CasscfBackend(["Li", "H"], basis="sto-3g")
    x = np.array([0.0, 0, 0, 0, 0.1, 3.0])
    d0 = b.compute(x)
    d1 = b.compute(x + 0.02, reference=d0)
    ckpt.write(tmp_path / "c.h5", {"step": 1, "trajectories": {0: {"elec": d1}}})
    e1 = ckpt.read(tmp_path / "c.h5")["trajectories"][0]["elec"]
    h, g = d1.handle, e1.handle
    assert type(g) is type(h) and g.symbols == h.symbols and g.nelecas == h.nelecas
    # checkpoints written before the split of electronic/pyscf_casscf.py still load
    assert ckpt._load_cls("qhd_aimd.electronic.pyscf_casscf:CasscfHandle") is type(h)
    for k in ("coords", "mo_coeff", "energies", "prev_coords", "prev_orbitals"):
        assert np.array_equal(getattr(g, k), getattr(h, k)), k
    assert all(np.array_equal(a, c) for a, c in zip(g.ci, h.ci)) and g.info == h.info
    a = b.compute(x + 0.04, reference=d1)
    c = b.compute(x + 0.04, reference=e1)
    assert np.array_equal(a.energies, c.energies)
    assert np.array_equal(a.handle.mo_coeff, c.handle.mo_coeff)
    assert np.array_equal(b.force(a, np.diag([0.5, 0.5])), b.force(c, np.diag([0.5, 0.5])))
