# Per-job and per-system single-study configs; molecule initial conditions; exact references.
#
# Staleness: the single-study YAMLs are written from the config through `params`, so a changed
# config section changes them (Snakemake's default rerun trigger on params) and reruns the jobs
# that read them; every file a rule reads (study YAMLs, the molecule's xyz) is a declared input.


rule study_config:
    """The single-study YAML of one swarm job (read by `qhd-aimd run`)."""
    output:
        f"{STUDY_DIR}/{{system}}/{{method}}/study.yaml",
    params:
        text=study_yaml,
    log:
        f"{LOG_DIR}/{{system}}/{{method}}/study_config.log",
    localrule: True
    conda:
        "../../envs/qhd_aimd.yaml"
    shell:
        "printf '%s\\n' {params.text:q} > {output} 2> {log}"


rule system_config:
    """The single-study YAML of a system (its first method) for prepare and exact."""
    output:
        f"{STUDY_DIR}/{{system}}/system.yaml",
    params:
        text=system_yaml,
    log:
        f"{LOG_DIR}/{{system}}/system_config.log",
    localrule: True
    conda:
        "../../envs/qhd_aimd.yaml"
    shell:
        "printf '%s\\n' {params.text:q} > {output} 2> {log}"


rule prepare:
    """Molecules: optimised geometry, normal modes, Wigner sampling, initial electronic state;
    shared by every method of the system."""
    input:
        study=f"{STUDY_DIR}/{{system}}/system.yaml",
        files=system_files,
    output:
        f"{STUDY_DIR}/{{system}}/prepare/initial_conditions.h5",
    params:
        out=lambda wc, output: os.path.dirname(output[0]),
    log:
        f"{LOG_DIR}/{{system}}/prepare.log",
    conda:
        "../../envs/qhd_aimd.yaml"
    shell:
        "python -m qhd_aimd prepare --config {input.study} --out {params.out} > {log} 2>&1"


rule exact:
    """Exact split-operator quantum reference (populations, D_01): analytic models (+ scattering
    tables) and diatomic molecules (SA-CASSCF curves scanned first, + exact_bond.csv)."""
    input:
        study=f"{STUDY_DIR}/{{system}}/system.yaml",
    output:
        populations=f"{STUDY_DIR}/{{system}}/exact/exact_populations.csv",
        coherence=f"{STUDY_DIR}/{{system}}/exact/exact_coherence.csv",
        h5=f"{STUDY_DIR}/{{system}}/exact/exact.h5",
    params:
        out=lambda wc, output: os.path.dirname(output.h5),
    log:
        f"{LOG_DIR}/{{system}}/exact.log",
    conda:
        "../../envs/qhd_aimd.yaml"
    shell:
        "python -m qhd_aimd exact --config {input.study} --out {params.out} > {log} 2>&1"
