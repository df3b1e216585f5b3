"""The Snakemake workflow itself: lint, dry runs, a tiny end-to-end run, and
the partial rerun when a new indentation batch arrives."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]

TEST_STUDIES = REPO / ".test"


def study_config(name):
    """The test study ``.test/config_{name}/config.yaml`` as a new dict.

    Each call reads the file again, so a test may change its copy. Relative
    paths in it are relative to the working directory (``--directory``).
    """
    return yaml.safe_load((TEST_STUDIES / f"config_{name}" / "config.yaml").read_text())


def tiny_config():
    """A virtual specimen small enough to run end to end in about a minute."""
    return study_config("tiny_virtual")


def user_config():
    """The tiny specimen's data laid out as a user brings it: tiles and a
    folder of exports (batches discovered), no generator."""
    return study_config("user_layout")


def run_smk(workdir, config, *args, check=True):
    cfg = Path(workdir) / "config_test.yaml"
    cfg.write_text(yaml.safe_dump(config))
    cmd = SNAKEMAKE + ["--directory", str(workdir), "--configfile", str(cfg), "--cores", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)  # a hang guard, far above a loaded machine's time
    if check and proc.returncode != 0:
        pytest.fail(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def planned_jobs(dry_run_output):
    """Rule -> count from the 'Job stats' table of a dry run."""
    text = dry_run_output
    counts = {}
    block = text.split("Job stats:")[-1] if "Job stats:" in text else ""
    for line in block.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


def test_lint_is_clean():
    proc = subprocess.run(SNAKEMAKE + ["--lint"], capture_output=True, text=True, cwd=REPO, timeout=1800)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Lints for" not in out, out


def test_demo_dry_run_plans_every_stage(tmp_path):
    proc = run_smk(tmp_path, yaml.safe_load((REPO / "config.yaml").read_text()), "-n")
    jobs = planned_jobs(proc.stdout + proc.stderr)
    for rule in ["simulate_backscatter", "virtual_specimen_demo_A1", "stitch_tiles", "calibrate",
                 "read_indentation", "register_after", "locate_indents", "crop_batch",
                 "assemble_dataset", "deconvolve", "baselines", "figures_overview", "validate_virtual"]:
        assert jobs.get(rule, 0) >= 1, (rule, jobs)
    assert jobs["stitch_tiles"] == 2 and jobs["locate_indents"] == 2 and jobs["crop_batch"] == 2


def test_demo_learning_dry_run_maps_both_targets_then_table1(tmp_path):
    """The never-indented A4: map_area once per target (E, H), then one joint Table 1
    (map_statistics) from both maps, the evaluations and the truth."""
    proc = run_smk(tmp_path, yaml.safe_load((REPO / "configs/demo_learning.yaml").read_text()), "-n")
    out = proc.stdout + proc.stderr
    jobs = planned_jobs(out)
    assert jobs.get("map_area") == 2 and jobs.get("map_statistics") == 1, jobs
    block = out.split("rule map_statistics:")[1].split("\n\n")[0]
    for path in ("maps/A4/windows_E_GPa.npz", "maps/A4/windows_H_GPa.npz",
                 "learning/random/H_GPa/predictions.csv", "resources/truth/demo/A4",
                 "results/demo/A4/stitch_before.csv", "maps/A4/table1.csv"):
        assert path in block, (path, block)


def test_duplicate_batch_id_fails_at_start(tmp_path):
    exports = tmp_path / "exports" / "A1"
    exports.mkdir(parents=True)
    (exports / "b01.csv").write_text("INDENT,X,Y\n")
    (exports / "b01.tsv").write_text("INDENT\tX\tY\n")
    proc = run_smk(tmp_path, user_config(), "-n", check=False)
    assert proc.returncode != 0
    assert "duplicate batch id 'b01'" in proc.stdout + proc.stderr


def _user_tile_study(root):
    """A user's study in ``root``: two overlapping tiles with their layout and
    one export, no generator; absolute paths, so it runs from anywhere."""
    import tifffile

    rng = np.random.default_rng(5)
    image = (rng.random((300, 520)) * 200 + 20).astype(np.uint8)
    tiles = root / "tiles"
    tiles.mkdir()
    rows = ["tile,file,row,col,x_um,y_um"]
    for c, x0 in enumerate((0, 220)):
        tifffile.imwrite(tiles / f"t{c}.tif", image[:, x0:x0 + 300])
        rows.append(f"t{c},t{c}.tif,0,{c},{x0 * 0.1:.1f},0.0")
    (tiles / "layout.csv").write_text("\n".join(rows) + "\n")
    exports = root / "exports"
    exports.mkdir()
    lines = ["INDENT,X,Y,DEPTH,LOAD,STIFFNESS,HARDNESS,MODULUS"]
    k = 0
    for iy in range(2):
        for ix in range(4):
            k += 1
            lines.append(f"{k},{8 + 10 * ix},{8 + 10 * iy},150,1.0,50000,1.0,30.0")
    (exports / "b01.csv").write_text("\n".join(lines) + "\n")
    return {"specimens": {"mine": {
        "pixel_size_nm": 100.0,
        "areas": {"A1": {"before": str(tiles), "indentation": str(exports)}},
        "indentation": {"locate": "nominal", "spacing_um": 10.0},
        "dataset": {"crop_size_um": 5.0, "block_um": 20.0},
        "stats": {"n_components": 2, "k_max": 3},
    }}}


def test_user_study_from_the_repository_plans_no_demo_job(tmp_path):
    """`snakemake --configfile my_study.yaml` in the repository: the user's
    specimens replace the demo's, so no demo job (generator, demo results) is planned."""
    cfg = tmp_path / "my_study.yaml"
    cfg.write_text(yaml.safe_dump(_user_tile_study(tmp_path)))
    proc = subprocess.run(SNAKEMAKE + ["-n", "--configfile", str(cfg)], cwd=REPO,
                          capture_output=True, text=True, timeout=1800)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    jobs = planned_jobs(out)
    assert jobs.get("stitch_tiles") == 1 and jobs.get("read_indentation") == 1, jobs
    assert not [r for r in jobs if r.startswith("virtual_specimen") or r == "validate_virtual"], jobs
    assert "results/demo" not in out and "specimen=demo" not in out
    assert "results/mine/dataset.h5" in out


