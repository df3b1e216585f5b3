"""Rule deconvolution_stability: each phase's fraction, mean and sd against the number of indents.

Inputs
------
snakemake.input.located : list of str
    The indent tables the rule ``deconvolve`` pools (columns used:
    ``batch, indent, E_GPa, H_GPa``).

Params
------
snakemake.params.areas : list of str, optional
    Area of each input file (as for ``deconvolve``).
snakemake.params.phases : str or dict, optional
    The study's phase set; its solid phases name the components.
snakemake.params.n_components : int or None
    Gaussian components (None: one per solid phase).
snakemake.params.method : {"joint", "separate"}, optional
    ``joint`` (default): subsample the bivariate (E, H) mixture the tables
    come from; ``separate``: the 1D mixture of E.
snakemake.params.seed : int
    Random state of the subsamples and of the fits.
snakemake.params.n_init : int, optional
    EM starts per kind of each fit (default 10, as ``deconvolve``).
snakemake.params.n_boot : int
    Random subsamples (of distinct indents) per size (default 30).
snakemake.params.sizes : list of int or None
    Subsample sizes (None: 100, 200, 500, 1000, ... below half the number
    of indents, then that half).

Outputs
-------
snakemake.output.table : CSV
    :func:`microprop.stats.deconvolution_stability`: ``size, phase,
    statistic, unit, full, median, low, high, n_fits`` (95 % intervals).
snakemake.output.fig : PNG
    :func:`microprop.plots.stability_plot`.
"""
import logging

from microprop.workflow import setup_script

log = logging.getLogger("microprop.deconvolution_stability")
QUANTITIES = ("E_GPa", "H_GPa")


def main(snakemake):
    """Deconvolve random subsamples of growing size; write the table and figure."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    from microprop import io, plots, stats
    from microprop.phases import phase_set

    p = snakemake.params
    phases = phase_set(p.get("phases"), where="phases")
    n_components = p.get("n_components")
    n_components = len(phases.solid) if n_components is None else int(n_components)
    joint = str(p.get("method", "joint")) == "joint"
    data = io.read_located(snakemake.input.located, p.get("areas"),
                           required=("batch", "indent") + QUANTITIES)
    values = data[list(QUANTITIES)].to_numpy() if joint else data["E_GPa"].to_numpy()
    summary = stats.deconvolution_stability(
        values, sizes=p.get("sizes"), n_boot=int(p.get("n_boot", 30)), seed=int(p.get("seed", 0)),
        n_components=n_components, n_init=int(p.get("n_init", 10)),
        reference=phases.means("E_GPa"), quantity="E_GPa", what="pooled indents")
    io.write_table(summary, snakemake.output.table)
    need = stats.stable_size(summary, "fraction", 0.05)
    model = "joint (E, H) mixture" if joint else "mixture of E"
    log.info("%s of %d indents: every phase's fraction within +-0.05 of all indents' "
             "(%d %% interval of the subsamples) %s", model, summary.attrs["n"],
             round(100 * summary.attrs["level"]),
             f"from {need} indents on" if need else "at no size tried")
    title = (f"Deconvolution ({model}, k = {n_components}) against the number of indents: "
             f"{summary.attrs['n_boot']} random subsamples per size")
    plots.save_png(plots.stability_plot(summary, title=title), snakemake.output.fig)


if __name__ == "__main__":
    main(setup_script(globals()))
