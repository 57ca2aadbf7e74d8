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
_SECTION_KEYS = ("initial", "dynamics", "fields", "hopping", "output")
# keys of a system entry that only steer the workflow
_WORKFLOW_KEYS = ("methods", "exact", "ranks")

STUDY = config["study"]
STUDY_DIR = f"{config['results']}/{STUDY}"
LOG_DIR = f"{STUDY_DIR}/logs"
SYSTEMS = config["systems"]


def _deep_merge(base, over):
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


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
            if s.get("exact"):
                errors.append(f"{where}.exact: available for analytic models only")
            if not os.path.exists(s["molecule"]["xyz"]):
                errors.append(f"{where}.molecule.xyz: file not found: {s['molecule']['xyz']}")
            n_states = s.get("electronic", {}).get("n_states", 2)
            if s["initial"].get("state", 0) >= n_states:
                errors.append(f"{where}.initial.state: must be < electronic.n_states ({n_states})")
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
EXACT_SYSTEMS = [n for n, s in SYSTEMS.items() if "model" in s and s.get("exact", True)]
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


def ranks(wildcards):
    """MPI ranks of a swarm job: systems.<name>.ranks, else mpi.ranks, at most one per trajectory.
    Used as the rule's threads; Snakemake lowers threads to --cores locally, and tasks follow."""
    n = SYSTEMS[wildcards.system].get("ranks", config["mpi"]["ranks"])
    return max(1, min(int(n), int(SYSTEMS[wildcards.system]["initial"]["n_trajectories"])))


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


def report_runs(wildcards=None):
    return [f"{STUDY_DIR}/{s}/{m}/observables.h5" for s, m in JOBS]


def report_exact(wildcards=None):
    return [f"{STUDY_DIR}/{s}/exact/exact_populations.csv" for s in EXACT_SYSTEMS]


def study_title():
    return config.get("title") or f"qhd_aimd study '{STUDY}'"
