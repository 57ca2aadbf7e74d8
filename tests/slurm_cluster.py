"""A throw-away single-node SLURM cluster (munge + slurmctld + slurmd) for tests/test_slurm.py.

Everything lives in one temporary directory: munge key and socket, spool and state directories,
logs, ``slurm.conf``. The configuration is also installed at SLURM's standard place
``/etc/slurm/slurm.conf`` for the lifetime of the cluster (refused if a file is already there:
this never touches a real cluster), because snakemake-executor-plugin-slurm's job step removes
every ``SLURM_*`` variable - ``SLURM_CONF`` included - before it calls ``srun`` inside a job.
The daemons run in the foreground as children of this process and are stopped by PID.
No accounting (no slurmdbd): the workflow polls job states with ``squeue``.

Job ids start at a random ``FirstJobId`` (not 1), and ``stop()`` removes the shared-memory
segments MPI jobs of this cluster left in /dev/shm. Reason (measured, README "On a SLURM
cluster"): mpich names its node shared-memory segment ``/dev/shm/mpich_shm_<FNV-1a of the PMI
KVS name>_<node>``, and SLURM's PMI2 KVS name is ``<jobid>.<stepid>``. A job step killed by
SLURM (the test's time limit, ``--kill-on-bad-exit``) leaves its segment behind; a later step
with the same job and step id - every throw-away cluster that starts at job 1 - attaches to the
stale segment and ``MPI_Init`` fails ("UCX ERROR failed to unpack address, invalid bandwidth
0.00" or "Message truncated").

    python tests/slurm_cluster.py DIR [FIRST_JOB_ID]   # start one by hand (Ctrl-C stops it)
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "srun")
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
SHM_DIR = Path("/dev/shm")

SLURM_CONF = """\
ClusterName=qhdtest
FirstJobId={first_job_id}
SlurmctldHost={host}
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser={user}
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=2
MinJobAge=600
InactiveLimit=0
OverTimeLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
MessageTimeout=20
NodeName={host} CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName={partition} Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
"""


def missing_tools() -> list[str]:
    return [t for t in DAEMONS if shutil.which(t) is None and not Path("/usr/sbin", t).exists()]


def why_not() -> str | None:
    """Why a throw-away cluster cannot be started here (None if it can)."""
    missing = missing_tools()
    if missing:
        return "SLURM/munge not installed (missing " + ", ".join(missing) + \
            "; Debian: apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "starting slurmd needs root"
    if SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink():
        return f"{SYSTEM_CONF} exists (a real SLURM installation is not touched)"
    return None


def mpich_kvs_hash(kvs_name: str) -> int:
    """mpich's ``world_id``: 32-bit FNV-1a hash of the PMI KVS name (mpich src/util/mpir_pmi.c,
    ``HASH_FNV``); it names the node's shared-memory segment ``mpich_shm_<hex>_<node id>``."""
    h = 0x811C9DC5
    for b in kvs_name.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def mpich_segments(job_ids, steps=range(10), shm_dir: Path = SHM_DIR) -> list[Path]:
    """The mpich shared-memory files in ``shm_dir`` that belong to SLURM job steps
    ``<job>.<step>`` (PMI2 KVS names) of the given jobs."""
    prefixes = {f"mpich_{kind}_{mpich_kvs_hash(f'{j}.{s}'):x}_"
                for j in job_ids for s in steps for kind in ("shm", "vci")}
    try:
        names = os.listdir(shm_dir)
    except OSError:
        return []
    return [shm_dir / n for n in names if n[:n.rfind("_") + 1] in prefixes]


