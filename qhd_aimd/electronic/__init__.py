"""Electronic-structure backends behind one protocol (``base.ElectronicBackend``)."""

from __future__ import annotations


def make_backend(cfg, symbols=None):
    """The backend a study config asks for (PySCF is imported only for molecules)."""
    sysc = cfg.system
    if sysc.model is not None:
        from qhd_aimd.electronic.models import ModelBackend, get_model

        return ModelBackend(get_model(sysc.model, **sysc.model_params),
                            random_phases=sysc.random_phases, phase_kind=sysc.phase_kind,
                            seed=cfg.initial.seed)
    from qhd_aimd.electronic.pyscf import CasscfBackend

    return CasscfBackend.from_config(sysc, symbols)
