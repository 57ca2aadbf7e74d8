# Config validation, derived constants and input functions only (no rules).

import os
import re
import sys

import yaml
from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")

# keys of a system entry that belong under `system:` of the single-study config
_SYSTEM_KEYS = ("model", "model_params", "random_phases", "phase_kind", "molecule", "electronic")
# keys of a system entry that are top-level sections of the single-study config
_SECTION_KEYS = ("initial", "dynamics", "fields", "hopping", "output", "exact_scan")
# keys of a system entry that only steer the workflow
_WORKFLOW_KEYS = ("methods", "exact", "ranks", "analysis")

STUDY = config["study"]
STUDY_DIR = f"{config['results']}/{STUDY}"
LOG_DIR = f"{STUDY_DIR}/logs"
SYSTEMS = config["systems"]


def _deep_merge(base, over):
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _n_atoms(xyz):
    try:
        with open(xyz) as fh:
            return int(fh.readline().split()[0])
    except (ValueError, IndexError):
        return -1


def _check_analysis(name, s):
    """systems.<name>.analysis: validated by qhd_aimd (atom indices against the xyz file)."""
    if "analysis" not in s:
        return []
    where = f"systems.{name}"
    if "molecule" not in s:
        return [f"{where}.analysis: internal coordinates apply to molecules only"]
    from qhd_aimd.analysis.coordinates import parse_analysis
    from qhd_aimd.errors import ConfigError

    try:
        spec = parse_analysis(s["analysis"]).coordinates
        if os.path.exists(s["molecule"]["xyz"]):
            with open(s["molecule"]["xyz"]) as fh:
                spec.check_atoms(int(fh.readline().split()[0]), f"{where}.analysis.coordinates")
    except ConfigError as exc:
        msg = str(exc)
        return [msg if msg.startswith(where) else f"{where}.{msg}"]
    return []


def _check_systems():
    """Cross-key checks the schema cannot express (StudyConfig repeats them at run time)."""
    errors = []
    for name, raw in SYSTEMS.items():
        s = _deep_merge(config.get("defaults", {}), raw)
        where = f"systems.{name}"
        if ("model" in s) == ("molecule" in s):
            errors.append(f"{where}: give exactly one of 'model' or 'molecule'")
        elif "model" in s:
            if "electronic" in s:
                errors.append(f"{where}.electronic: applies to molecules only")
            missing = [k for k in ("position_bohr", "momentum_au", "width_bohr")
                       if k not in s["initial"]]
            if missing:
                errors.append(f"{where}.initial: models need {', '.join(missing)}")
            if "sampling" in s["initial"]:
                errors.append(f"{where}.initial.sampling: applies to molecules only")
        else:
            if not os.path.exists(s["molecule"]["xyz"]):
                errors.append(f"{where}.molecule.xyz: file not found: {s['molecule']['xyz']}")
            elif s.get("exact") and _n_atoms(s["molecule"]["xyz"]) != 2:
                errors.append(f"{where}.exact: available for analytic models and diatomic "
                              "molecules only")
            n_states = s.get("electronic", {}).get("n_states", 2)
            if s["initial"].get("state", 0) >= n_states:
                errors.append(f"{where}.initial.state: must be < electronic.n_states ({n_states})")
        errors += _check_analysis(name, s)
        if "n_trajectories" not in s["initial"]:
            errors.append(f"{where}.initial.n_trajectories: required")
        dyn = s.get("dynamics", {})
        for key in ("dt", "t_final"):
            if (f"{key}_au" in dyn) == (f"{key}_fs" in dyn):
                errors.append(f"{where}.dynamics: give exactly one of {key}_au or {key}_fs")
        if len(set(s["methods"])) != len(s["methods"]):
            errors.append(f"{where}.methods: duplicate entries")
    if errors:
        raise ValueError("invalid study configuration:\n  " + "\n  ".join(errors))


_check_systems()

METHODS = sorted({m for s in SYSTEMS.values() for m in s["methods"]})
MOLECULES = [n for n, s in SYSTEMS.items() if "molecule" in s]
# models: exact by default; molecules: on request (diatomics only, checked above)
EXACT_SYSTEMS = [n for n, s in SYSTEMS.items() if s.get("exact", "model" in s)]
JOBS = [(n, m) for n, s in SYSTEMS.items() for m in s["methods"]]
SYSTEM_REGEX = "|".join(map(re.escape, SYSTEMS))
METHOD_REGEX = "|".join(map(re.escape, METHODS))


def _env_setup():
    """Shell prefix of all rules (strict bash) - one thread per MPI rank, passive OpenMP
    waiting, and the bin dir of the Python running Snakemake first on PATH (python, mpiexec and
    qhd_aimd are found without activating the venv). With --use-conda the rule's env provides
    python and MPI instead, and qhd_aimd is imported from this checkout (PYTHONPATH)."""
    exports = "set -euo pipefail; export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE"
    methods = getattr(getattr(workflow, "deployment_settings", None), "deployment_method", ())
    if "CONDA" in {str(getattr(m, "name", m)).upper() for m in methods}:
        # doubled braces: shell.prefix() formats its argument like a rule's shell command
        exports += f' PYTHONPATH="{workflow.basedir}${{{{PYTHONPATH:+:$PYTHONPATH}}}}"'
    else:
        exports += f' PATH="{os.path.dirname(sys.executable)}:$PATH"'
    return f"{exports}; "


