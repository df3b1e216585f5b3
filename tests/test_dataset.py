"""Tests of microprop.data: crops, shards, assembly and splits."""
import h5py
import numpy as np
import pandas as pd
import pytest
from microprop import data, physics
from microprop import io as mio
from microprop.errors import InputError

ATTRS = {"pixel_size_nm": 40.0, "crop_size_um": 0.36, "crop_size_px": 9, "quantity": "eta",
         "scale": "MulF", "sources": {"located/b1.csv": "ab" * 32}}


def _located(xs, ys, start=1, batch="b1"):
    n = len(xs)
    return pd.DataFrame({"batch": batch, "indent": np.arange(start, start + n),
                         "x_px": np.asarray(xs, float), "y_px": np.asarray(ys, float),
                         "E_GPa": np.linspace(10, 40, n), "H_GPa": np.linspace(0.5, 2, n)})


def test_crop_size_px():
    assert data.crop_size_px(10.0, 40.0) == 250
    assert data.crop_size_px(0.36, 40.0) == 9
    with pytest.raises(InputError):
        data.crop_size_px(10.0, 0)


@pytest.mark.parametrize("s", [9, 10])
def test_crop_known_centres_equal_slices_and_edges_skipped(rng, s):
    img = rng.random((60, 80)).astype(np.float32)
    loc = _located([20, 40.4, 3, 78, 50, 30.6, np.nan], [30, 10.5, 30, 30, 57, 8.49, 5])
    crops, kept, skipped = data.crop_indents(img, loc, s, pixel_size_nm=50.0)
    assert crops.shape == (3, s, s) and crops.dtype == np.float32
    h = s // 2
    # (20, 30) -> exact; (40.4, 10.5) rounds half up to (40, 11); (30.6, 8.49) -> (31, 8)
    np.testing.assert_array_equal(crops[0], img[30 - h:30 - h + s, 20 - h:20 - h + s])
    np.testing.assert_array_equal(crops[1], img[11 - h:11 - h + s, 40 - h:40 - h + s])
    np.testing.assert_array_equal(crops[2], img[8 - h:8 - h + s, 31 - h:31 - h + s])
    assert crops[0][h, h] == img[30, 20]  # the indent pixel sits at [S//2, S//2]
    assert kept["indent"].tolist() == [1, 2, 6]
    assert kept["x_um"].tolist() == pytest.approx([1.0, 2.02, 1.53])
    reasons = dict(zip(skipped["indent"], skipped["reason"]))
    assert reasons == {3: data.SKIP_OUTSIDE, 4: data.SKIP_OUTSIDE, 5: data.SKIP_OUTSIDE,
                       7: data.SKIP_NO_POSITION}
    assert len(kept) + len(skipped) == len(loc)


def test_crop_missing_target_and_columns(rng):
    img = np.zeros((30, 30), np.float32)
    loc = _located([10, 15], [10, 15])
    loc.loc[1, "E_GPa"] = np.nan
    _, kept, skipped = data.crop_indents(img, loc, 5, pixel_size_nm=40)
    assert kept["indent"].tolist() == [1] and skipped["reason"].tolist() == [data.SKIP_NO_TARGET]
    with pytest.raises(InputError, match="located.*y_px"):
        data.crop_indents(img, loc.drop(columns="y_px"), 5)


def _shard_table(area, batch, indents, rng, x0=0.0):
    n = len(indents)
    return pd.DataFrame({"specimen": "demo", "area": area, "batch": batch,
                         "indent": np.asarray(indents, np.int64),
                         "x_um": x0 + rng.uniform(0, 300, n), "y_um": rng.uniform(0, 300, n),
                         "E_GPa": rng.uniform(5, 60, n), "H_GPa": rng.uniform(0.2, 3, n)})


def _write(tmp_path, name, table, rng, attrs=ATTRS, s=9):
    crops = rng.random((len(table), s, s)).astype(np.float32)
    # tag each crop with its indent so that reordering can be checked
    crops[:, 0, 0] = table["indent"].to_numpy()
    path = tmp_path / f"{name}.h5"
    data.write_shard(path, crops, table, attrs)
    return path, crops


