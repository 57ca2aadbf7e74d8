"""State-averaged CASSCF (PySCF) as an electronic-structure backend: ``CasscfBackend``.

Atomic units throughout: bohr, hartree, hartree/bohr. The protocol calls, by module:

``compute(x, reference)``
    SA-CASSCF over ``n_states`` roots, warm-started only from ``reference``: solvers and retry
    ladder in ``solver`` (exact small-space CI in ``ci``, warm-start orbitals in ``warm_start``).
``overlap(a, b)``
    Exact <Psi_n(a)|Psi_m(b)> between states on different orbitals (``overlaps``).
``force(data, rho)``
    Ehrenfest force F_k = -Tr(rho dH/dx_k): one CP-SA-CASSCF solve or term by term (``forces``).

States are returned exactly as PySCF gives them; no sign or phase of any state is ever changed.
Analytic derivatives require equal state-averaging weights (a PySCF restriction) and no density
fitting (not implemented here); both raise ``MissingPropertyError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
from pyscf import lib, mcscf, scf
from pyscf.fci import cistring

from qhd_aimd.electronic.base import ElectronicData
from qhd_aimd.electronic.pyscf.ci import _ExactCI
from qhd_aimd.electronic.pyscf.forces import _Forces
from qhd_aimd.electronic.pyscf.molecule import (build_mol, restrict_to_sigma_rotations,
                                                sigma_orbitals)
from qhd_aimd.electronic.pyscf.overlaps import state_overlap
from qhd_aimd.electronic.pyscf.solver import _Solver
from qhd_aimd.errors import ConfigError
from qhd_aimd.units import AMU_ME


@dataclass
class CasscfBackend(_Solver, _Forces):
    """SA-CASSCF electronic backend (see module docstring).

    Parameters
    ----------
    symbols : sequence of str, element symbols (fixed for the run)
    basis : str, PySCF basis name
    ncas : int, active orbitals
    nelecas : int, active electrons
    n_states : int, number of averaged (and propagated) states
    charge, spin : int, molecular charge and 2S
    weights : sequence of float or None (equal)
    density_fit : bool, density-fitted SA-CASSCF (energies/overlaps only; no analytic forces)
    conv_tol : float, hartree; conv_tol_grad : float; max_cycle : int (macro iterations)
    force_mode : "one_solve" | "term_by_term"
    lagrange_tol : float, relative tolerance of the CP-MCSCF conjugate-gradient solve
    lagrange_max_cycle : int
    ci_tol : float, residual norm ||H c - E c|| of the final CI diagonalisation (Davidson path)
    n_polish : int, polish rounds of the Davidson path (``_polish``)
    exact_ci_max_det : int, active spaces with at most this many determinants use the exact
        spin-pure CI solver (``_ExactCI``) and the Newton solver (``_newton``); larger ones PySCF's
        Davidson + 1-step CASSCF + ``_polish``
    newton_max_cycle : int, Newton iterations per attempt (also capped by ``max_cycle``)
    newton_max_step : float, trust radius: largest norm of one orbital rotation step
    extrapolation_order : int, warm starts extrapolate the orbital subspaces from the reference
        and up to this many of its predecessors (``CasscfHandle.prev_orbitals``) by a polynomial
        in the path's arc length (3: cubic; 0: no extrapolation, orbitals only transported)
    derivative_integrals_max_mb : float, forces and derivatives compute the AO derivative
        integrals once and share them between PySCF's gradient terms when they fit in this
        many megabytes (``_DerivativeIntegrals``; 3 nao^3 (nao+1) / 2 doubles: 21 MB for
        ethylene 6-31G*, 1 GB at nao ~ 95); above, PySCF's integral-direct path (0: always)
    active_switch : "continue" | "stop", warm starts whose converged active orbitals overlap the
        reference's by less than ``active_overlap_min`` (smallest singular value) are an
        active-space switch, a discontinuity of the SA-CASSCF potential (e.g. pi* -> sigma*(CH)
        in ethylene CAS(2,2), where the old solution ceases to exist): "continue" records it in
        ``handle.info["active_switch"]``, "stop" raises ``ActiveSpaceSwitchError`` (the
        trajectory is then stopped and listed as failed)
    active_overlap_min : float, threshold of the switch test (ethylene SA2-CAS(2,2), 0.25 fs
        steps: >= 0.996 on smooth steps, 0.97-0.99 just before a switch, 0.64-0.96 at switches;
        docs/validation/ethylene_s1.md)
    masses_amu : (natm,) float or None, nuclear masses (``molecule.masses_amu``); None: the
        symbol's isotope (D, T) or the most abundant one (``qhd_aimd.atoms.masses_amu``)
    active_orbitals : sequence of ncas int or None, 1-based indices of the RHF orbitals (in
        PySCF's ``mcscf.sort_mo`` convention, ``base=1``) that form the active space of every
        cold start (the first point; fallback rungs); warm starts carry the reference's orbitals.
        None: PySCF's default (the ncas orbitals around the HOMO/LUMO). E.g. LiF CAS(2,2):
        [4, 7] picks the F 2p-sigma and the Li 2s-like orbital instead of the F 2p-pi HOMO
    symmetry : None or "sigma". "sigma" (linear molecules, e.g. diatomics): every active orbital
        is a sigma orbital (A1 of C_inf_v, A1g/A1u of D_inf_h) and no orbital rotation mixes a
        sigma with a pi/delta orbital (``restrict_to_sigma_rotations``, PySCF's symmetry-blocked
        rotations for the sigma class), so the averaged states are the lowest ``n_states``
        Sigma+ states of the active space, never Pi states (which an unrestricted SA-CASSCF of
        excited Sigma+ states rolls into, or sits on a saddle above: docs/validation/
        exact_diatomic.md). Cold starts take ``active_orbitals`` (each must be sigma) or else the
        ncas lowest sigma RHF orbitals above the ncore lowest. ``ConfigError`` at a non-linear
        geometry
    """

    symbols: Sequence[str]
    basis: str = "6-31g*"
    ncas: int = 2
    nelecas: int = 2
    n_states: int = 2
    charge: int = 0
    spin: int = 0
    weights: Optional[Sequence[float]] = None
    density_fit: bool = False
    conv_tol: float = 1e-8
    conv_tol_grad: float = 1e-6
    max_cycle: int = 100
    force_mode: str = "one_solve"
    lagrange_tol: float = 1e-10
    lagrange_max_cycle: int = 200
    ci_tol: float = 1e-9
    n_polish: int = 3
    exact_ci_max_det: int = 2000
    newton_max_cycle: int = 12
    newton_max_step: float = 0.3
    extrapolation_order: int = 3
    derivative_integrals_max_mb: float = 1000.0
    active_switch: str = "continue"
    active_overlap_min: float = 0.98
    masses_amu: Optional[Sequence[float]] = None
    active_orbitals: Optional[Sequence[int]] = None
    symmetry: Optional[str] = None
    masses: np.ndarray = field(init=False, repr=False)
    labels: list = field(init=False, repr=False)

    def __post_init__(self):
        self.symbols = tuple(str(s) for s in self.symbols)
        if self.active_switch not in ("continue", "stop"):
            raise ConfigError(f"active_switch must be continue or stop, not {self.active_switch!r}")
        if self.force_mode not in ("one_solve", "term_by_term"):
            raise ConfigError(f"force must be one_solve or term_by_term, not {self.force_mode!r}")
        if self.weights is None:
            self.weights = tuple([1.0 / self.n_states] * self.n_states)
        self.weights = tuple(float(w) for w in self.weights)
        if len(self.weights) != self.n_states:
            raise ConfigError("weights must have n_states entries")
        # probe molecule: masses (isotopes: qhd_aimd.atoms, amu -> m_e), labels, electron count
        from qhd_aimd.atoms import check_charge_spin, masses_amu
        check_charge_spin(self.symbols, self.charge, self.spin, self.nelecas)
        probe = build_mol(self.symbols, np.arange(3 * len(self.symbols), dtype=float) * 1.7,
                          self.basis, self.charge, self.spin)
        self.masses = np.repeat(masses_amu(self.symbols, self.masses_amu) * AMU_ME, 3)
        counts: dict[str, int] = {}
        labels = []
        for s in self.symbols:
            counts[s] = counts.get(s, 0) + 1
            labels += [f"{s}{counts[s]}.{c}" for c in "xyz"]
        self.labels = labels
        nel = probe.nelectron
        if self.nelecas > nel or (nel - self.nelecas) % 2:
            raise ConfigError(f"active space: {self.nelecas} active electrons incompatible with "
                              f"{nel} electrons (core must be closed-shell)")
        if (self.nelecas - self.spin) % 2 or self.spin > self.nelecas:
            raise ConfigError(f"active space: {self.nelecas} electrons cannot have 2S={self.spin}")
        self.ncore = (nel - self.nelecas) // 2
        if self.ncore + self.ncas > probe.nao_nr():
            raise ConfigError("active space larger than the basis")
        if self.active_orbitals is not None:
            ao = tuple(int(i) for i in self.active_orbitals)
            if len(ao) != self.ncas or len(set(ao)) != len(ao):
                raise ConfigError(f"electronic.active_orbitals: need {self.ncas} distinct MO "
                                  f"indices, got {list(ao)}")
            if min(ao) < 1 or max(ao) > probe.nao_nr():
                raise ConfigError(f"electronic.active_orbitals: 1-based MO indices must lie in "
                                  f"1..{probe.nao_nr()} (orbitals of {self.basis}), got {list(ao)}")
            self.active_orbitals = ao
        self._nelecas = ((self.nelecas + self.spin) // 2, (self.nelecas - self.spin) // 2)
        if self.symmetry not in (None, "sigma"):
            raise ConfigError(f"electronic.symmetry must be null or sigma, not {self.symmetry!r}")

    # ---- construction from the study config ----
    @classmethod
    def from_config(cls, system, symbols: Sequence[str], **overrides) -> "CasscfBackend":
        """Backend for ``system: SystemSpec`` (molecule + electronic) and element ``symbols``.

        ``system.electronic.active_space`` is read as (active electrons, active orbitals),
        i.e. CAS(n_el, n_orb).
        """
        el = system.electronic
        mol = system.molecule
        if el is None or mol is None:
            raise ConfigError("CasscfBackend needs system.molecule and system.electronic")
        kw = dict(
            basis=el.basis, nelecas=int(el.active_space[0]), ncas=int(el.active_space[1]),
            n_states=el.n_states, charge=mol.charge, spin=mol.spin, weights=el.weights,
            density_fit=el.density_fit, conv_tol=el.conv_tol, conv_tol_grad=el.conv_tol_grad,
            max_cycle=el.max_cycle, force_mode=el.force, active_switch=el.active_switch,
            active_overlap_min=el.active_overlap_min, masses_amu=mol.masses_amu,
            active_orbitals=el.active_orbitals, symmetry=el.symmetry,
        )
        kw.update(overrides)
        return cls(symbols=symbols, **kw)

    # ---- PySCF objects ----
    def _mol(self, positions):
        return build_mol(self.symbols, positions, self.basis, self.charge, self.spin)

    def _mf(self, mol):
        mf = scf.RHF(mol)
        mf.verbose = 0
        if self.density_fit:
            mf = mf.density_fit()
        # one-electron Hamiltonian computed once per geometry (PySCF's CASSCF asks for it at
        # every CASCI, gradient and canonicalisation)
        hcore = mf.get_hcore(mol)
        mf.get_hcore = lambda *args, **kwargs: hcore
        return mf

    @property
    def exact_ci(self) -> bool:
        """Whether the active space is small enough for ``_ExactCI`` (and ``_newton``)."""
        na = cistring.num_strings(self.ncas, self._nelecas[0])
        nb = cistring.num_strings(self.ncas, self._nelecas[1])
        return na * nb <= self.exact_ci_max_det

    def _mc(self, mf):
        mc = mcscf.CASSCF(mf, self.ncas, self._nelecas)
        if self.exact_ci:
            lib.set_class(mc.fcisolver, (_ExactCI, type(mc.fcisolver)))
            mc.fcisolver.exact_max_det = self.exact_ci_max_det
        ss = 0.5 * self.spin * (0.5 * self.spin + 1.0)
        mc = mc.fix_spin_(ss=ss).state_average_(list(self.weights))
        mc.fcisolver.nroots = self.n_states
        mc.conv_tol = self.conv_tol
        mc.conv_tol_grad = self.conv_tol_grad
        mc.max_cycle_macro = self.max_cycle
        mc.verbose = 0
        if self.symmetry == "sigma":
            restrict_to_sigma_rotations(mc)
        return mc

    def _cold_active(self, mol, mo) -> Optional[list]:
        """1-based active-orbital indices for a cold start from the RHF orbitals ``mo`` (None:
        PySCF's default around the HOMO/LUMO); see ``active_orbitals`` and ``symmetry``."""
        if self.symmetry != "sigma":
            return None if self.active_orbitals is None else list(self.active_orbitals)
        sig = sigma_orbitals(mol, mo)
        if self.active_orbitals is not None:
            bad = [i for i in self.active_orbitals if not sig[i - 1]]
            if bad:
                raise ConfigError(f"electronic.active_orbitals: MO(s) {bad} are not sigma "
                                  "orbitals (electronic.symmetry: sigma)")
            return list(self.active_orbitals)
        act = [i + 1 for i in range(self.ncore, len(sig)) if sig[i]][: self.ncas]
        if len(act) < self.ncas:
            raise ConfigError(f"electronic.symmetry: sigma: only {len(act)} sigma orbitals above "
                              f"the core for active_space with {self.ncas} orbitals")
        return act

    def overlap(self, a: ElectronicData, b: ElectronicData) -> np.ndarray:
        """(N, N) complex <u_n(a)|u_m(b)> (real-valued for SA-CASSCF)."""
        return state_overlap(a.handle, b.handle).astype(complex)
