"""Rule baselines: the seed's table model and a linear model, grey -> E and H.

Each crop is reduced to its mean calibrated value (NaN pixels ignored); the
table model predicts the mean target of the crop's grey bin (equal-count
bins), the linear model a least-squares line. Both are fitted on the train
split and scored on the test split: the dataset's ``/splits/random`` when
present (train + val for fitting, test for scoring, the split the CNN is
judged on), else a seeded 80/20 random split.

Inputs
------
snakemake.input.dataset : str
    ``results/{specimen}/dataset.h5``: ``/images`` (N, S, S) float32,
    ``/targets/E_GPa``, ``/targets/H_GPa`` (N,), optional
    ``/splits/random/{train,val,test}``; file attr ``quantity`` (``eta`` or
    ``porosity``) labels the grey axis.

Params
------
snakemake.params.n_bins : int
    Bins of the table model (default 10).
snakemake.params.seed : int
    Seed of the fallback random split (default 0).
snakemake.params.test_fraction : float, optional
    Test share of the fallback split (default 0.2).

Outputs
-------
snakemake.output.table : CSV
    ``model, target, MSE, MAE, R2, n_train, n_test, split`` (MSE in GPa^2,
    MAE in GPa), rows for ``table`` and ``linear`` x ``E_GPa``/``H_GPa``.
snakemake.output.fig_table_model : PNG
    Table model for E: predicted vs measured and bin means vs grey.
snakemake.output.fig_table_model_H : PNG
    Same for H.
snakemake.output.bins : CSV, optional
    The table-model bins of both targets (``target, bin, grey_lo, grey_hi,
    grey_mean, y_mean, y_std, n``).
"""
from microprop.workflow import setup_script

snakemake = setup_script(globals())

import logging  # noqa: E402
from pathlib import Path  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from microprop import (
    io,  # noqa: E402
    plots,  # noqa: E402
    stats,  # noqa: E402
)
from microprop.errors import InputError  # noqa: E402
from microprop.progress import progress  # noqa: E402

log = logging.getLogger("microprop.baselines")
TARGETS = ("E_GPa", "H_GPa")


def read_dataset(path, block=512):
    """Crop means, targets, split and grey quantity of a dataset HDF5 file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: dataset not found")
    with h5py.File(path, "r") as h5:
        for key in ("images",) + tuple(f"targets/{t}" for t in TARGETS):
            if key not in h5:
                raise InputError(f"{path}: dataset lacks /{key}")
        images = h5["images"]
        if images.ndim != 3:
            raise InputError(f"{path}: /images has shape {images.shape}; expected (N, S, S)")
        n = images.shape[0]
        means = np.empty(n, np.float64)
        for i0 in progress(range(0, n, block), desc="crop means", unit="block"):
            means[i0:i0 + block] = stats.crop_means(images[i0:i0 + block])
        targets = {}
        for t in TARGETS:
            targets[t] = np.asarray(h5[f"targets/{t}"], dtype=float)
            if targets[t].shape != (n,):
                raise InputError(f"{path}: /targets/{t} has shape {targets[t].shape}; "
                                 f"expected ({n},)")
        split = None
        if all(f"splits/random/{s}" in h5 for s in ("train", "test")):
            train = np.asarray(h5["splits/random/train"], dtype=np.int64)
            if "splits/random/val" in h5:
                train = np.concatenate([train, np.asarray(h5["splits/random/val"], np.int64)])
            split = (np.sort(train), np.sort(np.asarray(h5["splits/random/test"], np.int64)))
        quantity = h5.attrs.get("quantity", "grey")
        if isinstance(quantity, bytes):
            quantity = quantity.decode()
    return means, targets, split, str(quantity)


p = snakemake.params
n_bins = int(p.get("n_bins", 10))
seed = int(p.get("seed", 0))
test_fraction = float(p.get("test_fraction", 0.2))

means, targets, split, quantity = read_dataset(snakemake.input.dataset)
split_kw = {} if split is None else {"train_index": split[0], "test_index": split[1]}
split_name = "seeded random 80/20" if split is None else "dataset /splits/random"
if split is None and test_fraction != 0.2:
    split_name = f"seeded random, test fraction {test_fraction}"
log.info("%d crops; split: %s; grey quantity %s", means.size, split_name, quantity)

rows, bins, figs = [], [], {}
for target in TARGETS:
    y = targets[target]
    tab = stats.table_model(means, y, n_bins=n_bins, seed=seed, test_fraction=test_fraction,
                            **split_kw)
    lin = stats.linear_model(means, y, seed=seed, test_fraction=test_fraction, **split_kw)
    for name, res in (("table", tab), ("linear", lin)):
        rows.append({"model": name, "target": target, **res["metrics"],
                     "n_train": res["n_train"], "n_test": res["n_test"], "split": split_name})
        log.info("%s model, %s: %s", name, target, res["metrics"])
    b = tab["table"].copy()
    b.insert(0, "target", target)
    bins.append(b)
    te = tab["test_index"]
    figs[target] = plots.table_model_scatter(
        means[te], y[te], tab["y_pred"], tab["metrics"], quantity=target, table=tab["table"],
        grey_label=f"mean crop value ({quantity})",
        title=f"Table model ({len(tab['table'])} equal-count bins), {target}")

o = snakemake.output
io.write_table(pd.DataFrame(rows), o.table)
if o.get("bins"):
    io.write_table(pd.concat(bins, ignore_index=True), o.bins)
plots.save_png(figs["E_GPa"], o.fig_table_model)
plots.save_png(figs["H_GPa"], o.fig_table_model_H)
