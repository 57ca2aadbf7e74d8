"""Study config validation: good configs parse, bad ones fail naming the key."""

import pytest

from qhd_aimd.config import load_config, parse_config
from qhd_aimd.errors import ConfigError

GOOD = {"system": {"model": "tully_simple"},
        "initial": {"position_bohr": -10.0, "momentum_au": 15.0, "width_bohr": 1.333,
                    "n_trajectories": 200, "state": 0, "seed": 1},
        "method": "ehrenfest", "dynamics": {"dt_au": 5.0, "t_final_au": 3000.0}}


def test_issue_example_parses():
    cfg = parse_config(GOOD)
    assert cfg.dynamics.n_steps == 600 and cfg.dynamics.dt == 5.0


def test_fs_units_convert():
    cfg = parse_config({**GOOD, "dynamics": {"dt_fs": 0.25, "t_final_fs": 50}})
    assert abs(cfg.dynamics.dt - 0.25 / 0.0241888432658) < 1e-9
    assert cfg.dynamics.n_steps == 200


@pytest.mark.parametrize("patch,key", [
    ({"method": "surface_hopping"}, "method"),
    ({"system": {"model": "tully_9"}}, "system.model"),
    ({"dynamics": {"dt_au": -1, "t_final_au": 10}}, "dynamics.dt_au"),
    ({"dynamics": {"dt_au": 1, "dt_fs": 1, "t_final_au": 10}}, "dt_au or dynamics.dt_fs"),
    ({"initial": {**GOOD["initial"], "width_bohr": 0}}, "initial.width_bohr"),
    ({"initial": {**GOOD["initial"], "n_trajectories": 0}}, "initial.n_trajectories"),
    ({"system": {"model": "tully_simple", "molecule": {"xyz": "a.xyz"}}}, "exactly one"),
    ({"typo_key": 1}, "typo_key"),
])
def test_bad_values_name_the_key(patch, key):
    with pytest.raises(ConfigError) as exc:
        parse_config({**GOOD, **patch})
    assert key in str(exc.value)


def test_molecule_config_from_issue(tmp_path):
    (tmp_path / "m.xyz").write_text("2\n\nLi 0 0 0\nH 0 0 1.6\n")
    (tmp_path / "s.yaml").write_text(
        "system: {molecule: {xyz: m.xyz, charge: 0, spin: 0},\n"
        "         electronic: {method: sa-casscf, basis: 6-31g*, active_space: [2, 2], n_states: 2, density_fit: true}}\n"
        "initial: {sampling: wigner, temperature_K: 0, n_trajectories: 16, state: 1, seed: 1}\n"
        "method: ehrenfest\ndynamics: {dt_fs: 0.25, t_final_fs: 50}\n")
    cfg = load_config(tmp_path / "s.yaml")
    assert cfg.system.electronic.n_states == 2 and cfg.initial.sampling == "wigner"
    assert cfg.system.molecule.xyz == str(tmp_path / "m.xyz")


def test_initial_state_beyond_n_states_rejected(tmp_path):
    data = {"system": {"molecule": {"xyz": "x.xyz"}, "electronic": {"n_states": 2}},
            "initial": {"n_trajectories": 2, "state": 2}, "dynamics": {"dt_fs": 0.5, "t_final_fs": 5}}
    with pytest.raises(ConfigError, match="n_states"):
        parse_config(data)


def test_missing_file_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_full_qhd_options():
    """initial.sampling: hydrodynamic (models) and fields.quantum_force (coupled methods)."""
    cfg = parse_config({**GOOD, "method": "geometric_ehrenfest_qc",
                        "initial": {**GOOD["initial"], "sampling": "hydrodynamic"},
                        "fields": {"quantum_force": True}})
    assert cfg.initial.sampling == "hydrodynamic" and cfg.fields.quantum_force
    assert not parse_config(GOOD).fields.quantum_force
    with pytest.raises(ConfigError, match="quantum_force"):
        parse_config({**GOOD, "fields": {"quantum_force": True}})  # ehrenfest: no swarm fields
    with pytest.raises(ConfigError, match="hydrodynamic"):
        parse_config({"system": {"molecule": {"xyz": "x.xyz"}, "electronic": {"n_states": 2}},
                      "initial": {"n_trajectories": 2, "sampling": "hydrodynamic"},
                      "dynamics": {"dt_fs": 0.5, "t_final_fs": 5}})


