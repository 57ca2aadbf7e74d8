# The lock-step trajectory swarm of one (system, method): resumable; one rank without an MPI
# launcher (rule swarm), several ranks as one MPI world (rule swarm_mpi).
#
# Both always pass --restart: a re-run (after a crash, a kill, or a cluster time limit, with
# Snakemake's `retries`) resumes from the run's checkpoint (DIR/run/checkpoint.h5), and a fresh
# directory simply starts from t = 0 (`qhd-aimd run --restart` without a checkpoint is a normal
# start). When the job's config or initial conditions changed (an edited config or xyz), the old
# run/ is kept as run.stale-<k>/ and the swarm starts again (--stale-checkpoint archive).
# Molecules reuse the system's prepared initial conditions (linked into the run directory,
# where `run` looks for them). run.log holds the current attempt (Snakemake clears logs before a
# re-run); DIR/run/history.log keeps every attempt (launcher, MPI world, SLURM step, resumes).


rule swarm:
    """One-rank swarm: plain `qhd-aimd run` (no MPI launcher, no `mpi` resource: a SLURM job
    with one task)."""
    input:
        unpack(swarm_inputs),
    output:
        f"{STUDY_DIR}/{{system}}/{{method}}/trajectories.h5",
    wildcard_constraints:
        system=SERIAL_SYSTEM_REGEX,
    params:
        out=lambda wc, output: os.path.dirname(output[0]),
        link=link_initial_conditions,
    log:
        f"{LOG_DIR}/{{system}}/{{method}}/run.log",
    threads: 1
    resources:
        attempt=lambda wc, attempt: attempt,
    conda:
        "../../envs/qhd_aimd.yaml"
    shell:
        "{params.link}"
        "mkdir -p {params.out}/run; "
        "echo \"[workflow] attempt {resources.attempt}: 1 rank\" | tee -a {params.out}/run/history.log > {log}; "
        "python -m qhd_aimd run --config {input.study} --out {params.out} --restart --stale-checkpoint archive 2>&1 "
        "| tee -a {params.out}/run/history.log >> {log}"


rule swarm_mpi:
    """Multi-rank swarm: `{resources.mpi} -n N python -m mpi4py -m qhd_aimd run`, N = the
    system's ranks (capped by its trajectories). `mpi` is the launcher: `mpiexec` locally; the
    SLURM profile sets `srun --mpi=pmi2`, and a site changes it with
    `--set-resources swarm_mpi:mpi="'srun --mpi=pmix'"` (or `mpiexec` inside the allocation)."""
    input:
        unpack(swarm_inputs),
    output:
        f"{STUDY_DIR}/{{system}}/{{method}}/trajectories.h5",
    wildcard_constraints:
        system=MPI_SYSTEM_REGEX,
    params:
        out=lambda wc, output: os.path.dirname(output[0]),
        link=link_initial_conditions,
        n=launch_ranks,
    log:
        f"{LOG_DIR}/{{system}}/{{method}}/run.log",
    threads: ranks
    resources:
        mpi="mpiexec",
        tasks=ranks,
        cpus_per_task=1,  # one core per rank (not threads = ranks per task)
        attempt=lambda wc, attempt: attempt,
    conda:
        "../../envs/qhd_aimd.yaml"
    shell:
        "{params.link}"
        "mkdir -p {params.out}/run; "
        "echo \"[workflow] attempt {resources.attempt}: {resources.mpi} -n {params.n}\" "
        "| tee -a {params.out}/run/history.log > {log}; "
        "{resources.mpi} -n {params.n} python -m mpi4py -m qhd_aimd run "
        "--config {input.study} --out {params.out} --restart --stale-checkpoint archive 2>&1 "
        "| tee -a {params.out}/run/history.log >> {log}"