def test_shard_round_trip(tmp_path, rng):
    t = _shard_table("a1", "b1", [3, 1, 2], rng)
    path, crops = _write(tmp_path, "b1", t, rng)
    c2, t2, a2 = data.read_shard(path)
    np.testing.assert_array_equal(c2, crops)
    pd.testing.assert_frame_equal(t2[t.columns], t, check_dtype=False, check_exact=False, rtol=1e-6)
    assert a2["sources"] == ATTRS["sources"] and a2["crop_size_px"] == 9
    with h5py.File(path) as fh:
        assert fh["images"].chunks == (1, 9, 9) and fh["images"].compression == "gzip"
        assert fh["targets/E_GPa"].attrs["units"] == "GPa" and fh["targets/E_GPa"].dtype == np.float32
        assert fh["meta/indent"].dtype == np.int64
    with pytest.raises(InputError, match="duplicate"):
        data.write_shard(tmp_path / "dup.h5", crops, t.assign(indent=[1, 1, 2]), ATTRS)
    assert not (tmp_path / "dup.h5").exists()


def _three_shards(tmp_path, rng):
    specs = [("a2", "b1", range(1, 41)), ("a1", "b2", range(1, 31)), ("a1", "b1", range(1, 51))]
    paths, tables, crops = [], [], []
    for area, batch, ind in specs:
        t = _shard_table(area, batch, list(ind)[::-1], rng, x0=1000.0 if area == "a2" else 0.0)
        p, c = _write(tmp_path, f"{area}_{batch}", t, rng)
        paths.append(p), tables.append(t), crops.append(c)
    return paths, tables, crops


def test_assemble_conserves_and_orders(tmp_path, rng):
    paths, tables, crops = _three_shards(tmp_path, rng)
    empty = tmp_path / "empty.h5"
    data.write_shard(empty, np.zeros((0, 9, 9), np.float32), _shard_table("a3", "b1", [], rng), ATTRS)
    out = tmp_path / "dataset.h5"
    rep = data.assemble(paths + [empty], out, seed=3, block_um=50.0,
                      attrs={"config_sha256": "cf" * 32, "code_version": "abc123"})
    imgs, table, attrs = data.read_shard(out)
    n = sum(len(t) for t in tables)
    assert len(table) == n == rep["n"] == imgs.shape[0]
    # conservation of the targets and of the image content
    for t in ("E_GPa", "H_GPa"):
        assert table[t].sum() == pytest.approx(sum(tt[t].astype(np.float32).sum() for tt in tables),
                                               rel=1e-6)
    assert imgs.sum(dtype=np.float64) == pytest.approx(
        sum(c.sum(dtype=np.float64) for c in crops), rel=1e-9)
    # deterministic order (area, batch, indent) and images follow their rows
    keys = list(zip(table["area"], table["batch"], table["indent"]))
    assert keys == sorted(keys)
    assert keys[0] == ("a1", "b1", 1) and keys[-1] == ("a2", "b1", 40)
    np.testing.assert_array_equal(imgs[:, 0, 0], table["indent"].to_numpy())
    src = tables[2].set_index("indent").loc[7]
    row = table[(table["area"] == "a1") & (table["batch"] == "b1") & (table["indent"] == 7)].iloc[0]
    assert row["x_um"] == src["x_um"] and row["E_GPa"] == pytest.approx(src["E_GPa"], rel=1e-6)
    assert attrs["config_sha256"] == "cf" * 32 and attrs["code_version"] == "abc123"
    assert attrs["crop_size_px"] == 9 and attrs["quantity"] == "eta"
    assert set(attrs["sources"]) == {"located/b1.csv", *map(str, paths), str(empty)}
    assert attrs["sources"][str(paths[0])] == mio.sha256_file(paths[0])


