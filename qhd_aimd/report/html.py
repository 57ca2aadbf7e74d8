"""One self-contained HTML page for a study: figures, tables, failures, configs, provenance.

Input: aggregated run directories (``observables.h5`` from ``qhd-aimd aggregate``) and, for the
analytic models and diatomic molecules, exact-reference directories (``exact_populations.csv``,
``exact_coherence.csv``, ``exact_bond.csv`` (diatomics: overlaid on the swarm bond length),
``exact_scattering.csv`` from ``qhd-aimd exact``). Runs that share system, initial conditions and
time grid are shown together (one section per system, every method overlaid); an exact
directory joins the section whose study ``name`` it carries (``exact.h5`` attribute
``meta_name``), else the section of a run in the same parent directory, else the only section
of the same model.

Output, in ``out_dir``: ``index.html`` (figures embedded as base64 PNG, so the page is the
whole report) and the same figures as ``figures/<section>_<kind>.png``.

Units: time in fs, energies in hartree (drifts in millihartree), forces in hartree/bohr.

This module assembles the page; the parts live by task in :mod:`qhd_aimd.report.sections`
(loading, grouping), :mod:`~qhd_aimd.report.figures`, :mod:`~qhd_aimd.report.tables` and
:mod:`~qhd_aimd.report.provenance`, and their public names are importable from here too.
"""

from __future__ import annotations

import datetime as _dt
import sys
from pathlib import Path

from qhd_aimd.errors import QhdError
from qhd_aimd.report.figures import (FIGURES, _save, fig_bond, fig_decoherence, fig_energy,
                                     fig_forces, fig_hopping, fig_populations, swarm_bond_length)
from qhd_aimd.report.provenance import VERSIONED, git_revision, package_versions
from qhd_aimd.report.sections import (Exact, Run, Section, attach_exact, group_runs, load_exact,
                                      load_run)
from qhd_aimd.report.tables import _momentum, _scattering, _summary

__all__ = ["FIGURES", "VERSIONED", "Exact", "Run", "Section", "attach_exact", "fig_bond",
           "fig_decoherence", "fig_energy", "fig_forces", "fig_hopping", "fig_populations",
           "git_revision", "group_runs", "load_exact", "load_run", "package_versions",
           "swarm_bond_length", "write_report"]


def write_report(run_dirs, out_dir, exact_dirs=(), title: str = "qhd_aimd study",
                 study_config: str | Path | None = None) -> Path:
    """Write ``out_dir/index.html`` (+ ``out_dir/figures/*.png``); return the page's path.

    Parameters
    ----------
    run_dirs : iterable of paths
        Aggregated run directories (each with ``observables.h5``).
    out_dir : path
        Report directory (created).
    exact_dirs : iterable of paths
        Exact-reference directories (``exact_*.csv``), matched to sections (module docstring).
    title : str
        Page title.
    study_config : path, optional
        The workflow-level study config, shown verbatim.
    """
    from jinja2 import Environment, PackageLoader, select_autoescape

    runs = [load_run(d) for d in run_dirs]
    if not runs:
        raise QhdError("report: no run directories given")
    sections = group_runs(runs)
    unmatched = attach_exact(sections, [load_exact(d) for d in exact_dirs])
    out = Path(out_dir)
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)

    page_sections = []
    for sec in sections:
        figs = []
        extra = ()
        if (sec.exact is not None and sec.exact.bond is not None) or any(
                swarm_bond_length(r) is not None for r in sec.runs):
            extra = (("bond", fig_bond, "Bond length (diatomics)"),)
        for kind, make, caption in FIGURES + extra:
            name = f"{sec.slug}_{kind}.png"
            fig = make(sec)
            if fig is None:  # figure does not apply to this section's runs
                continue
            figs.append({"file": f"figures/{name}", "caption": caption,
                         "b64": _save(fig, figdir / name)})
        from qhd_aimd.report.extras import section_extras

        more, exports = section_extras(sec, out, figdir, _save)
        figs += more
        page_sections.append({
            "label": sec.label, "slug": sec.slug, "figures": figs, "exports": exports,
            "summaries": [_summary(r) for r in sec.runs], "scattering": _scattering(sec),
            "momentum": _momentum(sec),
            "exact": None if sec.exact is None else {"path": str(sec.exact.path),
                                                     "attrs": sec.exact.attrs},
            "failures": [{"method": r.method, "path": str(r.path), "id": tid, "reason": why}
                         for r in sec.runs for tid, why in sorted(r.failures.items())],
            "configs": [{"method": r.method, "path": str(r.path), "yaml": r.config_yaml}
                        for r in sec.runs],
        })
    study_yaml = None
    if study_config is not None:
        study_yaml = Path(study_config).read_text()
    env = Environment(loader=PackageLoader("qhd_aimd.report", "templates"),
                      autoescape=select_autoescape(["html"]))
    html = env.get_template("report.html").render(
        title=title, sections=page_sections, versions=package_versions(),
        git=git_revision(), cwd_git=git_revision(Path.cwd()), command=" ".join(sys.argv),
        created=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        unmatched=[str(e.path) for e in unmatched], study_yaml=study_yaml,
        n_failures=sum(len(r.failures) for r in runs))
    path = out / "index.html"
    tmp = path.with_name("index.html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path