def test_hopping_defaults_and_options():
    cfg = parse_config({**GOOD, "method": "fssh"})
    h = cfg.hopping
    assert (h.decoherence, h.edc_constant_hartree, h.rescale, h.frustrated, h.berry_force) == \
        ("edc", 0.1, "coupling", "keep", False)
    cfg = parse_config({**GOOD, "method": "fssh_qc",
                        "hopping": {"decoherence": "none", "rescale": "momentum",
                                    "frustrated": "reverse", "edc_constant_hartree": 0.2}})
    assert cfg.method == "fssh_qc" and cfg.hopping.rescale == "momentum"


def test_coupled_field_defaults():
    """The decoherence defaults of docs/physics.md: energy-consistent adiabatic momenta, projected
    quantum momentum, clip 0.1, power limit on (never acts on the Tully grid; bounds a molecule's
    quantum-coupling step), energy rescaling."""
    cfg = parse_config({**GOOD, "method": "ehrenfest_qc"})
    f = cfg.fields
    assert (f.coherence_gradient, f.quantum_momentum, f.closed_kinetic_fraction, f.power_limit) == \
        ("energy_consistent", "projected", 0.1, True)
    assert cfg.dynamics.energy_correction == "rescale"
    assert parse_config({**GOOD, "fields": {"power_limit": False}}).fields.power_limit is False


@pytest.mark.parametrize("hopping,key", [
    ({"decoherence": "idc"}, "hopping.decoherence"),
    ({"edc_constant_hartree": -0.1}, "hopping.edc_constant_hartree"),
    ({"rescale": "velocity"}, "hopping.rescale"),
    ({"frustrated": "flip"}, "hopping.frustrated"),
    ({"berry_force": "maybe"}, "hopping.berry_force"),
    ({"seed": 3}, "hopping.seed"),
])
def test_bad_hopping_keys_name_the_key(hopping, key):
    with pytest.raises(ConfigError) as exc:
        parse_config({**GOOD, "method": "fssh", "hopping": hopping})
    assert key in str(exc.value)


def test_hopping_cross_checks(tmp_path):
    with pytest.raises(ConfigError, match="quantum_force"):
        parse_config({**GOOD, "method": "fssh", "fields": {"quantum_force": True}})
    xyz = tmp_path / "h2.xyz"
    xyz.write_text("2\n\nH 0 0 0\nH 0 0 0.74\n")
    with pytest.raises(ConfigError, match="hopping.berry_force"):
        parse_config({"system": {"molecule": {"xyz": str(xyz)}},
                      "initial": {"n_trajectories": 2, "state": 1}, "method": "fssh",
                      "dynamics": {"dt_fs": 0.5, "t_final_fs": 1}, "hopping": {"berry_force": True}})


def test_issue13_keys_validated():
    """New molecule keys (issue 13): masses, window order, imaginary-mode policy, soft cutoff."""
    from qhd_aimd.config import parse_config
    from qhd_aimd.errors import ConfigError
    base = {"system": {"molecule": {"xyz": "x.xyz"}}, "initial": {"n_trajectories": 2},
            "dynamics": {"dt_au": 1.0, "t_final_au": 2.0}}

    def with_(section, key, value):
        cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
        if section == "molecule":
            cfg["system"] = {"molecule": {"xyz": "x.xyz", key: value}}
        else:
            cfg[section] = {**cfg[section], key: value}
        return cfg

    cfg = parse_config(base)
    assert cfg.initial.imaginary_modes == "error" and cfg.initial.soft_mode_cm1 == 50.0
    assert parse_config(with_("molecule", "masses_amu", [7.0, 2.0])).system.molecule.masses_amu == [7.0, 2.0]
    for section, key, value, msg in (
            ("molecule", "masses_amu", [7.0, -2.0], "system.molecule.masses_amu"),
            ("initial", "state_window_eV", [5.0, 2.0], "initial.state_window_eV"),
            ("initial", "imaginary_modes", "ignore", "initial.imaginary_modes"),
            ("initial", "soft_mode_cm1", -1.0, "initial.soft_mode_cm1")):
        with pytest.raises(ConfigError, match=msg.replace(".", r"\.")):
            parse_config(with_(section, key, value))