def test_a_config_without_specimens_is_refused(tmp_path):
    cfg = tmp_path / "no_specimens.yaml"
    cfg.write_text(yaml.safe_dump({"stitching": {"max_stage_error_um": 5.0}}))
    proc = subprocess.run(SNAKEMAKE + ["-n", "--configfile", str(cfg)], cwd=REPO,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode != 0
    assert "no `specimens:`" in proc.stdout + proc.stderr


def test_user_tile_files_are_inputs_of_their_stitching(tmp_path):
    """Every tile that layout.csv names, and the layout itself, is an input of
    stitch_tiles: an edited tile or layout is seen (a missing one is named)."""
    study = _user_tile_study(tmp_path)
    cfg = tmp_path / "my_study.yaml"
    cfg.write_text(yaml.safe_dump(study))
    (tmp_path / "tiles" / "t1.tif").unlink()
    proc = subprocess.run(SNAKEMAKE + ["-n", "--configfile", str(cfg)], cwd=REPO,
                          capture_output=True, text=True, timeout=1800)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "MissingInputException" in out and str(tmp_path / "tiles" / "t1.tif") in out, out[-3000:]


def test_export_name_that_is_no_batch_id_is_named_at_start(tmp_path):
    exports = tmp_path / "exports" / "A1"
    exports.mkdir(parents=True)
    (exports / "batch 1.csv").write_text("INDENT,X,Y\n")
    proc = run_smk(tmp_path, user_config(), "-n", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "batch 1.csv: the file name gives the batch id 'batch 1'" in out and "batch_1.csv" in out
    assert "MissingInputException" not in out


@pytest.mark.workflow
def test_tiny_virtual_specimen_end_to_end_and_new_batch(tmp_path):
    """Run the tiny virtual specimen, then the same data as a user's: adding
    one export plans only that batch's branch, the assembly and what follows."""
    run_smk(tmp_path, tiny_config())
    val = json.loads((tmp_path / "results/tiny/validation/A1.json").read_text())
    assert val["pass"]["stitching"], val["stitching"]
    assert val["pass"]["location"], val["location"]
    assert (tmp_path / "results/tiny/dataset.h5").stat().st_size > 0

    exports = tmp_path / "exports" / "A1"
    exports.mkdir(parents=True)
    for b in ("b01", "b02"):
        shutil.copy(tmp_path / f"resources/tiny/A1/indentation/{b}.csv", exports / f"{b}.csv")
    run_smk(tmp_path, user_config())
    assert planned_jobs(run_smk(tmp_path, user_config(), "-n").stdout) == {}

    # one tile of the before set overwritten in place (same name, one pixel
    # changed): that stitching and what follows are planned, nothing upstream
    # or beside it (rewriting the same bytes is not a change: Snakemake
    # compares the checksum of a newer input with the one it recorded)
    import tifffile

    before = tmp_path / "resources/tiny/A1/before"
    tile = before / sorted(p.name for p in before.glob("*.tif"))[0]
    pixels = tifffile.imread(tile)
    pixels[0, 0] = 255 - pixels[0, 0]
    tifffile.imwrite(tile, pixels)
    out = run_smk(tmp_path, user_config(), "-n").stdout
    jobs = planned_jobs(out)
    assert jobs.get("stitch_tiles") == 1 and "stage=before" in out and "stage=after" not in out, jobs
    assert jobs.get("calibrate") == 1 and jobs.get("assemble_dataset") == 1, jobs
    for untouched in ("read_indentation", "simulate_backscatter"):
        assert untouched not in jobs, jobs
    run_smk(tmp_path, user_config())

    shutil.copy(tmp_path / "resources/tiny/A1/indentation/b03.csv", exports / "b03.csv")
    proc = run_smk(tmp_path, user_config(), "-n")
    out = proc.stdout + proc.stderr
    jobs = planned_jobs(out)
    assert jobs.get("read_indentation") == 1 and jobs.get("locate_indents") == 1 and jobs.get("crop_batch") == 1, jobs
    assert jobs.get("assemble_dataset") == 1, jobs
    for untouched in ("stitch_tiles", "calibrate", "register_after", "simulate_backscatter"):
        assert untouched not in jobs, jobs
    planned_batches = set(re.findall(r"batch=(\w+)", out))
    assert planned_batches == {"b03"}, planned_batches


@pytest.mark.workflow
def test_real_image_config_runs_through_the_dag(tmp_path, real_bse_path):
    """configs/real_bse_B.yaml: the real micrograph as a single-image input with
    virtual (simulated) indentation, from the mosaic to the statistics."""
    cfg = yaml.safe_load((REPO / "configs/real_bse_B.yaml").read_text())
    cfg["backscatter"].update(n_electrons=300, n_points=5)
    for area in cfg["specimens"]["paste_B"]["areas"].values():
        area["image"] = str(real_bse_path)
    cfg["specimens"]["paste_B"]["learning"].update(
        targets=["E_GPa"], ensemble=2, ensemble_blocked=1, cpu={"epochs": 1, "lr": 1e-3})
    run_smk(tmp_path, cfg)
    res = tmp_path / "results/paste_B"
    note = json.loads((res / "A1/virtual_indentation/v01_SIMULATED.json").read_text())
    assert note["targets"] == "SIMULATED"
    import h5py

    with h5py.File(res / "dataset.h5") as f:
        n = f["images"].shape[0]
        assert f["images"].shape[1:] == (20, 20)          # 10 um at 0.5 um/px
        assert n == len(f["targets/E_GPa"]) > 100
        assert sorted(np.concatenate([f[f"splits/random/{s}"][:] for s in ("train", "val", "test")])) == list(range(n))
    summary = json.loads((res / "learning/random/E_GPa/summary.json").read_text())
    assert summary["metrics"]["test"]["ensemble"]["n"] > 100
    for fig in ("overview_A1.png", "modulus_map_A1.png", "hist_E.png", "table_model_E.png", "calibration_A1.png",
                "learning_scatter_random_E_GPa.png", "ladder.png", "map_A2_E_GPa.png", "map_hist_A2_E_GPa.png"):
        assert (res / "figures" / fig).stat().st_size > 10_000, fig
    # A1 is the top 560 rows (280 um) and is indented; A2, the bottom 240 rows, is only mapped
    import pandas as pd

    with h5py.File(res / "dataset.h5") as f:
        assert f["meta/y_um"][:].max() <= 280.0
    grid = np.load(res / "maps/A2/grid_coarse_E_GPa.npy")
    assert grid.shape[0] < grid.shape[1] and np.isfinite(grid).mean() > 0.9   # 120 x 400 um
    sources = {str(v).lower() for v in pd.read_csv(res / "maps/A2/table1_E_GPa.csv").source}
    assert "indentation" in sources and any("resnet" in v for v in sources), sources


@pytest.mark.workflow
def test_tiny_learning_stage(tmp_path):
    """The learning stage end to end on the tiny specimen: ensembles on both
    splits, evaluation with intervals, the ladder and the summary table."""
    run_smk(tmp_path, study_config("tiny_learning"))
    table = __import__("pandas").read_csv(tmp_path / "results/tiny/learning/summary.csv")
    resnet = table[table.model.str.startswith("resnet")]
    assert sorted(resnet.split) == ["blocked", "random"]
    assert set(table.model) >= {"table", "linear", "two_point", "boosting", "resnet (x2)", "resnet (x1)"}
    assert resnet.coverage.between(0, 1).all()
    # the virtual specimen's ceiling beside every model; bootstrap intervals; blocks on blocked
    assert table.R2_attainable.notna().all() and table.R2_noise_ceiling.notna().all()
    assert (table.R2_ci95_lo <= table.R2 + 1e-12).all() and (table.R2 <= table.R2_ci95_hi + 1e-12).all()
    assert set(table.loc[table.split == "blocked", "bootstrap_unit"]) == {"block"}
    assert resnet.loc[resnet.split == "random", "n_members"].tolist() == [2]
    assert (resnet.loc[resnet.split == "blocked", "interval_method"] == "block").all()
    ckpt = tmp_path / "results/tiny/models/random/E_GPa/m1"
    assert (ckpt / "best.pt").exists() and len(open(ckpt / "metrics.csv").readlines()) == 3
    for fig in ("learning_history_random_E_GPa.png", "learning_scatter_blocked_E_GPa.png", "ladder.png",
                "learning_summary.png"):
        assert (tmp_path / "results/tiny/figures" / fig).stat().st_size > 10_000, fig


@pytest.mark.workflow
@pytest.mark.parametrize("blocked,expected", [(None, 4), (1, 3)])
def test_blocked_split_members_default_to_the_random_splits(tmp_path, blocked, expected):
    """ensemble_blocked unset: as many members on the blocked split as on the
    random one (like with like); set: that many."""
    # A variant of the tiny study, made here: the one key under test,
    # ensemble_blocked, absent or set; a dry run, so no training settings.
    cfg = tiny_config()
    learning = {"targets": ["E_GPa"], "splits": ["random", "blocked"], "ensemble": 2}
    if blocked is not None:
        learning["ensemble_blocked"] = blocked
    cfg["specimens"]["tiny"]["learning"] = learning
    jobs = planned_jobs(run_smk(tmp_path, cfg, "-n").stdout)
    assert jobs.get("train_model") == expected, jobs
    assert jobs.get("evaluate_model") == 2, jobs


CEMENT_WORDS = ("C-S-H", "CSH", "ACC", "clinker", "portlandite", "hydration", "alpha", "w_c")


def _two_phase_exports(folder, rng, n_per_batch=(300, 300), frac_ni=0.7):
    """KLA exports of a Ni-alumina grid: each indent in Ni (E 200, H 2.5 GPa) or alumina (E 380, H 20 GPa)."""
    import pandas as pd
    from microprop.indentation import write_export

    folder.mkdir(parents=True)
    truth = []
    for b, n in enumerate(n_per_batch, start=1):
        ni = rng.random(n) < frac_ni
        E = np.where(ni, rng.normal(200, 20, n), rng.normal(380, 35, n))
        H = np.where(ni, rng.normal(2.5, 0.5, n), rng.normal(20, 3, n)).clip(0.3)
        k = np.arange(n)
        df = pd.DataFrame({"indent": k + 1, "x_um": (k % 20) * 10.0, "y_um": (k // 20) * 10.0,
                           "depth_nm": 150.0, "load_mN": 5.0, "stiffness_N_per_m": 1e5,
                           "H_GPa": H, "E_GPa": E})
        write_export(df, folder / f"grid{b}.csv")
        truth.append(ni)
    return float(np.concatenate(truth).mean())


@pytest.mark.workflow
def test_indentation_only_study_with_a_non_cement_phase_set(tmp_path):
    """Exports alone, phases `metal_ceramic`: import, deconvolution and figures run; nothing says cement."""
    import pandas as pd

    f_ni = _two_phase_exports(tmp_path / "exports" / "G1", np.random.default_rng(3))
    cfg = study_config("indentation_only")
    jobs = planned_jobs(run_smk(tmp_path, cfg, "-n").stdout)
    assert jobs == {"read_indentation": 2, "deconvolve": 1, "deconvolution_stability": 1,
                    "all": 1}, jobs
    run_smk(tmp_path, cfg)
    res = tmp_path / "results" / "composite"
    gmm = pd.read_csv(res / "stats/gmm_E_GPa.csv")
    pooled = gmm[gmm["area"] == "pooled"].set_index("phase")
    assert list(pooled.index) == ["Ni", "Al2O3"]                  # one component per solid phase
    assert pooled.loc["Ni", "fraction"] == pytest.approx(f_ni, abs=0.03)
    assert pooled.loc["Ni", "mean"] == pytest.approx(200, rel=0.03)
    assert pooled.loc["Al2O3", "mean"] == pytest.approx(380, rel=0.03)
    bic = pd.read_csv(res / "stats/bic_E_GPa.csv")
    assert (bic["k_used"] == 2).all() and (bic["model"] == "joint (E, H) mixture").all()
    assert not list(tmp_path.rglob("*hydration*"))
    figures = sorted(p.name for p in (res / "figures").iterdir())
    assert figures == ["bic_E.png", "deconvolution_stability.png", "hist_E.png", "hist_H.png"], figures
    stab = pd.read_csv(res / "stats/deconvolution_stability.csv")
    assert set(stab["phase"]) == {"Ni", "Al2O3"} and sorted(stab["size"].unique()) == [100, 200, 300]
    ni = stab[(stab["phase"] == "Ni") & (stab["statistic"] == "fraction") & (stab["size"] == 200)]
    assert ni["full"].iloc[0] == pytest.approx(pooled.loc["Ni", "fraction"], abs=1e-6)
    for p in (tmp_path / "results").rglob("*"):
        if p.is_file() and p.suffix in (".csv", ".json", ".log", ".txt"):
            text = p.read_text()
            found = [w for w in CEMENT_WORDS if w in text]
            assert not found, (p, found)


@pytest.mark.workflow
def test_tiny_porosity_study_runs_from_generator_to_classifier(tmp_path):
    """The second study's DAG: virtual classes -> BSE -> porosity calibration -> local maps ->
    baseline and DCNN per scale -> summary."""
    import h5py

    cfg = study_config("tiny_porosity")
    jobs = planned_jobs(run_smk(tmp_path, cfg, "-n").stdout)
    assert jobs == {"porosity_backscatter": 1, "porosity_specimen": 3, "porosity_calibrate": 3,
                    "porosity_maps": 1, "porosity_baseline": 1, "porosity_train": 2,
                    "porosity_evaluate": 2, "porosity_summary": 1, "porosity_relevance": 1,
                    "porosity_correlation": 1, "porosity_patterns": 1, "porosity_explanation": 1,
                    "all": 1}, jobs
    run_smk(tmp_path, cfg)
    res = tmp_path / "results" / "tiny_por"
    import zarr

    for c in ("S1", "S2", "S3"):
        mulf = zarr.open_group(str(res / "classes" / c / "calibrated.zarr"), mode="r")["MulF"][:]
        true = np.load(tmp_path / "resources" / "truth" / "tiny_por" / c / "porosity.npy")
        # the calibration finds C-S-H and metal in the histogram: the class's porosity within 0.02
        # (measured 0.010, 0.004, 0.002: the metal peak sits on the hydrates' tail)
        assert abs(float(mulf.mean()) - float(true.mean())) < 0.02, c
    with h5py.File(res / "maps.h5") as f:
        assert f["maps/MulF"].shape == (48, 48, 48) and len(f["descriptors/pore_size_nm"]) == 48
    summary = json.loads((res / "baseline/summary.json").read_text())
    for k in ("porosity", "pore_size_nm"):
        assert 0.0 <= summary[k]["nearest_class_mean_accuracy"] <= 1.0
        assert set(summary[k]["class_means"]) == {"S1", "S2", "S3"}
    assert (res / "figures/baseline_scatter.png").stat().st_size > 10_000
    # the classifier of each scale on the 8 test maps per class: the table, the metrics, the figures
    table = pd.read_csv(res / "summary.csv")
    dcnn = table[table["method"] == "DCNN"].set_index("input")
    assert sorted(dcnn.index) == ["MicF", "MulF"] and (dcnn["n_maps"] == 24).all()
    for scale in ("MulF", "MicF"):
        m = json.loads((res / "classifier" / scale / "metrics.json").read_text())
        counts = pd.DataFrame(m["confusion"]).to_numpy()
        assert counts.sum() == 24 and m["accuracy"] == pytest.approx(np.trace(counts) / 24)
        assert dcnn.loc[scale, "accuracy"] == pytest.approx(m["accuracy"])
        pred = pd.read_csv(res / "classifier" / scale / "predictions.csv")
        assert len(pred) == 24 and set(pred["true"]) == {"S1", "S2", "S3"}
    for fig in ("classifier_confusion", "classifier_training", "classifier_examples"):
        assert (res / "figures" / f"{fig}.png").stat().st_size > 10_000, fig
    # relevance of the MulF classifier on every test map, its regions, and S2 per class
    regions = pd.read_csv(res / "relevance/MulF/regions.csv")
    assert len(regions) == 24 and ((regions["area_fraction"] > 0) & (regions["area_fraction"] < 1)).all()
    np.testing.assert_allclose(regions["conserved_fraction"], regions["relevance_sum"] / regions["score"])
    with h5py.File(res / "relevance/MulF/relevance.h5") as f:
        assert f["relevance"].shape == (24, 48, 48) and f["region"].dtype == bool
    corr = json.loads((res / "correlation/MulF/summary.json").read_text())
    assert set(corr["parts"]) == {"whole", "region"} and corr["n_levels"] == 256
    lengths = pd.read_csv(res / "correlation/MulF/lengths.csv")
    assert set(lengths["part"]) == {"whole", "region"} and (lengths["characteristic_length_um"] > 0).all()
    # shared patterns: per class an annealed order no worse than the maps' own, groups of >= 3 maps
    pat = json.loads((res / "patterns/MulF/summary.json").read_text())
    for c in ("S1", "S2", "S3"):
        e = pat["classes"][c]
        assert e["n_maps"] == 8 and e["total_gradient_end"] <= e["total_gradient_start"]
        assert e["total_gradient_check"] == pytest.approx(e["total_gradient_end"])
        assert e["groups"] and all(g["size"] >= 3 and 0 <= g["shared_fraction"] <= 1 for g in e["groups"])
        members = [m for g in e["groups"] for m in g["maps"]]
        assert len(members) == len(set(members)) and set(members) <= set(regions["map"])
    # the explanation table: every quantity for every class, the same test on a quantity's rows
    table = pd.read_csv(res / "explanation/MulF/summary.csv")
    assert len(table) == 8 * 3 and set(table["class"]) == {"S1", "S2", "S3"}
    area = table[table["quantity"].str.startswith("characteristic region")].set_index("class")
    for c in ("S1", "S2", "S3"):
        expected = 100 * regions.loc[regions["true"] == c, "area_fraction"].mean()
        assert area.loc[c, "mean"] == pytest.approx(expected, abs=1e-3)
    assert table.groupby("quantity")["p_value"].nunique(dropna=False).max() == 1
    for fig in ("relevance_MulF", "correlation_MulF", "pattern_search_MulF", "shared_patterns_MulF"):
        assert (res / "figures" / f"{fig}.png").stat().st_size > 10_000, fig
    # the study alone: no indentation-study job was planned
    assert not (tmp_path / "results" / "demo").exists()


def test_tiny_sample_study_runs_from_generator_to_activation_maps(tmp_path):
    """The third study's DAG: virtual composites with a solved conductivity -> samples.h5 ->
    bright-fraction GLMs and the CNN per fold (grouped by sample) -> model table and figures."""
    cfg = study_config("tiny_samples")
    jobs = planned_jobs(run_smk(tmp_path, cfg, "-n").stdout)
    assert jobs == {"sample_inputs": 1, "sample_dataset": 1, "sample_baseline": 1, "sample_train": 3,
                    "sample_evaluate": 1, "all": 1}, jobs
    run_smk(tmp_path, cfg)
    res = tmp_path / "results" / "tiny_smp"
    images = pd.read_csv(res / "images.csv")
    samples = pd.read_csv(tmp_path / "resources/samples/tiny_smp/samples.csv")
    assert len(samples) == 12 and len(images) == 24 and (samples["value"] > 0).all()
    np.testing.assert_allclose(images.groupby("sample")["target"].first().sort_index(),
                               np.log10(samples.set_index("sample")["value"].sort_index()))
    # no sample in two parts of any fold's run, and every image predicted once, by the fold that held it out
    for k in range(3):
        run = json.loads((res / f"cnn/fold{k}/train.json").read_text())
        parts = [set(run[p]) for p in ("train_samples", "val_samples", "test_samples")]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert parts[2] == set(images.loc[images["fold"] == k, "sample"])
        assert run["n_train_images"] == 8 * 2 * len(parts[0])          # every grid symmetry of each image
    pred = pd.read_csv(res / "cnn/predictions.csv")
    assert sorted(pred["image"]) == list(range(24))
    assert (pred.merge(images, left_on="image", right_on="row")["fold_x"]
            == pred.merge(images, left_on="image", right_on="row")["fold_y"]).all()
    table = pd.read_csv(res / "model_table.csv")
    assert {"CNN (ConductivityCNN)"} <= set(table["method"]) and (table["n_folds"].dropna() == 3).all()
    glm = json.loads((res / "glm/summary.json").read_text())
    assert glm["best_degree"] in (1, 2, 3, 4) and glm["n_samples"] == 12
    for fig in ("bright_fraction", "observed_predicted", "activation_maps", "cnn_training"):
        assert (res / "figures" / f"{fig}.png").stat().st_size > 10_000, fig


@pytest.mark.slow          # about 90 s; `make test-slow` (the tiny porosity study covers the same DAG)
@pytest.mark.workflow
def test_real_micrograph_porosity_smoke_config_runs_on_regions(tmp_path, real_bse_path):
    """configs/porosity_real_smoke.yaml (the four quadrants of the real micrograph as
    classes), with fewer Monte Carlo electrons and epochs: every step runs on a real
    8-bit image, each class calibrated from its own region."""
    import zarr

    cfg = yaml.safe_load((REPO / "configs" / "porosity_real_smoke.yaml").read_text())
    cfg["backscatter"] = {"n_electrons": 300, "n_points": 5, "seed": 0}
    study = cfg["porosity_studies"]["real_smoke"]
    for c in study["classes"].values():
        c["image"] = str(real_bse_path)
    study["classifier"]["epochs"] = 2
    run_smk(tmp_path, cfg)
    res = tmp_path / "results" / "real_smoke"
    for name, c in study["classes"].items():
        grp = zarr.open_group(str(res / "classes" / name / "calibrated.zarr"), mode="r")
        assert grp["MulF"].shape == (400, 400), name            # the region, not the whole image
        assert grp.attrs["region_px"] == c["region_px"]
    table = pd.read_csv(res / "summary.csv")
    assert set(table["method"]) == {"nearest class mean", "DCNN"}
    # 8 x 8 windows of 50 px per quadrant, 48 of them train (a tenth validates), 16 test
    assert (table.loc[table["method"] == "DCNN", "n_maps"] == 64).all()
    # a region outside the image is refused at the calibration, naming the file and the region
    study["classes"]["top_left"]["region_px"] = [0, 0, 900, 400]
    proc = run_smk(tmp_path, cfg, "--forcerun", "porosity_calibrate", check=False)
    assert proc.returncode != 0
    log = (tmp_path / "results/logs/porosity_calibrate/real_smoke_top_left.log").read_text()
    assert "region_px [0, 0, 900, 400] is not inside the 800 x 800 px image" in log


@pytest.mark.parametrize("device,gpus", [("cpu", 0), ("cuda", 1)])
def test_gpu_requests_follow_the_device(tmp_path, device, gpus):
    """The rules that may train on a GPU ask for one (the `gpu` resource, which
    the Slurm executor plugin turns into `sbatch --gpus`) only when the config
    says cuda: none on a CPU-only run (benchmarks/slurm_integration.sh proves
    that on a one-node cluster)."""
    cfg = study_config("tiny_learning")
    for name in ("tiny_porosity", "tiny_samples"):
        cfg.update({k: v for k, v in study_config(name).items() if k != "backscatter"})
    cfg["specimens"]["tiny"]["learning"]["device"] = device
    for study in cfg["porosity_studies"].values():
        study["classifier"]["device"] = device
    for study in cfg["sample_studies"].values():
        study["cnn"]["device"] = device
    out = run_smk(tmp_path, cfg, "-n").stdout
    requested = {}
    for block in re.split(r"\n(?=rule \w+:)", out):
        m = re.match(r"rule (\w+):", block)
        res = re.search(r"^\s*resources: (.*)$", block, re.M)
        if m and res:
            g = re.search(r"\bgpu=(\d+)", res.group(1))
            requested.setdefault(m.group(1), set()).add(int(g.group(1)) if g else 0)
    for rule in ("train_model", "porosity_train", "sample_train"):
        assert requested.get(rule) == {gpus}, (rule, requested.get(rule))
    assert all(v == {0} for r, v in requested.items()
               if r not in ("train_model", "porosity_train", "sample_train")), requested
