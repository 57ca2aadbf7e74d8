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
    localrule: True  # light post-processing: on the submit host, not a cluster job
    conda:
        "../../envs/qhd_aimd.yaml"
    shell:
        "python -m qhd_aimd aggregate {params.dir} > {log} 2>&1"


rule export:
    """Molecules: every trajectory as multi-frame extended XYZ (ASE, OVITO, VMD), linked by the
    report."""
    input:
        f"{STUDY_DIR}/{{system}}/{{method}}/trajectories.h5",
    output:
        directory(f"{STUDY_DIR}/{{system}}/{{method}}/extxyz"),
    params:
        dir=lambda wc, input: os.path.dirname(input[0]),
    log:
        f"{LOG_DIR}/{{system}}/{{method}}/export.log",
    localrule: True
    conda:
        "../../envs/qhd_aimd.yaml"
    shell:
        "python -m qhd_aimd export {params.dir} --format extxyz --out {output} > {log} 2>&1"


rule analysis_config:
    """The `analysis:` section of a system (internal coordinates to plot)."""
    output:
        f"{STUDY_DIR}/{{system}}/analysis.yaml",
    params:
        text=analysis_yaml,
    log:
        f"{LOG_DIR}/{{system}}/analysis_config.log",
    localrule: True
    conda:
        "../../envs/qhd_aimd.yaml"
    shell:
        "printf '%s\\n' {params.text:q} > {output} 2> {log}"


rule coordinates:
    """Molecules with analysis.coordinates: named bonds, angles, dihedrals per trajectory and
    swarm mean -> coordinates.csv (plotted by the report)."""
    input:
        traj=f"{STUDY_DIR}/{{system}}/{{method}}/trajectories.h5",
        analysis=f"{STUDY_DIR}/{{system}}/analysis.yaml",
    output:
        f"{STUDY_DIR}/{{system}}/{{method}}/coordinates.csv",
    params:
        dir=lambda wc, input: os.path.dirname(input.traj),
    log:
        f"{LOG_DIR}/{{system}}/{{method}}/coordinates.log",
    localrule: True
    conda:
        "../../envs/qhd_aimd.yaml"
    shell:
        "python -m qhd_aimd coordinates {params.dir} --config {input.analysis} > {log} 2>&1"
