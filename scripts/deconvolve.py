"""Rule deconvolve: GMM deconvolution of E and H, BIC table, hydration degree.

Inputs
------
snakemake.input.located : list of str
    The located-indent CSVs of all batches of one specimen,
    ``results/{specimen}/{area}/located/{batch}.csv``; columns used:
    ``batch, indent, E_GPa, H_GPa`` (others are carried along unused).

Params
------
snakemake.params.areas : list of str, optional
    Area of each input file, same order as ``input.located``; when absent the
    area is read from the path (the folder above ``located/``).
snakemake.params.n_components : int
    Gaussian components of the mixture (default 4: LD-C-S-H, HD-C-S-H, CH, ACC).
snakemake.params.k_max : int
    Largest number of components in the BIC table (k = 1..k_max; default 8).
snakemake.params.seed : int
    Random state of the EM starts (default 0).
snakemake.params.w_c : float
    Water/cement mass ratio of the paste (for the degree of hydration).
snakemake.params.n_init : int, optional
    EM restarts per start kind (default 10).
snakemake.params.method : {"joint", "separate"}, optional
    ``joint`` (default): one bivariate mixture of (E, H) pairs
    (:func:`microprop.stats.deconvolve_joint`), whose E and H marginals are
    written to ``gmm_E`` and ``gmm_H`` (same phases and fractions in both);
    ``separate``: independent 1D mixtures of E and of H.

Outputs
-------
snakemake.output.gmm_E : CSV
    ``area, component, phase, fraction, mean, std, n`` for E (GPa); one block
    with ``area = "pooled"`` (all areas) and one per area (areas with too few
    indents for the mixture are left out with a warning).
snakemake.output.gmm_H : CSV
    Same for H (GPa).
snakemake.output.gmm_E_only : CSV, optional
    The 1D mixture of the E histogram alone (the seed paper's approach), for
    comparison with the joint fit.
snakemake.output.bic_E : CSV
    ``k, bic, aic, best`` of the pooled E values.
snakemake.output.hydration : JSON
    Degree of hydration alpha and the LD/(LD+HD) ratio Mr
    (:func:`microprop.stats.hydration`) from the pooled E fractions, plus the
    same from the H fractions (``from_H_GPa``) and per area (``per_area``).
snakemake.output.fig_hist_E, snakemake.output.fig_hist_H : PNG
    Histograms with the fitted components.
snakemake.output.fig_bic : PNG
    BIC/AIC against k.
"""
from pathlib import Path

from microprop.workflow import setup_script

snakemake = setup_script(globals())

import logging  # noqa: E402

import pandas as pd  # noqa: E402
from microprop import (
    io,  # noqa: E402
    plots,  # noqa: E402
    stats,  # noqa: E402
)
from microprop.errors import InputError  # noqa: E402

log = logging.getLogger("microprop.deconvolve")
QUANTITIES = ("E_GPa", "H_GPa")


def read_located(files, areas):
    """Concatenate the located tables, with an ``area`` and ``source`` column."""
    files = [str(f) for f in files]
    if not files:
        raise InputError("deconvolve: no located-indent files given (input.located is empty)")
    if areas is not None and len(areas) != len(files):
        raise InputError(f"deconvolve: params.areas has {len(areas)} entries for "
                         f"{len(files)} located files; expected one area per file")
    frames = []
    for i, f in enumerate(files):
        df = io.read_table(f, required=("batch", "indent") + QUANTITIES, what="located indents")
        df["area"] = str(areas[i]) if areas is not None else Path(f).parent.parent.name
        df["source"] = f
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def gmm_tables(data, quantity, n_components, seed, n_init, joint=False):
    """Pooled and per-area GMM tables of one quantity, stacked with an area column.

    With ``joint`` the table is the ``quantity`` marginal of the (E, H) mixture.
    """
    blocks = []
    groups = [("pooled", data)] + list(data.groupby("area", sort=True))
    for area, part in groups:
        try:
            if joint:
                t = stats.marginal(stats.deconvolve_joint(
                    part["E_GPa"], part["H_GPa"], n_components=n_components, seed=seed,
                    n_init=n_init, what=f"(E, H) of area {area!r}"), quantity)
            else:
                t = stats.deconvolve(part[quantity], n_components=n_components, seed=seed,
                                     n_init=n_init, quantity=quantity,
                                     what=f"{quantity} of area {area!r}")
        except InputError as exc:
            if area == "pooled":
                raise
            log.warning("skipping the per-area mixture: %s", exc)
            continue
        t.insert(0, "area", area)
        t["n"] = t.attrs["n"]
        t["method"] = "joint E-H" if joint else f"{quantity} only"
        blocks.append(t)
    return pd.concat(blocks, ignore_index=True)


def fractions_of(table, area="pooled"):
    """Phase -> summed fraction of the named components of one area (extras left out)."""
    t = table[(table["area"] == area) & ~table["phase"].str.startswith("extra")]
    return t.groupby("phase")["fraction"].sum().to_dict()


def hydration_or_note(fractions, w_c):
    try:
        return stats.hydration(fractions, w_c)
    except InputError as exc:
        log.warning("no degree of hydration: %s", exc)
        return {"alpha": None, "Mr_model": None, "Mr_measured": None, "notes": [str(exc)]}


p = snakemake.params
n_components = int(p.get("n_components", 4))
k_max = int(p.get("k_max", 8))
seed = int(p.get("seed", 0))
n_init = int(p.get("n_init", 10))
w_c = float(p.w_c)
joint = str(p.get("method", "joint")) == "joint"

data = read_located(snakemake.input.located, p.get("areas"))
log.info("%d indents from %d file(s), areas %s", len(data), data["source"].nunique(),
         sorted(data["area"].unique()))

tables = {q: gmm_tables(data, q, n_components, seed, n_init, joint=joint) for q in QUANTITIES}
bic = stats.bic_table(data["E_GPa"], k_range=range(1, k_max + 1), seed=seed,
                      what="pooled E_GPa")

hyd = hydration_or_note(fractions_of(tables["E_GPa"]), w_c)
hyd["from_H_GPa"] = hydration_or_note(fractions_of(tables["H_GPa"]), w_c)
hyd["per_area"] = {a: hydration_or_note(fractions_of(tables["E_GPa"], a), w_c)
                   for a in tables["E_GPa"]["area"].unique() if a != "pooled"}
hyd["fractions_E"] = fractions_of(tables["E_GPa"])
hyd["bic_best_k"] = int(bic.loc[bic["best"], "k"].iloc[0])
hyd["n_components"] = n_components
hyd["n_indents"] = int(len(data))

o = snakemake.output
io.write_table(tables["E_GPa"], o.gmm_E)
io.write_table(tables["H_GPa"], o.gmm_H)
if o.get("gmm_E_only"):
    e_only = tables["E_GPa"] if not joint else gmm_tables(data, "E_GPa", n_components, seed, n_init)
    io.write_table(e_only, o.gmm_E_only)
io.write_table(bic, o.bic_E)
io.write_json(hyd, o.hydration)
for q, out in (("E_GPa", o.fig_hist_E), ("H_GPa", o.fig_hist_H)):
    pooled = tables[q][tables[q]["area"] == "pooled"]
    plots.save_png(plots.histogram_components(data[q], pooled, quantity=q), out)
plots.save_png(plots.bic_plot(bic), o.fig_bic)
log.info("alpha = %s, Mr_model = %s, Mr_measured = %s", hyd["alpha"], hyd["Mr_model"],
         hyd["Mr_measured"])