def test_splits_disjoint_cover_fractions_and_reproducible(tmp_path, rng):
    paths, _, _ = _three_shards(tmp_path, rng)
    out1, out2 = tmp_path / "d1.h5", tmp_path / "d2.h5"
    rep = data.assemble(paths, out1, seed=0, block_um=50.0)
    data.assemble(list(reversed(paths)), out2, seed=0, block_um=50.0)
    s1, s2 = data.read_splits(out1), data.read_splits(out2)
    n = rep["n"]
    for scheme in ("random", "blocked"):
        parts = [s1[scheme][k] for k in data.SPLITS]
        allidx = np.concatenate(parts)
        assert np.array_equal(np.sort(allidx), np.arange(n))  # disjoint and covering
        for k in data.SPLITS:
            np.testing.assert_array_equal(s1[scheme][k], s2[scheme][k])  # same seed, same split
    counts = [s1["random"][k].size for k in data.SPLITS]
    assert counts == [84, 18, 18]  # 120 * (0.7, 0.15, 0.15)
    data.assemble(paths, tmp_path / "d3.h5", seed=1, block_um=50.0)
    assert not np.array_equal(data.read_splits(tmp_path / "d3.h5")["random"]["train"],
                              s1["random"]["train"])
    # blocked: no block straddles two splits; achieved fractions near the targets
    with h5py.File(out1) as fh:
        blocks = fh["meta/block"][...]
    _, table, _ = data.read_shard(out1, images=False)
    np.testing.assert_array_equal(blocks, data.block_ids(table, 50.0))
    split_of = {}
    for k in data.SPLITS:
        for b in blocks[s1["blocked"][k]]:
            assert split_of.setdefault(int(b), k) == k
    max_block = np.bincount(blocks).max()
    for k, t in zip(data.SPLITS, (0.7, 0.15, 0.15)):
        assert abs(rep["blocked"][k]["fraction"] - t) <= max_block / n / 2 + 1e-9
    # a block really is the 50 um square cell of one area
    i = s1["blocked"]["train"][0]
    same = table[(table["area"] == table["area"][i])
                 & (np.floor(table["x_um"] / 50) == np.floor(table["x_um"][i] / 50))
                 & (np.floor(table["y_um"] / 50) == np.floor(table["y_um"][i] / 50))].index
    assert set(same) <= set(s1["blocked"]["train"].tolist())


def test_random_split_rounding():
    sp = data.random_split(7, (0.7, 0.15, 0.15), seed=0)
    assert [v.size for v in sp.values()] == [5, 1, 1]
    assert sorted(np.concatenate(list(sp.values())).tolist()) == list(range(7))
    with pytest.raises(InputError, match="summing to 1"):
        data.random_split(10, (0.7, 0.2, 0.2))


def test_assemble_duplicates_name_both_files(tmp_path, rng):
    p1, _ = _write(tmp_path, "first", _shard_table("a1", "b1", [1, 2, 3], rng), rng)
    p2, _ = _write(tmp_path, "second", _shard_table("a1", "b1", [3, 4], rng), rng)
    with pytest.raises(InputError) as err:
        data.assemble([p1, p2], tmp_path / "d.h5")
    assert str(p1) in str(err.value) and str(p2) in str(err.value)
    assert "indent 3" in str(err.value)
    assert not (tmp_path / "d.h5").exists()


def test_assemble_mismatched_crop_size(tmp_path, rng):
    p1, _ = _write(tmp_path, "s9", _shard_table("a1", "b1", [1, 2], rng), rng)
    p2, _ = _write(tmp_path, "s11", _shard_table("a1", "b2", [1, 2], rng), rng,
                   attrs={**ATTRS, "crop_size_px": 11}, s=11)
    with pytest.raises(InputError, match="crop_size_px") as err:
        data.assemble([p1, p2], tmp_path / "d.h5")
    assert str(p1) in str(err.value) and str(p2) in str(err.value)
    p3, _ = _write(tmp_path, "por", _shard_table("a1", "b3", [1], rng), rng,
                   attrs={**ATTRS, "quantity": "porosity"})
    with pytest.raises(InputError, match="quantity"):
        data.assemble([p1, p3], tmp_path / "d.h5")


def test_read_shard_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        data.read_shard(tmp_path / "none.h5")
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(InputError, match="HDF5"):
        data.read_shard(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "partial.h5", "w") as fh:
        fh["images"] = np.zeros((1, 3, 3), np.float32)
    with pytest.raises(InputError, match="targets/E_GPa"):
        data.read_shard(tmp_path / "partial.h5")


