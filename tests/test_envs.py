"""The conda environments and the pip requirements that CI installs agree."""
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# Packages needed only to drive the workflow or the tests, not inside a rule.
# conda-forge name -> pip name
CONDA_TO_PIP = {"pytorch": "torch"}
DRIVER_ONLY = {"snakemake", "snakemake-executor-plugin-slurm", "jsonschema", "pytest", "pytest-timeout", "porespy"}


def requirements():
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line).groups()
            pins[name.lower()] = version
    return pins


def env_pins(path):
    deps = yaml.safe_load(path.read_text())["dependencies"]
    pins = {}
    for dep in deps:
        assert isinstance(dep, str), f"{path.name}: nested pip sections are not allowed"
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", dep)
        assert m, f"{path.name}: {dep!r} is not pinned with =="
        name = m.group(1).lower()
        pins[CONDA_TO_PIP.get(name, name)] = m.group(2)
    return pins


def test_every_env_pin_equals_requirements():
    req = requirements()
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert len(envs) >= 3
    for env in envs:
        for name, version in env_pins(env).items():
            if name == "python":
                continue
            assert name in req, f"{env.name}: {name} is not in requirements.txt"
            assert req[name] == version, f"{env.name}: {name}=={version} but requirements.txt has {req[name]}"


def test_every_requirement_is_in_some_env():
    covered = set()
    for env in (REPO / "envs").glob("*.yaml"):
        covered |= set(env_pins(env))
    missing = set(requirements()) - covered - DRIVER_ONLY
    assert not missing, f"requirements.txt pins not in any envs/*.yaml: {sorted(missing)}"


def test_every_rule_has_a_pinned_env():
    for smk in (REPO / "rules").glob("*.smk"):
        text = smk.read_text()
        n_rules = len(re.findall(r"^\s*rule\b", text, re.M))
        n_conda = len(re.findall(r"^\s*conda:", text, re.M))
        assert n_conda == n_rules, f"{smk.name}: {n_rules} rules but {n_conda} conda: directives"
