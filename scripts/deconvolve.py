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
import logging

from microprop.workflow import setup_script

log = logging.getLogger("microprop.deconvolve")
QUANTITIES = ("E_GPa", "H_GPa")


def main(snakemake):
    """Deconvolve E and H of the located indents; write the tables, hydration and figures."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    from microprop import io, plots, stats

    p = snakemake.params
    n_components = int(p.get("n_components", 4))
    k_max = int(p.get("k_max", 8))
    seed = int(p.get("seed", 0))
    n_init = int(p.get("n_init", 10))
    w_c = float(p.w_c)
    joint = str(p.get("method", "joint")) == "joint"

    data = io.read_located(snakemake.input.located, p.get("areas"),
                           required=("batch", "indent") + QUANTITIES)
    log.info("%d indents from %d file(s), areas %s", len(data), data["source"].nunique(),
             sorted(data["area"].unique()))

    tables = {q: stats.gmm_tables(data, q, n_components, seed, n_init, joint=joint)
              for q in QUANTITIES}
    bic = stats.bic_table(data["E_GPa"], k_range=range(1, k_max + 1), seed=seed,
                          what="pooled E_GPa")

    hyd = stats.hydration_by_area(tables["E_GPa"], tables["H_GPa"], w_c)
    hyd["bic_best_k"] = int(bic.loc[bic["best"], "k"].iloc[0])
    hyd["n_components"] = n_components
    hyd["n_indents"] = int(len(data))

    o = snakemake.output
    io.write_table(tables["E_GPa"], o.gmm_E)
    io.write_table(tables["H_GPa"], o.gmm_H)
    if o.get("gmm_E_only"):
        e_only = (tables["E_GPa"] if not joint
                  else stats.gmm_tables(data, "E_GPa", n_components, seed, n_init))
        io.write_table(e_only, o.gmm_E_only)
    io.write_table(bic, o.bic_E)
    io.write_json(hyd, o.hydration)
    for q, out in (("E_GPa", o.fig_hist_E), ("H_GPa", o.fig_hist_H)):
        pooled = tables[q][tables[q]["area"] == "pooled"]
        plots.save_png(plots.histogram_components(data[q], pooled, quantity=q), out)
    plots.save_png(plots.bic_plot(bic), o.fig_bic)
    log.info("alpha = %s, Mr_model = %s, Mr_measured = %s", hyd["alpha"], hyd["Mr_model"],
             hyd["Mr_measured"])


if __name__ == "__main__":
    main(setup_script(globals()))
