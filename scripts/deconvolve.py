"""Rule deconvolve: GMM deconvolution of E and H, BIC table, phase names from the study's phase set.

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
snakemake.params.phases : str or dict, optional
    The study's phase set (:func:`microprop.phases.phase_set`): a preset name
    (default ``cement``) or its own phases; its solid phases name the
    components by their literature means.
snakemake.params.n_components : int or None
    Gaussian components of the mixture (None: one per solid phase of the
    phase set, 4 for cement: LD-C-S-H, HD-C-S-H, CH, ACC).
snakemake.params.k_max : int
    Largest number of components in the BIC table (k = 1..k_max; default 8).
snakemake.params.seed : int
    Random state of the EM starts (default 0).
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
    ``k, bic, aic, best`` of the model the tables come from: the pooled
    (E, H) pairs for the joint method, the pooled E values for ``separate``.
snakemake.output.fig_hist_E, snakemake.output.fig_hist_H : PNG
    Histograms with the fitted components.
snakemake.output.fig_bic : PNG
    BIC/AIC against k, with the k used marked.

The degree of hydration is the separate rule ``hydration``
(``scripts/hydration.py``), planned only for a phase set with hydration.
"""
import logging

from microprop.workflow import setup_script

log = logging.getLogger("microprop.deconvolve")
QUANTITIES = ("E_GPa", "H_GPa")


def main(snakemake):
    """Deconvolve E and H of the located indents; write the tables, hydration and figures."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    from microprop import io, plots, stats

    from microprop.phases import phase_set

    p = snakemake.params
    phases = phase_set(p.get("phases"), where="phases")
    n_components = p.get("n_components")
    why = "one per solid phase" if n_components is None else "stats.n_components"
    n_components = len(phases.solid) if n_components is None else int(n_components)
    k_max = max(int(p.get("k_max", 8)), n_components)
    seed = int(p.get("seed", 0))
    n_init = int(p.get("n_init", 10))
    joint = str(p.get("method", "joint")) == "joint"
    log.info("phase set %s: components named by %s", phases.name, list(phases.solid))

    data = io.read_located(snakemake.input.located, p.get("areas"),
                           required=("batch", "indent") + QUANTITIES)
    log.info("%d indents from %d file(s), areas %s", len(data), data["source"].nunique(),
             sorted(data["area"].unique()))

    tables = {q: stats.gmm_tables(data, q, n_components, seed, n_init, joint=joint, phases=phases)
              for q in QUANTITIES}
    # the information criteria of the model the tables come from
    bic_data = data[list(QUANTITIES)].to_numpy() if joint else data["E_GPa"]
    model = "joint (E, H) mixture" if joint else "mixture of E"
    bic = stats.bic_table(bic_data, k_range=range(1, k_max + 1), seed=seed, what=f"pooled {model}")
    bic["model"] = model
    bic["k_used"] = n_components

    o = snakemake.output
    io.write_table(tables["E_GPa"], o.gmm_E)
    io.write_table(tables["H_GPa"], o.gmm_H)
    if o.get("gmm_E_only"):
        e_only = (tables["E_GPa"] if not joint
                  else stats.gmm_tables(data, "E_GPa", n_components, seed, n_init, phases=phases))
        io.write_table(e_only, o.gmm_E_only)
    io.write_table(bic, o.bic_E)
    for q, out in (("E_GPa", o.fig_hist_E), ("H_GPa", o.fig_hist_H)):
        pooled = tables[q][tables[q]["area"] == "pooled"]
        plots.save_png(plots.histogram_components(data[q], pooled, quantity=q), out)
    plots.save_png(plots.bic_plot(bic, k_used=n_components, model=model, k_used_why=why), o.fig_bic)
    best = int(bic.loc[bic["best"], "k"].iloc[0])
    if best != n_components:
        log.info("the BIC of the %s is lowest at k = %d; the deconvolution uses k = %d (one "
                 "component per solid phase of %s)", model, best, n_components, phases.name)

if __name__ == "__main__":
    main(setup_script(globals()))
