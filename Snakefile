# qhd_aimd study workflow: systems (models, molecules) x methods -> swarms -> observables -> report.
#
#   snakemake --cores 2                                   # default study (config/config.yaml)
#   snakemake --cores 2 --configfile my_study.yaml        # another study
#   snakemake --profile workflow/profiles/slurm --default-resources slurm_account=A slurm_partition=P
#   snakemake --report report.html                        # Snakemake's own report afterwards
#
# Physics lives in the qhd_aimd package; rules only call the `qhd-aimd` command line.
# Every key is documented in config/README.md; the schema is workflow/schemas/config.schema.yaml.

from snakemake.utils import min_version

min_version("8.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


wildcard_constraints:
    system=SYSTEM_REGEX,
    method=METHOD_REGEX,


include: "workflow/rules/prepare.smk"
include: "workflow/rules/swarm.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        f"{STUDY_DIR}/report/index.html",
    default_target: True