def test_rule_scripts_chain(tmp_path, rng):
    """calibrate -> crop_batch -> assemble_dataset run by hand (--mock), on a generated mosaic."""
    import subprocess
    import sys

    import yaml
    import zarr

    

    repo = __import__("pathlib").Path(__file__).resolve().parents[1]
    coarse = rng.choice(3, size=(20, 25), p=[0.15, 0.6, 0.25])
    lab = np.kron(coarse, np.ones((10, 10), int))
    img = np.clip(np.round(np.array([40.0, 110.0, 200.0])[lab] + rng.normal(0, 5, lab.shape)),
                  0, 255).astype(np.uint8)
    mio.create_image_store(tmp_path / "mosaic.zarr", img.shape, np.uint8, chunk=64,
                           attrs={"pixel_size_nm": 40.0, "origin_um": [0, 0]})[:] = img
    pd.DataFrame({"phase": ["pore", "ACC"], "eta": [0.06, 0.2]}).to_csv(tmp_path / "pe.csv")
    pd.DataFrame({"n": [0.0, 1.0], "eta": [0.15, 0.45]}).to_csv(tmp_path / "et.csv")
    loc = _located([20, 100, 248, 4], [20, 100, 150, 100])
    loc.to_csv(tmp_path / "b1.csv", index=False)
    jobs = {
        "calibrate": {"input": {"mosaic": "mosaic.zarr", "phase_eta": "pe.csv", "eta_table": "et.csv"},
                      "params": {"mode": "eta", "reference_phases": ["pore", "ACC"],
                                 "reference_greys": "modes", "clinker_grey_window": None,
                                 "micf_sigma_px": 2.0, "chunk": 64},
                      "output": {"calibrated": "cal.zarr", "hist": "hist.png"}},
        "crop_batch": {"input": {"calibrated": "cal.zarr", "located": "b1.csv"},
                       "params": {"scale": "MulF", "crop_size_um": 0.4, "specimen": "demo",
                                  "area": "a1", "batch": "b1"},
                       "output": {"shard": "b1.h5", "skipped": "b1_skipped.csv"}},
        "assemble_dataset": {"input": {"shards": ["b1.h5"]},
                             "params": {"seed": 0, "split_fractions": [0.7, 0.15, 0.15],
                                        "block_um": 2.0, "config_sha256": "c0", "code_version": "v"},
                             "output": {"dataset": "dataset.h5", "splits_report": "splits.json"}},
    }
    env = {**__import__("os").environ, "PYTHONPATH": str(repo / "scripts")}
    for name, job in jobs.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(job))
        res = subprocess.run([sys.executable, str(repo / "scripts" / f"{name}.py"), "--mock",
                              f"{name}.yaml"], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-3000:]
    g = zarr.open_group(str(tmp_path / "cal.zarr"), mode="r")
    assert g.attrs["grey_refs"] == pytest.approx([40.0, 200.0], abs=1.0)
    eta = np.asarray(g["MulF"])
    np.testing.assert_allclose(eta, physics.grey_to_eta(img, g.attrs["grey_refs"], [0.06, 0.2]))
    assert (tmp_path / "hist.png").stat().st_size > 1000
    imgs, table, attrs = data.read_shard(tmp_path / "dataset.h5")
    assert table["indent"].tolist() == [1, 2]  # 3 and 4 leave the 200 x 250 mosaic
    assert pd.read_csv(tmp_path / "b1_skipped.csv")["reason"].tolist() == [data.SKIP_OUTSIDE] * 2
    np.testing.assert_array_equal(imgs[1], eta[95:105, 95:105])  # S = 10 px, centre at [5, 5]
    assert attrs["crop_size_px"] == 10 and attrs["scale"] == "MulF" and attrs["config_sha256"] == "c0"
    assert attrs["calibration"]["demo/a1"]["quantity"] == "eta"
    rep = __import__("json").loads((tmp_path / "splits.json").read_text())
    assert rep["n"] == 2 and sum(v["count"] for v in rep["random"].values()) == 2


# --------------------------------------------------------------------------
# the one reader of dataset.h5
# --------------------------------------------------------------------------
def _assembled(tmp_path, rng):
    paths, _, _ = _three_shards(tmp_path, rng)
    out = tmp_path / "dataset.h5"
    data.assemble(paths, out, seed=0, block_um=50.0)
    return out


def _copy_with(src, dst, splits):
    """``src`` with its /splits replaced by ``splits`` ({scheme: {part: indices}})."""
    with h5py.File(src, "r") as a, h5py.File(dst, "w") as b:
        for k in ("images", "targets", "meta"):
            a.copy(k, b)
        b.attrs.update(a.attrs)
        for scheme, parts in splits.items():
            for part, idx in parts.items():
                b[f"splits/{scheme}/{part}"] = np.asarray(idx, np.int64)
    return dst


