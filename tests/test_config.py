"""The configuration schema: the demo config and the test studies validate, bad keys fail by name."""
import copy
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

REPO = Path(__file__).resolve().parents[1]
SCHEMA = str(REPO / "schemas" / "config.schema.yaml")


def load(name="config.yaml"):
    return yaml.safe_load((REPO / name).read_text())


@pytest.mark.parametrize("name", ["config.yaml", "configs/real_bse_B.yaml", "configs/example_user.yaml",
                                  "configs/demo_learning.yaml", "configs/porosity_demo.yaml"])
def test_shipped_configs_validate(name):
    cfg = load(name)
    validate(cfg, SCHEMA, set_default=True)


@pytest.mark.parametrize("name", [".test/config_tiny_virtual/config.yaml", ".test/config_user_layout/config.yaml",
                                  ".test/config_indentation_only/config.yaml",
                                  ".test/config_tiny_porosity/config.yaml",
                                  ".test/config_tiny_learning/config.yaml"])
def test_test_studies_validate(name):
    """The tiny studies tests/test_workflow.py runs are valid configs."""
    cfg = load(name)
    validate(cfg, SCHEMA, set_default=True)


def test_defaults_are_filled():
    cfg = load()
    del cfg["specimens"]["demo"]["stats"]
    validate(cfg, SCHEMA, set_default=True)
    assert cfg["specimens"]["demo"]["stats"]["n_components"] is None  # one per solid phase
    assert cfg["specimens"]["demo"]["phases"] == "cement"
    assert cfg["backscatter"]["beam_energy_keV"] == 20.0


def test_unknown_key_fails_and_names_it():
    cfg = load()
    cfg["specimens"]["demo"]["calibration"]["micf_sigma"] = 10  # typo of micf_sigma_px
    with pytest.raises(WorkflowError, match="micf_sigma"):
        validate(copy.deepcopy(cfg), SCHEMA, set_default=True)


def test_bad_value_fails_and_names_it():
    cfg = load()
    cfg["specimens"]["demo"]["pixel_size_nm"] = -40
    with pytest.raises(WorkflowError, match="pixel_size_nm"):
        validate(cfg, SCHEMA, set_default=True)


def test_area_needs_tiles_image_or_exports():
    cfg = load()
    cfg["specimens"]["demo"]["areas"]["A1"] = {"indentation": "x"}   # exports only: an indentation study
    validate(cfg, SCHEMA, set_default=True)
    for bad in ({}, {"role": "train"}, {"image": "a.png", "before": "t"}):
        cfg["specimens"]["demo"]["areas"]["A1"] = bad
        with pytest.raises(WorkflowError):
            validate(cfg, SCHEMA, set_default=True)


@pytest.mark.parametrize("phases, ok", [
    ("cement", True), ("metal_ceramic", True), ("steel", False),
    ({"phases": [{"name": "ferrite", "E_mean_GPa": 210, "E_std_GPa": 10, "H_mean_GPa": 2.0,
                  "H_std_GPa": 0.3}]}, True),
    ({"phases": [{"name": "ferrite", "E_mean_GPa": -1, "E_std_GPa": 10, "H_mean_GPa": 2.0,
                  "H_std_GPa": 0.3}]}, False),
    ({"phases": [{"name": "ferrite"}]}, False)])
def test_phase_set_is_a_preset_or_a_list(phases, ok):
    cfg = load()
    cfg["specimens"]["demo"]["phases"] = phases
    if ok:
        validate(cfg, SCHEMA, set_default=True)
    else:
        with pytest.raises(WorkflowError):
            validate(cfg, SCHEMA, set_default=True)


@pytest.mark.parametrize("value, ok", [(True, True), (False, True), ("reduce-overhead", True),
                                       ("max-autotune", True), ("fast", False), (1, False)])
def test_compile_option_takes_a_bool_or_a_mode(value, ok):
    cfg = load("configs/demo_learning.yaml")
    cfg["specimens"]["demo"]["learning"]["compile"] = value
    if ok:
        validate(cfg, SCHEMA, set_default=True)
    else:
        with pytest.raises(WorkflowError, match="compile"):
            validate(cfg, SCHEMA, set_default=True)