shell.prefix(_env_setup())


def study_config(system, method):
    """The single-study config (qhd_aimd.config.StudyConfig) of one swarm job, as a dict."""
    s = _deep_merge(config.get("defaults", {}), SYSTEMS[system])
    cfg = {"name": system,
           "system": {k: s[k] for k in _SYSTEM_KEYS if k in s},
           "method": method}
    for k in _SECTION_KEYS:
        if k in s:
            cfg[k] = s[k]
    return cfg


def study_yaml(wildcards):
    return yaml.safe_dump(study_config(wildcards.system, wildcards.method), sort_keys=False)


def system_yaml(wildcards):
    """Config used by the per-system rules (prepare, exact): the system's first method."""
    return yaml.safe_dump(study_config(wildcards.system, SYSTEMS[wildcards.system]["methods"][0]),
                          sort_keys=False)


def system_ranks(name):
    """MPI ranks of the swarm jobs of system `name`: systems.<name>.ranks, else mpi.ranks, at most
    one per trajectory (a pure function of the config: the same in the submitting Snakemake and
    inside a cluster job)."""
    s = _deep_merge(config.get("defaults", {}), SYSTEMS[name])
    n = s.get("ranks", config["mpi"]["ranks"])
    return max(1, min(int(n), int(s["initial"]["n_trajectories"])))


def ranks(wildcards):
    """MPI ranks of a swarm job (see system_ranks); the rule's threads and SLURM tasks."""
    return system_ranks(wildcards.system)


def launch_ranks(wildcards, threads, resources):
    """Ranks on the launcher's command line. Locally: the threads, which Snakemake lowers to
    --cores. Inside a cluster job (remote execution): the job's tasks, from the config - the
    job's own Snakemake runs with `--cores all`, which may be fewer CPUs than the allocation's
    tasks (multi-node), and must not shrink the MPI world."""
    return int(resources.tasks) if workflow.remote_exec else int(threads)


# one-rank swarms run without an MPI launcher (rule swarm), the others under one (rule swarm_mpi)
_NEVER = "(?!x)x"
SERIAL_SYSTEM_REGEX = "|".join(re.escape(n) for n in SYSTEMS if system_ranks(n) == 1) or _NEVER
MPI_SYSTEM_REGEX = "|".join(re.escape(n) for n in SYSTEMS if system_ranks(n) > 1) or _NEVER


def system_files(wildcards):
    """Files the system's config refers to (molecules: the xyz), declared as inputs of prepare,
    so that editing or replacing one reruns prepare and every swarm of the system."""
    s = _deep_merge(config.get("defaults", {}), SYSTEMS[wildcards.system])
    return [s["molecule"]["xyz"]] if "molecule" in s else []


def swarm_inputs(wildcards):
    inputs = {"study": f"{STUDY_DIR}/{wildcards.system}/{wildcards.method}/study.yaml"}
    if wildcards.system in MOLECULES:
        inputs["ic"] = f"{STUDY_DIR}/{wildcards.system}/prepare/initial_conditions.h5"
    return inputs


def analysis_yaml(wildcards):
    """`analysis:` section of a system, for `qhd-aimd coordinates --config`."""
    return yaml.safe_dump({"analysis": SYSTEMS[wildcards.system].get("analysis", {})},
                          sort_keys=False)


ANALYSIS_SYSTEMS = [n for n in MOLECULES
                    if SYSTEMS[n].get("analysis", {}).get("coordinates")]


def report_extras(wildcards=None):
    """Molecules: exported trajectories (extxyz) and internal coordinates, linked/plotted by the
    report."""
    out = [f"{STUDY_DIR}/{s}/{m}/extxyz" for s, m in JOBS if s in MOLECULES]
    out += [f"{STUDY_DIR}/{s}/{m}/coordinates.csv" for s, m in JOBS if s in ANALYSIS_SYSTEMS]
    return out


def link_initial_conditions(wildcards, input):
    """Shell prefix of the swarm rules: molecules link the system's prepared initial conditions
    into the run directory (where `qhd-aimd run` looks for them)."""
    if "ic" not in input.keys():
        return ""
    return (f"ln -sfn ../prepare/initial_conditions.h5 "
            f"{os.path.dirname(input.study)}/initial_conditions.h5 && ")


def report_runs(wildcards=None):
    return [f"{STUDY_DIR}/{s}/{m}/observables.h5" for s, m in JOBS]


def report_exact(wildcards=None):
    return [f"{STUDY_DIR}/{s}/exact/exact_populations.csv" for s in EXACT_SYSTEMS]


def study_title():
    return config.get("title") or f"qhd_aimd study '{STUDY}'"
