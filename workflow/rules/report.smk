# One HTML page per study (figures embedded), plus the figures for `snakemake --report`.


rule study_record:
    """The effective study config (config file + command-line overrides), kept with the results."""
    output:
        f"{STUDY_DIR}/study_config.yaml",
    params:
        text=lambda wc: yaml.safe_dump(dict(config), sort_keys=False),
    log:
        f"{LOG_DIR}/study_record.log",
    localrule: True
    conda:
        "../../envs/qhd_aimd.yaml"
    shell:
        "printf '%s\\n' {params.text:q} > {output} 2> {log}"


rule report:
    input:
        runs=report_runs(),
        exact=report_exact(),
        extras=report_extras(),
        study=f"{STUDY_DIR}/study_config.yaml",
    output:
        page=report(
            f"{STUDY_DIR}/report/index.html",
            caption="../report/index.rst",
            category="Study report",
        ),
        figures=report(
            directory(f"{STUDY_DIR}/report/figures"),
            patterns=["{name}.png"],
            caption="../report/figure.rst",
            category="Figures",
        ),
    params:
        runs=lambda wc, input: [os.path.dirname(p) for p in input.runs],
        exact=lambda wc, input: [os.path.dirname(p) for p in input.exact],
        out=lambda wc, output: os.path.dirname(output.page),
        title=study_title(),
    log:
        f"{LOG_DIR}/report.log",
    localrule: True  # light post-processing: on the submit host, not a cluster job
    conda:
        "../../envs/qhd_aimd.yaml"
    shell:
        "python -m qhd_aimd report {params.runs:q} --out {params.out} --exact {params.exact:q} "
        "--title {params.title:q} --study-config {input.study} > {log} 2>&1"
