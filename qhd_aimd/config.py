"""Typed, validated configuration of one study (one system x one method).

The YAML layout (see ``config/README.md`` for every key)::

    system:  {model: tully_simple, random_phases: false}                       # analytic model
             | {molecule: {xyz: ..., charge: 0, spin: 0},
                electronic: {method: sa-casscf, basis: 6-31g*, active_space: [2, 2], n_states: 2}}
    initial: {position_bohr: -10.0, momentum_au: 15.0, width_bohr: 1.333,      # models
              n_trajectories: 200, state: 0, seed: 1}
             | {sampling: wigner, temperature_K: 0, n_trajectories: 16, state: 1, seed: 1}
    method:  ehrenfest | geometric_ehrenfest | ehrenfest_qc | geometric_ehrenfest_qc | fssh | fssh_qc
    dynamics: {dt_au: 5.0, t_final_au: 3000.0}    # or dt_fs / t_final_fs
    fields:  {bandwidth_factor: 1.0}                # swarm estimators (coupled methods)
    hopping: {decoherence: edc}                     # surface hopping (fssh, fssh_qc)
    output:  {checkpoint_every: 50}
    exact_scan: {r_min_bohr: 2.0, r_max_bohr: 20.0}  # qhd-aimd exact on a diatomic molecule

Errors name the offending key and are raised as ``ConfigError``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from qhd_aimd.errors import ConfigError
from qhd_aimd.units import FS_AUT

METHODS = ("ehrenfest", "geometric_ehrenfest", "ehrenfest_qc", "geometric_ehrenfest_qc", "fssh", "fssh_qc")
HOPPING_METHODS = ("fssh", "fssh_qc")
MODEL_NAMES = ("tully_simple", "tully_dual", "tully_extended", "berry_2d")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MoleculeSpec(_Strict):
    xyz: str = Field(description="path of an xyz file, coordinates in angstrom")
    charge: int = 0
    spin: int = Field(0, ge=0, description="2S (number of unpaired electrons)")
    masses_amu: Optional[list[float]] = Field(
        None, description="nuclear mass of every atom, amu (default: symbol's isotope: D, T, "
        "else the most abundant one)")

    @field_validator("masses_amu")
    @classmethod
    def _masses(cls, v):
        if v is not None and (not v or min(v) <= 0):
            raise ValueError("masses_amu must list one positive mass (amu) per atom")
        return v


class ElectronicSpec(_Strict):
    method: Literal["sa-casscf"] = "sa-casscf"
    basis: str = "6-31g*"
    active_space: tuple[int, int] = Field((2, 2), description="(active electrons, active orbitals): CAS(n_el, n_orb)")
    n_states: int = Field(2, ge=2)
    weights: Optional[list[float]] = None
    density_fit: bool = False
    conv_tol: float = Field(1e-8, gt=0, description="hartree; SA-CASSCF energy convergence")
    conv_tol_grad: float = Field(1e-6, gt=0)
    max_cycle: int = Field(100, ge=1)
    force: Literal["one_solve", "term_by_term"] = "one_solve"
    active_switch: Literal["continue", "stop"] = Field(
        "continue", description="what a warm start does when the converged active space switched "
        "character (active-orbital overlap with the previous step below active_overlap_min)")
    active_overlap_min: float = Field(0.98, gt=0, le=1)
    active_orbitals: Optional[list[int]] = Field(
        None, description="1-based indices (PySCF mcscf.sort_mo convention, base=1) of the RHF "
        "molecular orbitals that form the active space of a cold start; warm starts carry the "
        "previous orbitals (default: the ncas orbitals around the HOMO/LUMO)")
    symmetry: Optional[Literal["sigma"]] = Field(
        None, description="linear molecules: 'sigma' keeps every active orbital sigma and never "
        "mixes sigma with pi/delta orbitals, so the averaged states are Sigma+ states only "
        "(qhd_aimd.electronic.pyscf.CasscfBackend.symmetry)")

    @model_validator(mode="after")
    def _active_orbitals(self):
        ao = self.active_orbitals
        if ao is not None:
            ncas = self.active_space[1]
            if len(ao) != ncas:
                raise ValueError(f"active_orbitals lists {len(ao)} orbitals, active_space has "
                                 f"{ncas} active orbitals")
            if min(ao) < 1 or len(set(ao)) != len(ao):
                raise ValueError("active_orbitals must be distinct 1-based MO indices (>= 1)")
        return self

    @model_validator(mode="after")
    def _weights(self):
        if self.weights is not None:
            if len(self.weights) != self.n_states:
                raise ValueError(f"weights has {len(self.weights)} entries, n_states is {self.n_states}")
            if abs(sum(self.weights) - 1.0) > 1e-8 or min(self.weights) <= 0:
                raise ValueError("weights must be positive and sum to 1")
        return self


class SystemSpec(_Strict):
    model: Optional[Literal[MODEL_NAMES]] = None
    model_params: dict[str, float] = Field(default_factory=dict)
    random_phases: bool = False
    phase_kind: Literal["auto", "sign", "complex"] = "auto"
    molecule: Optional[MoleculeSpec] = None
    electronic: Optional[ElectronicSpec] = None

    @model_validator(mode="after")
    def _one_kind(self):
        if (self.model is None) == (self.molecule is None):
            raise ValueError("give exactly one of system.model or system.molecule")
        if self.molecule is not None and self.electronic is None:
            self.electronic = ElectronicSpec()
        if self.model is not None and self.electronic is not None:
            raise ValueError("system.electronic applies to molecules only")
        return self


class InitialSpec(_Strict):
    n_trajectories: int = Field(ge=1)
    state: int = Field(0, ge=0)
    seed: int = Field(1, ge=0)
    # models: Wigner function of a Gaussian wavepacket
    position_bohr: Optional[Union[float, list[float]]] = None
    momentum_au: Optional[Union[float, list[float]]] = None
    width_bohr: Optional[Union[float, list[float]]] = Field(None, description="std. dev. of |psi|^2")
    # models: "wigner" (default) or "hydrodynamic" (positions from |psi|^2, every momentum = k:
    # the fluid elements of the Gaussian, to be used with fields.quantum_force); molecules: wigner
    sampling: Optional[Literal["wigner", "hydrodynamic"]] = None
    temperature_K: float = Field(0.0, ge=0)
    state_window_eV: Optional[tuple[float, float]] = None
    # molecules: normal modes of the prepared minimum (qhd_aimd/prepare/molecule.py)
    imaginary_modes: Literal["error", "skip"] = Field(
        "error", description="imaginary frequency at the optimised geometry: error, or skip "
        "(the mode is not sampled; the swarm starts at the saddle along it)")
    soft_mode_cm1: float = Field(50.0, ge=0, description="real modes below this wavenumber are "
                                 "frozen (not sampled), cm^-1")
    max_candidates: Optional[int] = Field(
        None, ge=1, description="state_window_eV: Wigner samples tried at most (default "
        "10 n_trajectories)")

    @field_validator("state_window_eV")
    @classmethod
    def _window(cls, v):
        if v is not None and not v[0] < v[1]:
            raise ValueError("state_window_eV must be [low, high] with low < high")
        return v

    @field_validator("width_bohr")
    @classmethod
    def _positive(cls, v):
        vals = v if isinstance(v, list) else [v]
        if v is not None and any(w <= 0 for w in vals):
            raise ValueError("width_bohr must be > 0")
        return v


class DynamicsSpec(_Strict):
    dt_au: Optional[float] = Field(None, gt=0)
    t_final_au: Optional[float] = Field(None, gt=0)
    dt_fs: Optional[float] = Field(None, gt=0)
    t_final_fs: Optional[float] = Field(None, gt=0)
    n_substeps: int = Field(20, ge=1, description="electronic sub-steps per nuclear step")
    energy_correction: Literal["rescale", "none"] = Field(
        "rescale", description="coupled methods: rescale each trajectory's momentum after every step "
        "so that E_kin + Tr(rho H_el) is conserved (docs/physics.md, Energy); none: uncorrected")

    @model_validator(mode="after")
    def _units(self):
        if (self.dt_au is None) == (self.dt_fs is None):
            raise ValueError("give exactly one of dynamics.dt_au or dynamics.dt_fs")
        if (self.t_final_au is None) == (self.t_final_fs is None):
            raise ValueError("give exactly one of dynamics.t_final_au or dynamics.t_final_fs")
        if self.dt > self.t_final:
            raise ValueError("dt is longer than t_final")
        return self

    @property
    def dt(self) -> float:
        """Time step, atomic units of time."""
        return self.dt_au if self.dt_au is not None else self.dt_fs * FS_AUT

    @property
    def t_final(self) -> float:
        """Total time, atomic units of time."""
        return self.t_final_au if self.t_final_au is not None else self.t_final_fs * FS_AUT

    @property
    def n_steps(self) -> int:
        return int(round(self.t_final / self.dt))


class FieldsSpec(_Strict):
    bandwidth_factor: float = Field(1.0, gt=0, description="multiplies the Silverman bandwidth")
    bandwidth_bohr: Optional[Union[float, list[float]]] = None
    ridge: float = Field(1e-10, ge=0, description="Tikhonov regularisation of local regression")
    cutoff_sigma: float = Field(4.0, gt=0, description="neighbours beyond this many bandwidths are ignored")
    demodulate: Union[bool, Literal["auto"]] = Field(
        "auto", description="regress coherences in their co-moving phase frame (see docs/physics.md); "
        "false: plain regression of rho; auto: true for models, false for molecules")
    quantum_force: bool = Field(False, description="add the quantum force of Eq. 68 estimated from "
                                "the swarm (full QHD; use with initial.sampling: hydrodynamic)")
    coherence_gradient: Literal["regression", "accumulated", "energy_consistent"] = Field(
        "energy_consistent", description="d rho of the coherences: from each trajectory's "
        "accumulated adiabatic momenta (CT-MQC), the same with their component along the flow "
        "from energy conservation, or by regression of the neighbours' rho (docs/physics.md)")
    quantum_momentum: Literal["projected", "pair_centred", "kernel", "ctmqc"] = Field(
        "projected", description="with coherence_gradient != regression, the quantum momentum of "
        "each pair of states: projected on the pair from the state-resolved kernel densities "
        "(docs/physics.md), -1/2 d ln n with one swarm-wide centre per pair (no net population "
        "transfer), the plain kernel estimate -1/2 d ln n, or CT-MQC's (kernel Gaussians' slope "
        "1/(2 h^2) about one swarm-wide centre per pair)")
    closed_kinetic_fraction: float = Field(
        0.1, ge=0, description="the quantum-coupling term stops filling state n once the "
        "trajectory's kinetic energy is below this fraction of E_n - Tr(rho H) (docs/physics.md)")
    power_limit: bool = Field(
        True, description="scale a trajectory's quantum-coupling rates so that one step raises "
        "Tr(rho H) by at most half its kinetic energy (docs/physics.md)")


class HoppingSpec(_Strict):
    """Surface hopping options (``method: fssh | fssh_qc``; ignored by the other methods)."""

    decoherence: Literal["edc", "none"] = Field(
        "edc", description="energy-based decoherence correction (Granucci & Persico 2007) or none")
    edc_constant_hartree: float = Field(0.1, ge=0, description="C of the EDC decoherence time, hartree")
    rescale: Literal["coupling", "momentum"] = Field(
        "coupling", description="direction of the momentum rescaling at a hop")
    frustrated: Literal["keep", "reverse"] = Field(
        "keep", description="frustrated hop: keep the momentum or reverse it along the rescaling direction")
    berry_force: bool = Field(False, description="add the Berry force of the active state (complex models)")


class ExactScanSpec(_Strict):
    """Bond-length range of the SA-CASSCF scan of ``qhd-aimd exact`` on a diatomic molecule
    (``qhd_aimd.exact_diatomic``; ignored by the other commands)."""

    r_min_bohr: Optional[float] = Field(None, gt=0, description="shortest bond length scanned, "
                                        "bohr (default: half the xyz bond length)")
    r_max_bohr: Optional[float] = Field(None, gt=0, description="longest bond length scanned, "
                                        "bohr (default: the xyz bond length + 12 bohr)")

    @model_validator(mode="after")
    def _order(self):
        if (self.r_min_bohr is not None and self.r_max_bohr is not None
                and not self.r_min_bohr < self.r_max_bohr):
            raise ValueError("exact_scan: r_min_bohr must be smaller than r_max_bohr")
        return self


class OutputSpec(_Strict):
    checkpoint_every: int = Field(50, ge=1, description="steps between checkpoints")


class StudyConfig(_Strict):
    system: SystemSpec
    initial: InitialSpec
    method: Literal[METHODS] = "ehrenfest"
    dynamics: DynamicsSpec
    fields: FieldsSpec = Field(default_factory=FieldsSpec)
    hopping: HoppingSpec = Field(default_factory=HoppingSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)
    exact_scan: ExactScanSpec = Field(default_factory=ExactScanSpec)
    name: Optional[str] = None

    @model_validator(mode="after")
    def _initial_matches_system(self):
        ini = self.initial
        if self.system.model is not None:
            missing = [k for k in ("position_bohr", "momentum_au", "width_bohr") if getattr(ini, k) is None]
            if missing:
                raise ValueError(f"model systems need initial.{', initial.'.join(missing)}")
        else:
            if ini.sampling == "hydrodynamic":
                raise ValueError("initial.sampling: hydrodynamic is for model wavepackets; "
                                 "molecules use wigner")
            if ini.sampling is None:
                ini.sampling = "wigner"
            n = self.system.electronic.n_states
            if ini.state >= n:
                raise ValueError(f"initial.state {ini.state} >= system.electronic.n_states {n}")
        if self.system.molecule is not None and self.fields.bandwidth_bohr is not None:
            raise ValueError("fields.bandwidth_bohr is for model systems (Cartesian bandwidths); "
                             "molecular swarms use Silverman's rule in their mass-weighted subspace "
                             "(scale it with fields.bandwidth_factor)")
        if self.fields.quantum_force and self.method in ("ehrenfest",) + HOPPING_METHODS:
            raise ValueError("fields.quantum_force needs a coupled-trajectory Ehrenfest-type method "
                             f"(the swarm estimates n), not {self.method}")
        scan = self.exact_scan
        if self.system.model is not None and (scan.r_min_bohr, scan.r_max_bohr) != (None, None):
            raise ValueError("exact_scan applies to diatomic molecules only")
        if self.hopping.berry_force and self.system.model is None:
            raise ValueError("hopping.berry_force: molecules have real states (no Berry curvature); "
                             "it applies to analytic models only")
        return self


def _format(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {where}: {err['msg']}")
    return "invalid study configuration:\n" + "\n".join(lines)


def parse_config(data: dict) -> StudyConfig:
    """Validate a config dictionary; raise ``ConfigError`` listing every bad key."""
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format(exc)) from None


def load_config(path: str | Path) -> StudyConfig:
    """Read and validate a study YAML file. Relative xyz paths resolve against the CWD first,
    then against the config file's folder."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at top level")
    cfg = parse_config(data)
    mol = cfg.system.molecule
    if mol is not None and not Path(mol.xyz).exists() and (path.parent / mol.xyz).exists():
        mol.xyz = str(path.parent / mol.xyz)
    return cfg


def config_to_yaml(cfg: StudyConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True), sort_keys=False)