def test_open_dataset_names_the_file(tmp_path):
    with pytest.raises(InputError, match="none.h5: dataset not found"):
        with data.open_dataset(tmp_path / "none.h5"):
            pass
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(InputError, match="junk.h5: not a readable HDF5 dataset"):
        with data.open_dataset(tmp_path / "junk.h5"):
            pass
    with h5py.File(tmp_path / "other.h5", "w") as fh:
        fh["x"] = np.zeros(3)
    with pytest.raises(InputError, match="other.h5: not a dataset: lacks /images"):
        with data.open_dataset(tmp_path / "other.h5"):
            pass
    with h5py.File(tmp_path / "flat.h5", "w") as fh:
        fh["images"] = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(InputError, match=r"flat.h5: not a dataset: /images must be \(N, S, S\)"):
        data.read_split(tmp_path / "flat.h5", "random")


def test_read_split_equals_the_stored_indices_from_a_path_or_an_open_file(tmp_path, rng):
    path = _assembled(tmp_path, rng)
    with h5py.File(path, "r") as fh:
        stored = {s: fh[f"splits/blocked/{s}"][...] for s in data.SPLITS}
    by_path = data.read_split(path, "blocked")
    with data.open_dataset(path) as fh:
        by_file = data.read_split(fh, "blocked")
        assert fh.id.valid  # a file handed in stays open
    for s in data.SPLITS:
        assert by_path[s].dtype == np.int64 and by_path[s].ndim == 1
        np.testing.assert_array_equal(by_path[s], stored[s])
        np.testing.assert_array_equal(by_file[s], stored[s])
    assert list(by_path) == list(data.SPLITS)
    assert set(data.read_splits(path)) == {"random", "blocked"}
    assert data.has_split(path, "random") and not data.has_split(path, "spatial")


@pytest.mark.parametrize("splits, message", [
    ({"random": {"train": [0, 1], "val": [2]}}, r"lacks /splits/random/test"),
    ({"random": {"train": [0, 1], "val": [2], "test": [3, 120]}},
     r"/splits/random/test has indices outside 0\.\.119"),
    ({"random": {"train": [0, 1, 1], "val": [2], "test": [3]}}, "/splits/random/train repeats"),
    ({"random": {"train": [0, 1], "val": [2, 3], "test": [3, 4]}},
     r"/splits/random puts 1 samples in more than one split"),
    ({"blocked": {"train": [0], "val": [1], "test": [2]}}, r"no /splits/random .*found \['blocked'\]"),
])
def test_read_split_rejects_bad_splits(tmp_path, rng, splits, message):
    bad = _copy_with(_assembled(tmp_path, rng), tmp_path / "bad.h5", splits)
    with pytest.raises(InputError, match="bad.h5.*" + message):
        data.read_split(bad, "random")


def test_read_split_optional_parts_are_empty(tmp_path, rng):
    bad = _copy_with(_assembled(tmp_path, rng), tmp_path / "noval.h5",
                     {"random": {"train": [0, 1], "test": [5]}})
    parts = data.read_split(bad, "random", required=("train", "test"))
    assert parts["val"].size == 0 and parts["val"].dtype == np.int64
    assert not data.has_split(bad, "random") and data.has_split(bad, "random", ("train", "test"))
    with pytest.raises(InputError, match="has no /splits group"):
        data.read_splits(_copy_with(bad, tmp_path / "nosplits.h5", {}))


def test_read_crops_follow_the_split_order(tmp_path, rng):
    path = _assembled(tmp_path, rng)
    imgs, table, _ = data.read_shard(path)
    parts = data.read_split(path, "random")
    for part in data.SPLITS:
        x, y, index = data.read_crops(path, "H_GPa", "random", part)
        np.testing.assert_array_equal(index, parts[part])
        np.testing.assert_array_equal(x, imgs[index])
        np.testing.assert_array_equal(y, table["H_GPa"].to_numpy(np.float64)[index])
    targets = data.read_targets(path)
    assert set(targets) == {"E_GPa", "H_GPa"} and targets["E_GPa"].dtype == np.float64
    np.testing.assert_array_equal(targets["E_GPa"], table["E_GPa"].to_numpy(np.float64))
    assert data.read_attrs(path)["crop_size_px"] == 9
    with pytest.raises(InputError, match="target 'G_GPa'"):
        data.read_crops(path, "G_GPa")
    with pytest.raises(InputError, match="split 'nope'"):
        data.read_crops(path, "E_GPa", "nope")
