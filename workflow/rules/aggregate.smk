# Swarm observables of one run directory.


rule aggregate:
    """Populations, decoherence, purities, force decomposition, energies (+ scattering for 1-D
    models) -> observables.h5 and CSV tables next to trajectories.h5."""
    input:
        f"{STUDY_DIR}/{{system}}/{{method}}/trajectories.h5",
    output:
        h5=f"{STUDY_DIR}/{{system}}/{{method}}/observables.h5",
        populations=report(
            f"{STUDY_DIR}/{{system}}/{{method}}/populations.csv",
            caption="../report/populations_csv.rst",
            category="Tables",
            subcategory="{system}",
            labels={"system": "{system}", "method": "{method}", "table": "populations"},
        ),
        coherence=f"{STUDY_DIR}/{{system}}/{{method}}/coherence.csv",
        energy=f"{STUDY_DIR}/{{system}}/{{method}}/energy.csv",
        forces=f"{STUDY_DIR}/{{system}}/{{method}}/forces.csv",
    params:
        dir=lambda wc, input: os.path.dirname(input[0]),
    log:
        f"{LOG_DIR}/{{system}}/{{method}}/aggregate.log",
    conda:
        "../../envs/qhd_aimd.yaml"
    shell:
        "python -m qhd_aimd aggregate {params.dir} > {log} 2>&1"