def _tool(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """Start with ``start()``, stop with ``stop()`` (also a context manager)."""

    def __init__(self, root: str | Path, partition: str = "debug", cpus: int | None = None,
                 mem_mb: int = 4000, first_job_id: int | None = None):
        reason = why_not()
        if reason:
            raise RuntimeError(reason)
        self.root = Path(root).resolve()
        self.partition = partition
        self.cpus = cpus or os.cpu_count() or 2
        self.mem_mb = mem_mb
        self.host = socket.gethostname().split(".")[0]
        self.procs: list[subprocess.Popen] = []
        self.installed_conf = False
        # a fresh job id range per cluster: PMI2 KVS names (hence mpich's /dev/shm names) of an
        # earlier throw-away cluster are not met again (module docstring)
        self.first_job_id = first_job_id or random.SystemRandom().randrange(10**6, 6 * 10**7)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    def env(self, base: dict | None = None) -> dict:
        e = dict(os.environ if base is None else base)
        e["SLURM_CONF"] = str(self.conf)
        for k in [k for k in e if k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))]:
            if k != "SLURM_CONF":
                del e[k]
        return e

    def start(self, timeout: float = 60.0) -> "Cluster":
        r = self.root
        for d in ("munge", "state", "spool"):
            (r / d).mkdir(parents=True, exist_ok=True)
        os.chmod(r / "munge", 0o700)
        key = r / "munge" / "munge.key"
        subprocess.run([_tool("mungekey"), "--create", "--keyfile", str(key), "--force"],
                       check=True, capture_output=True)
        os.chmod(key, 0o400)
        sock = r / "munge" / "munge.socket"
        self._spawn([_tool("munged"), "--foreground", "--force", f"--key-file={key}",
                     f"--socket={sock}", f"--pid-file={r / 'munge' / 'munged.pid'}",
                     f"--log-file={r / 'munge' / 'munged.log'}", f"--seed-file={r / 'munge' / 'seed'}"],
                    r / "munged.out")
        self._wait(lambda: sock.exists(), timeout, "munged socket")
        self.conf.write_text(SLURM_CONF.format(
            host=self.host, ctld_port=_free_port(), d_port=_free_port(), root=r,
            user=os.environ.get("USER") or "root", munge_socket=sock, cpus=self.cpus,
            mem_mb=self.mem_mb, partition=self.partition, first_job_id=self.first_job_id))
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.symlink_to(self.conf)
        self.installed_conf = True
        env = self.env()
        self._spawn([_tool("slurmctld"), "-D", "-i", "-f", str(self.conf)], r / "slurmctld.out", env)
        self._spawn([_tool("slurmd"), "-D", "-f", str(self.conf)], r / "slurmd.out", env)
        self._wait(self._node_idle, timeout, "an idle node (see slurmctld.log / slurmd.log)")
        return self

    def _node_idle(self) -> bool:
        p = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env(), capture_output=True,
                           text=True, check=False)
        return p.returncode == 0 and p.stdout.strip().startswith("idle")

    def _spawn(self, cmd, log: Path, env=None):
        fh = open(log, "w")
        self.procs.append(subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                           start_new_session=True))
        fh.close()

    def _wait(self, cond, timeout, what):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{p.args[0]} exited with {p.returncode} while waiting for {what}; "
                                       f"logs in {self.root}")
            if cond():
                return
            time.sleep(0.5)
        raise RuntimeError(f"timed out after {timeout} s waiting for {what}; logs in {self.root}")

    def last_job_id(self) -> int | None:
        """The highest job id this cluster has given (None if it cannot tell)."""
        p = subprocess.run(["scontrol", "show", "jobs", "--oneliner"], env=self.env(),
                           capture_output=True, text=True, check=False)
        ids = [int(w.split("=")[1]) for w in p.stdout.split() if w.startswith("JobId=")]
        return max(ids) if ids else None

    def stop(self) -> None:
        """SIGTERM each daemon started here (by PID, newest first), SIGKILL after 10 s; remove
        the mpich shared-memory files its (killed) MPI job steps left in /dev/shm."""
        last = self.last_job_id() if self.procs else None
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []
        if self.installed_conf and SYSTEM_CONF.is_symlink() and \
                Path(os.readlink(SYSTEM_CONF)) == self.conf:
            SYSTEM_CONF.unlink()
        self.installed_conf = False
        # job ids of this cluster only (MinJobAge keeps finished jobs listed; else 1000 ids)
        last = last if last is not None else self.first_job_id + 1000
        for f in mpich_segments(range(self.first_job_id, last + 1)):
            f.unlink(missing_ok=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":
    import sys

    signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with Cluster(sys.argv[1], first_job_id=int(sys.argv[2]) if len(sys.argv) > 2 else None) as c:
        print(f"export SLURM_CONF={c.conf}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
