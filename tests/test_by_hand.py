"""Running one rule script by hand with wildcards only: the job is built from
the workflow itself (Snakefile, config.yaml, --configfile) by
``microprop.workflow.job_from_workflow``, as Snakemake would inject it."""
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from microprop.workflow import JobError, job_from_workflow

REPO = Path(__file__).resolve().parents[1]
DEMO = {"specimen": "demo", "area": "A1", "batch": "b01"}


@pytest.fixture(scope="module")
def demo_config():
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_job_of_a_rule_from_its_wildcards(demo_config):
    job = job_from_workflow(script=REPO / "scripts" / "locate_indents.py", wildcards=DEMO,
                            directory=REPO)
    assert job.rule == "locate_indents"
    assert dict(job.wildcards.items()) == DEMO
    # input function locate_inputs, mode `marks` (the demo area has an after-image)
    assert job.input.indents == "results/demo/A1/indents/b01.csv"
    assert job.input.before == "results/demo/A1/mosaic_before.zarr"
    assert job.input.shift == "results/demo/A1/after_to_before.json"
    assert list(job.output) == ["results/demo/A1/located/b01.csv", "results/demo/A1/located/b01.json"]
    assert list(job.log) == ["results/logs/locate_indents/demo_A1_b01.log"]
    spec = demo_config["specimens"]["demo"]
    assert job.params.mode == "marks" and job.params.batch == "b01"
    assert job.params.pixel_size_nm == spec["pixel_size_nm"]
    assert job.params.search_radius_um == spec["indentation"]["search_radius_um"]
    assert job.params.indenter_axes == spec["areas"]["A1"]["indenter_axes"]
    assert job.threads == 1 and job.resources.mem_mb == 3000
    # config as in a real run: config.yaml, validated, schema defaults filled in
    assert job.config["specimens"]["demo"]["pixel_size_nm"] == spec["pixel_size_nm"]
    assert job.config["specimens"]["demo"]["areas"]["A1"]["role"] == "train"


def test_script_of_several_rules_and_rules_without_wildcards():
    job = job_from_workflow(script=REPO / "scripts" / "virtual_specimen.py", directory=REPO)
    assert job.rule == "virtual_specimen_demo_A1" and len(job.wildcards) == 0
    assert job.output.before == "resources/demo/A1/before"
    assert list(job.output.exports) == [f"resources/demo/A1/indentation/b0{i}.csv" for i in (1, 2)]
    stitch = job_from_workflow("stitch_tiles", {"specimen": "demo", "area": "A1", "stage": "after"},
                               directory=REPO)
    assert stitch.input.tiles == "resources/demo/A1/after"
    assert stitch.output.mosaic == "results/demo/A1/mosaic_after.zarr"


@pytest.mark.parametrize("kwargs, message", [
    (dict(rule="no_such_rule", wildcards=DEMO), "unknown rule 'no_such_rule'"),
    (dict(rule="locate_indents", wildcards={"specimen": "demo", "area": "A1"}),
     "rule locate_indents has wildcards area, batch, specimen: missing batch"),
    (dict(rule="locate_indents", wildcards={**DEMO, "stage": "before"}), "unexpected stage"),
    (dict(rule="stitch_tiles", wildcards={"specimen": "demo", "area": "A1", "stage": "middle"}),
     "stage='middle' does not match 'before|after'"),
    (dict(rule="locate_indents", wildcards={**DEMO, "area": "A/1"}), "area='A/1' does not match"),
    (dict(rule="read_indentation", wildcards=DEMO, script=REPO / "scripts" / "locate_indents.py"),
     "rule read_indentation runs read_indentation.py, not locate_indents.py"),
])
def test_clear_errors(kwargs, message):
    with pytest.raises(JobError, match="^.*" + message.replace("(", r"\(").replace("|", r"\|")):
        job_from_workflow(directory=REPO, **kwargs)


KLA_EXPORT = """\
Test name: by hand
INDENT,X,Y,DEPTH,LOAD,STIFFNESS,HARDNESS,MODULUS
1,0.0,0.0,150.0,1.0,60000.0,1.1,25.0
2,10.0,0.0,140.0,1.0,62000.0,1.2,27.0
3,20.0,0.0,160.0,1.0,58000.0,1.0,23.0
4,0.0,10.0,,1.0,61000.0,1.1,26.0
5,10.0,10.0,155.0,1.0,59000.0,1.05,24.0
"""


def test_run_by_hand_with_wildcards_only(tmp_path):
    """read_indentation.py run as `python scripts/x.py NAME=VALUE ...` on a
    5-row export in a working directory of its own (--directory)."""
    exports = tmp_path / "exports" / "A1"
    exports.mkdir(parents=True)
    (exports / "b01.csv").write_text(KLA_EXPORT)
    cfg = {"specimens": {"hand": {"pixel_size_nm": 100.0,
                                  "areas": {"A1": {"before": "tiles/before", "indentation": "exports/A1"}}}}}
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "scripts/read_indentation.py", "specimen=hand", "area=A1", "batch=b01",
           "--directory", str(tmp_path), "--configfile", str(tmp_path / "my.yaml")]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    indents = pd.read_csv(tmp_path / "results/hand/A1/indents/b01.csv")
    assert list(indents["indent"]) == [1, 2, 3, 5] and set(indents["batch"]) == {"b01"}
    assert list(pd.read_csv(tmp_path / "results/hand/A1/indents/b01_rejected.csv")["indent"]) == [4]
    assert "rule read_indentation started" in (
        tmp_path / "results/logs/read_indentation/hand_A1_b01.log").read_text()

    bad = subprocess.run(cmd[:3] + cmd[5:] + ["bach=b01"], cwd=REPO, capture_output=True, text=True,
                         timeout=1800)
    assert bad.returncode != 0
    assert "read_indentation.py: rule read_indentation has wildcards area, batch, specimen: " \
           "missing area, batch; unexpected bach" in bad.stderr


def test_outside_the_repository_root_asks_for_directory(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "read_indentation.py"), "specimen=demo"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert proc.returncode != 0 and "--directory DIR" in proc.stderr


def test_setup_script_limits_a_running_numba_pool_without_touching_its_environment(monkeypatch):
    """In a process whose numba pool already runs, a job's ``threads`` limits the pool
    (numba.set_num_threads) and leaves NUMBA_NUM_THREADS alone: numba rereads it at every
    compilation and refuses a value other than its pool's (this broke porespy's import
    after an in-process rule script)."""
    import logging
    import os
    import types

    import numba
    from microprop.workflow import setup_script

    numba.get_num_threads()                       # the pool is launched
    before = os.environ.get("NUMBA_NUM_THREADS")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)    # setup_script sets them; restored afterwards
    job = types.SimpleNamespace(log=[], threads=1, rule="by_hand_test")
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level   # setup_script reconfigures logging
    try:
        setup_script({"snakemake": job})
        assert os.environ.get("NUMBA_NUM_THREADS") == before
        assert numba.get_num_threads() == 1
        assert os.environ["OMP_NUM_THREADS"] == "1"

        @numba.njit("i8(i8)")
        def twice(n):                             # compiles: the config reload does not raise
            return 2 * n

        assert twice(21) == 42
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        for h in list(root.handlers):
            if h not in handlers:
                root.removeHandler(h)
        for h in handlers:
            if h not in root.handlers:
                root.addHandler(h)
        root.setLevel(level)
