"""The scale benchmark's smallest path: a 2 x 2 set of 256 px tiles, stitching only.

The calibration stage costs a fixed ~10-15 s here (the detector-line fit on
its pixel sample, whatever the mosaic size), so the test runs the stitch stage
alone, without ASHLAR; the other stages are run by the benchmark itself.
"""
import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_scale.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_scale", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_small_tile_set_stitches_to_its_subpixel_truth(tmp_path):
    bench = _bench()
    out = tmp_path / "scale.json"
    result = bench.main(["--sizes", "2", "--tile-px", "256", "--skip-ashlar", "--stages", "stitch",
                         "--dir", str(tmp_path), "--json", str(out)])
    assert out.is_file()
    (row,) = result["rows"]
    assert (row["size"], row["tool"], row["stage"]) == ("2x2", "ours", "stitch")
    assert row["err_max_px"] < 0.3
    assert row["wall_s"] > 0 and row["peak_rss_gib"] > 0
    assert result["ashlar_skipped"] == ["--skip-ashlar"]
    assert not list(tmp_path.glob("bench_scale_*"))  # the work folder is removed without --keep


def test_stage_dependencies_are_checked():
    bench = _bench()
    with pytest.raises(SystemExit):
        bench.parse_args(["--stages", "crop"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--tile-px", "64"])