def test_fields_demodulate_auto_and_molecular_bandwidth():
    """fields.demodulate: auto (default; models yes, molecules no), true or false; a Cartesian
    bandwidth_bohr is refused for molecules (their fields live in the mass-weighted subspace)."""
    assert parse_config(GOOD).fields.demodulate == "auto"
    for v in (True, False, "auto"):
        assert parse_config({**GOOD, "fields": {"demodulate": v}}).fields.demodulate == v
    with pytest.raises(ConfigError, match="fields.demodulate"):
        parse_config({**GOOD, "fields": {"demodulate": "sometimes"}})
    mol = {"system": {"molecule": {"xyz": "x.xyz"}, "electronic": {"n_states": 2}},
           "initial": {"n_trajectories": 2, "state": 1}, "method": "ehrenfest_qc",
           "dynamics": {"dt_fs": 0.5, "t_final_fs": 5}}
    with pytest.raises(ConfigError, match="bandwidth_bohr"):
        parse_config({**mol, "fields": {"bandwidth_bohr": 0.1}})
    assert parse_config({**mol, "fields": {"bandwidth_factor": 0.5}}).fields.bandwidth_factor == 0.5


MOL = {"system": {"molecule": {"xyz": "x.xyz"},
                  "electronic": {"active_space": [2, 2], "active_orbitals": [4, 7]}},
       "initial": {"n_trajectories": 2, "state": 1}, "dynamics": {"dt_fs": 0.5, "t_final_fs": 5}}


def test_active_orbitals_and_exact_scan_parse():
    cfg = parse_config({**MOL, "exact_scan": {"r_min_bohr": 2.0, "r_max_bohr": 20.0}})
    assert cfg.system.electronic.active_orbitals == [4, 7]
    assert (cfg.exact_scan.r_min_bohr, cfg.exact_scan.r_max_bohr) == (2.0, 20.0)
    assert parse_config(GOOD).exact_scan.r_min_bohr is None
    el = {**MOL["system"]["electronic"], "symmetry": "sigma"}
    assert parse_config({**MOL, "system": {**MOL["system"], "electronic": el}}
                        ).system.electronic.symmetry == "sigma"


@pytest.mark.parametrize("electronic,exact_scan,key", [
    ({"active_space": [2, 2], "active_orbitals": [4]}, {}, "active_orbitals lists 1"),
    ({"active_space": [2, 3], "active_orbitals": [4, 7]}, {}, "active_orbitals lists 2"),
    ({"active_orbitals": [4, 4]}, {}, "active_orbitals must be distinct"),
    ({"active_orbitals": [0, 7]}, {}, "active_orbitals must be distinct 1-based"),
    ({"active_orbitals": [4.5, 7]}, {}, "system.electronic.active_orbitals"),
    ({}, {"r_min_bohr": 5.0, "r_max_bohr": 4.0}, "exact_scan: r_min_bohr must be smaller"),
    ({}, {"r_min_bohr": -1.0}, "exact_scan.r_min_bohr"),
    ({}, {"r_max": 4.0}, "exact_scan.r_max"),
    ({"symmetry": "pi"}, {}, "system.electronic.symmetry"),
])
def test_bad_active_orbitals_and_exact_scan_name_the_key(electronic, exact_scan, key):
    data = {**MOL, "system": {**MOL["system"], "electronic": electronic},
            "exact_scan": exact_scan}
    with pytest.raises(ConfigError) as exc:
        parse_config(data)
    assert key in str(exc.value)


def test_exact_scan_is_for_molecules():
    with pytest.raises(ConfigError, match="exact_scan applies to diatomic molecules"):
        parse_config({**GOOD, "exact_scan": {"r_max_bohr": 20.0}})
