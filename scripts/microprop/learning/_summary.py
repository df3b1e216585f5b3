"""The learning summary: every model's test figures with their spread, beside the ceiling.

:func:`summary_table` stacks the baseline ladder, the ResNet ensembles and,
for a specimen whose truth is known, the attainable model on the true zone
fractions (:mod:`microprop.learning._ceiling`), and gives every model's test
R^2, MAE and (ResNet) interval coverage a bootstrap 95 % interval. Per
target and split scheme the resamples are drawn once and shared by all
models (a paired bootstrap, :func:`microprop.learning.bootstrap_weights`):
whole spatial blocks on the blocked split (when the dataset carries
``/meta/block``), crops on the random split. Each model's R^2 is also given
as a fraction of the attainable R^2, with the interval of that ratio over
the same resamples; the ResNet rows carry the spread of their members'
R^2 (members trained with different seeds).
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..errors import InputError
from ._uncertainty import (
    N_BOOT,
    bootstrap_coverage,
    bootstrap_metrics,
    bootstrap_weights,
    member_spread,
    percentile_interval,
)

log = logging.getLogger(__name__)

#: the model name of the attainable rows
ATTAINABLE = "attainable (true zone fractions)"

#: columns of :func:`summary_table`
SUMMARY_COLUMNS = (
    "model", "target", "split", "MSE", "MAE", "MAE_ci95_lo", "MAE_ci95_hi",
    "R2", "R2_ci95_lo", "R2_ci95_hi", "n_test", "bootstrap_unit", "n_units",
    "R2_attainable", "R2_attainable_ci95_lo", "R2_attainable_ci95_hi", "R2_noise_ceiling",
    "R2_oracle", "frac_of_attainable", "frac_of_attainable_ci95_lo", "frac_of_attainable_ci95_hi",
    "n_members", "members_R2_mean", "members_R2_sd", "members_R2_min", "members_R2_max",
    "coverage", "coverage_ci95_lo", "coverage_ci95_hi", "coverage_wilson_lo",
    "coverage_wilson_hi", "interval_level", "interval_method", "coverage_pooled",
    "mean_width_GPa", "mean_width_pooled_GPa")


def _resnet_entry(summary, predictions, what):
    """One ResNet evaluation as the model rows need it: figures, test predictions, intervals."""
    try:
        test = summary["metrics"]["test"]
        ens = test["ensemble"]
        conf = summary["interval"]["conformal"]
    except (KeyError, TypeError) as exc:
        raise InputError(f"{what}: evaluation summary lacks {exc}") from exc
    need = ["index", "split", "y", "mean", "lo", "hi"]
    missing = [c for c in need if c not in predictions.columns]
    if missing:
        raise InputError(f"{what}: predictions lack column(s) {missing}")
    pred = predictions[predictions["split"] == "test"]
    pooled = summary["interval"].get("conformal_pooled") or {}
    members = member_spread([m["R2"] for m in test.get("members") or []])
    wil = conf.get("coverage_test_ci95", [np.nan, np.nan])
    return {
        "model": f"resnet (x{summary['n_predictions']})", "target": summary["target"],
        "split": summary.get("split_scheme", summary.get("split")),
        "MSE": ens["MSE"], "MAE": ens["MAE"], "R2": ens["R2"],
        "index": pred["index"].to_numpy(np.int64), "y": pred["y"].to_numpy(float),
        "pred": pred["mean"].to_numpy(float), "lo": pred["lo"].to_numpy(float),
        "hi": pred["hi"].to_numpy(float),
        "extra": {"n_members": members["n"], "members_R2_mean": members["mean"],
                  "members_R2_sd": members["sd"], "members_R2_min": members["min"],
                  "members_R2_max": members["max"], "coverage": conf["coverage_test"],
                  "coverage_wilson_lo": wil[0], "coverage_wilson_hi": wil[1],
                  "interval_level": summary.get("level", conf.get("level")),
                  "interval_method": conf.get("method", "pooled"),
                  "coverage_pooled": pooled.get("coverage_test", conf["coverage_test"]),
                  "mean_width_GPa": conf["mean_width_test"],
                  "mean_width_pooled_GPa": pooled.get("mean_width_test", conf["mean_width_test"])}}


def _ladder_entries(ladder, ladder_predictions):
    out = []
    for _, r in ladder.iterrows():
        p = ladder_predictions[(ladder_predictions["model"] == r["model"])
                               & (ladder_predictions["target"] == r["target"])
                               & (ladder_predictions["split"] == r["split"])]
        if len(p) == 0:
            raise InputError(f"ladder predictions: no rows for model {r['model']!r}, target "
                             f"{r['target']!r}, split {r['split']!r}")
        out.append({"model": r["model"], "target": r["target"], "split": r["split"],
                    "MSE": r["MSE"], "MAE": r["MAE"], "R2": r["R2"],
                    "index": p["index"].to_numpy(np.int64), "y": p["y"].to_numpy(float),
                    "pred": p["pred"].to_numpy(float), "extra": {}})
    return out


def _ceiling_entries(ceiling, ceiling_predictions):
    out = []
    for _, r in ceiling.iterrows():
        p = ceiling_predictions[(ceiling_predictions["target"] == r["target"])
                                & (ceiling_predictions["split"] == r["split"])]
        y, a = p["y"].to_numpy(float), p["attainable"].to_numpy(float)
        out.append({"model": ATTAINABLE, "target": r["target"], "split": r["split"],
                    "MSE": float(np.mean((y - a) ** 2)), "MAE": float(np.mean(np.abs(y - a))),
                    "R2": float(r["R2_attainable"]),
                    "index": p["index"].to_numpy(np.int64), "y": y, "pred": a, "extra": {},
                    "noise_ceiling": float(r["R2_noise_ceiling"]),
                    "oracle": float(r["R2_oracle"])})
    return out


def summary_table(ladder, ladder_predictions, resnet=(), ceiling=None, ceiling_predictions=None,
                  blocks=None, n_boot=N_BOOT, seed=0, confidence=0.95):
    """Every model's test figures with bootstrap intervals, the members' spread and the ceiling.

    Parameters
    ----------
    ladder : pandas.DataFrame
        :func:`microprop.learning.ladder`'s table (``model, target, split,
        MSE, MAE, R2``).
    ladder_predictions : pandas.DataFrame
        Its test predictions (``model, target, split, index, y, pred``).
    resnet : sequence of (dict, pandas.DataFrame)
        Per evaluated ensemble, :func:`microprop.learning.evaluate`'s summary
        (as written to ``summary.json``) and predictions table
        (``index, split, y, mean, lo, hi``, GPa).
    ceiling, ceiling_predictions : pandas.DataFrame, optional
        :func:`microprop.learning.ceiling_table`'s outputs; None for a
        specimen without truth (the ceiling columns are then NaN).
    blocks : array-like, shape (N_dataset,), optional
        Spatial block of every dataset row (``/meta/block``). Given, the
        blocked split's test figures are bootstrapped over blocks; else over
        crops.
    n_boot : int
        Bootstrap resamples per target and split.
    seed : int
        Seed of the resamples (one stream per target and split, derived
        from it).
    confidence : float
        Of the percentile intervals.

    Returns
    -------
    pandas.DataFrame
        :data:`SUMMARY_COLUMNS`, one row per model, target and split, sorted
        by target, split and R^2 (descending). ``*_ci95_lo/hi``: percentile
        bootstrap intervals (GPa for MAE); ``bootstrap_unit`` ``crop`` or
        ``block`` and ``n_units`` how many of them the test set has;
        ``frac_of_attainable`` ``R2 / R2_attainable``; ``coverage_wilson_*``
        the binomial (Wilson) interval, which treats crops as independent;
        ``coverage_pooled`` and ``mean_width_pooled_GPa`` the pooled
        split-conformal interval, beside the one used (``interval_method``).

    Raises
    ------
    InputError
        When a model's predictions are missing or hold test rows unknown to
        the block ids.
    """
    entries = _ladder_entries(ladder, ladder_predictions)
    entries += [_resnet_entry(s, p, f"ResNet {s.get('split_scheme')} {s.get('target')}")
                for s, p in resnet]
    ceil = {}
    if ceiling is not None and ceiling_predictions is not None and len(ceiling):
        for e in _ceiling_entries(ceiling, ceiling_predictions):
            ceil[(e["target"], e["split"])] = e
            entries.append(e)
    blocks = None if blocks is None else np.asarray(blocks).ravel()
    rows = []
    for k, (target, split) in enumerate(sorted({(e["target"], e["split"]) for e in entries})):
        group = [e for e in entries if (e["target"], e["split"]) == (target, split)]
        rows += _bootstrap_group(group, ceil.get((target, split)), blocks, split, n_boot,
                                 int(seed) * 1000 + k, confidence)
    table = pd.DataFrame(rows)
    for c in SUMMARY_COLUMNS:
        if c not in table.columns:
            table[c] = np.nan
    return table[list(SUMMARY_COLUMNS)].sort_values(
        ["target", "split", "R2"], ascending=[True, True, False]).reset_index(drop=True)


def _bootstrap_group(group, ceil, blocks, split, n_boot, seed, confidence):
    """Rows of one target and split: shared resamples over the union of the models' test rows."""
    index = np.unique(np.concatenate([e["index"] for e in group]))
    use_blocks = split == "blocked" and blocks is not None
    if use_blocks and (index.max() >= blocks.size or index.min() < 0):
        raise InputError(f"test row {int(index.max())} outside the {blocks.size} block ids")
    groups = blocks[index] if use_blocks else None
    if split == "blocked" and blocks is None:
        log.info("blocked split: the dataset carries no block ids, so its test crops are "
                 "resampled one by one (the interval is then too narrow)")
    W = bootstrap_weights(index.size, groups=groups, n_boot=n_boot, seed=seed)
    n_units = int(np.unique(groups).size) if use_blocks else int(index.size)
    reps = {}
    for e in group:
        cols = np.searchsorted(index, e["index"])
        reps[id(e)] = (cols, bootstrap_metrics(e["y"], e["pred"], W[:, cols]))
    att = reps[id(ceil)][1]["R2"] if ceil is not None else None
    rows = []
    for e in group:
        cols, bm = reps[id(e)]
        r = {k: e[k] for k in ("model", "target", "split", "MSE", "MAE", "R2")}
        r.update(n_test=int(e["index"].size), bootstrap_unit="block" if use_blocks else "crop",
                 n_units=n_units, **e["extra"])
        r["R2_ci95_lo"], r["R2_ci95_hi"] = percentile_interval(bm["R2"], confidence)
        r["MAE_ci95_lo"], r["MAE_ci95_hi"] = percentile_interval(bm["MAE"], confidence)
        if "lo" in e:
            cov = bootstrap_coverage(e["y"], e["lo"], e["hi"], W[:, cols])
            r["coverage_ci95_lo"], r["coverage_ci95_hi"] = percentile_interval(cov, confidence)
        if ceil is not None:
            r["R2_attainable"] = ceil["R2"]
            r["R2_attainable_ci95_lo"], r["R2_attainable_ci95_hi"] = percentile_interval(
                att, confidence)
            r["R2_noise_ceiling"], r["R2_oracle"] = ceil["noise_ceiling"], ceil["oracle"]
            r["frac_of_attainable"] = e["R2"] / ceil["R2"] if ceil["R2"] > 0 else np.nan
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = np.where(att > 0, bm["R2"] / att, np.nan)
            r["frac_of_attainable_ci95_lo"], r["frac_of_attainable_ci95_hi"] = \
                percentile_interval(ratio, confidence)
        rows.append(r)
    return rows
