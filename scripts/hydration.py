"""Rule hydration: degree of hydration alpha and the LD-C-S-H ratio Mr of a cement paste.

Planned only for a specimen whose phase set has cement hydration
(``phases: cement``, the default), from the mixture fractions of
``deconvolve`` by the seed paper's eqs. 9 and 10
(:func:`microprop.stats.hydration`).

snakemake.input.gmm_E, gmm_H : CSV
    The E and H tables of ``deconvolve`` (``area, component, phase,
    fraction, ...``; a ``pooled`` block and one per area).
snakemake.params.w_c : float
    Water/cement mass ratio of the paste.
snakemake.output.hydration : JSON
    alpha and Mr from the pooled E fractions, the same from the H fractions
    (``from_H_GPa``) and per area (``per_area``), the pooled fractions and
    the equations used.
"""
import logging

from microprop.workflow import setup_script

log = logging.getLogger("microprop.hydration")


def main(snakemake):
    """Degree of hydration from the deconvolved fractions; write the JSON."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    from microprop import io, stats

    tables = {q: io.read_table(getattr(snakemake.input, f"gmm_{q[0]}"),
                               ["area", "phase", "fraction"], what=f"GMM table of {q}")
              for q in ("E_GPa", "H_GPa")}
    hyd = stats.hydration_by_area(tables["E_GPa"], tables["H_GPa"], float(snakemake.params.w_c))
    io.write_json(hyd, snakemake.output.hydration)
    log.info("alpha = %s, Mr_model = %s, Mr_measured = %s", hyd["alpha"], hyd["Mr_model"],
             hyd["Mr_measured"])


if __name__ == "__main__":
    main(setup_script(globals()))
