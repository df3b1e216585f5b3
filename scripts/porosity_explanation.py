"""Rule porosity_explanation: one table of what explains the classifier, per class, with the test of each difference.

snakemake.input.regions : ``regions.csv`` of rule porosity_relevance (per test map)
snakemake.input.lengths : ``lengths.csv`` of rule porosity_correlation (per map and part)
snakemake.input.patterns : ``summary.json`` of rule porosity_patterns
snakemake.params.alpha : significance level of the tests (0.05)
snakemake.output.table : CSV, one row per quantity and class: ``quantity, unit, class, n,
    mean, sd, test, statistic, p_value, classes_differ`` (the test's columns are the same on
    every row of a quantity; ``classes_differ``: p below ``alpha``)
"""
import logging

from microprop.workflow import setup_script

log = logging.getLogger("microprop.porosity_explanation")

QUANTITIES = (
    # (name, unit, source, column, filter part, scale factor)
    ("characteristic region: share of the map", "%", "regions", "area_fraction", None, 100.0),
    ("positive relevance on high-porosity pixels", "%", "regions", "relevance_on_high_porosity", None, 100.0),
    ("relevance conserved: sum over the map / explained logit", "-", "regions", "conserved_fraction", None, 1.0),
    ("correlation length: whole maps", "um", "lengths", "correlation_length_um", "whole", 1.0),
    ("correlation length: characteristic regions", "um", "lengths", "correlation_length_um", "region", 1.0),
    ("characteristic length: whole maps", "um", "lengths", "characteristic_length_um", "whole", 1.0),
    ("characteristic length: characteristic regions", "um", "lengths", "characteristic_length_um", "region", 1.0),
)


def explanation_table(regions, lengths, patterns, classes, alpha=0.05):
    """Per-class mean, sd and n of each quantity, and the Kruskal-Wallis test across classes.

    Parameters
    ----------
    regions, lengths : pandas.DataFrame
        The relevance rule's ``regions.csv`` (column ``true``) and the
        correlation rule's ``lengths.csv`` (columns ``class``, ``part``).
    patterns : dict
        The pattern rule's summary (``classes -> {groups: [{shared_fraction}]}``).
    classes : sequence of str
    alpha : float

    Returns
    -------
    pandas.DataFrame
    """
    import numpy as np
    import pandas as pd
    from scipy import stats as sps

    rows = []

    def add(name, unit, groups):
        test = stat = p = None
        if all(len(g) > 1 for g in groups) and len({float(v) for g in groups for v in g}) > 1:
            stat, p = (float(v) for v in sps.kruskal(*groups))
            test = "Kruskal-Wallis H (scipy.stats.kruskal)"
        for c, g in zip(classes, groups):
            rows.append({"quantity": name, "unit": unit, "class": c, "n": len(g),
                         "mean": round(float(np.mean(g)), 4) if len(g) else float("nan"),
                         "sd": round(float(np.std(g, ddof=1)), 4) if len(g) > 1 else float("nan"),
                         "test": test or "none (fewer than 2 values in a class)",
                         "statistic": None if stat is None else round(stat, 3),
                         "p_value": p, "classes_differ": None if p is None else bool(p < alpha)})

    for name, unit, src, col, part, k in QUANTITIES:
        t = regions if src == "regions" else lengths[lengths["part"] == part]
        key = "true" if src == "regions" else "class"
        add(name, unit, [k * t.loc[t[key] == c, col].dropna().to_numpy(float) for c in classes])
    add("shared-pattern area: per group", "%",
        [100 * np.asarray([g["shared_fraction"] for g in (patterns["classes"].get(c) or {}).get("groups", [])], float)
         for c in classes])
    return pd.DataFrame(rows)


def main(snakemake):
    """Read the three rules' outputs, tabulate, log the differences."""
    import json

    import pandas as pd
    from microprop import io as mio

    regions = pd.read_csv(snakemake.input.regions)
    lengths = pd.read_csv(snakemake.input.lengths)
    with open(snakemake.input.patterns) as f:
        patterns = json.load(f)
    classes = list(patterns["classes"])
    table = explanation_table(regions, lengths, patterns, classes, float(snakemake.params.get("alpha", 0.05)))
    mio.write_table(table, snakemake.output.table)
    for q, t in table.groupby("quantity", sort=False):
        log.info("%s (%s): %s; %s p = %s", q, t["unit"].iloc[0],
                 ", ".join(f"{r['class']} {r['mean']:.3g} +- {r['sd']:.2g} (n {r['n']})" for _, r in t.iterrows()),
                 t["test"].iloc[0], t["p_value"].iloc[0])


if __name__ == "__main__":
    main(setup_script(globals()))
