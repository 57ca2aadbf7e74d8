# The lock-step trajectory swarm of one (system, method): MPI, resumable.


rule swarm:
    """`qhd-aimd run` under MPI. Always called with --restart: a re-run of this rule (after a
    crash, a kill or a cluster time limit) resumes from DIR/run/checkpoint.h5, and a fresh
    directory simply starts from t = 0. When the job's config or initial conditions changed
    (an edited config or xyz), the old run/ is kept as run.stale-<k>/ and the swarm starts
    again (--stale-checkpoint archive). Molecules reuse the system's prepared initial
    conditions (linked into the run directory, where `run` looks for them)."""
    input:
        unpack(swarm_inputs),
    output:
        f"{STUDY_DIR}/{{system}}/{{method}}/trajectories.h5",
    params:
        out=lambda wc, output: os.path.dirname(output[0]),
        link=lambda wc, input: (
            f"ln -sfn ../prepare/initial_conditions.h5 "
            f"{os.path.dirname(input.study)}/initial_conditions.h5 && "
            if "ic" in input.keys()
            else ""
        ),
    log:
        f"{LOG_DIR}/{{system}}/{{method}}/run.log",
    threads: ranks
    resources:
        mpi="mpiexec",
        tasks=lambda wc, threads: threads,
    conda:
        "../../envs/qhd_aimd.yaml"
    shell:
        "{params.link}"
        "{resources.mpi} -n {resources.tasks} python -m mpi4py -m qhd_aimd run "
        "--config {input.study} --out {params.out} --restart --stale-checkpoint archive > {log} 2>&1"
