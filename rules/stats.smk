# Statistics and first figures: GMM deconvolution of E and H (components named
# by the study's phase set), hydration degree (cement only), the seed's table model and a linear model, overview figures.


rule deconvolve:
    input:
        located=lambda w: stats_inputs(w.specimen),
    output:
        gmm_E="results/{specimen}/stats/gmm_E_GPa.csv",
        gmm_H="results/{specimen}/stats/gmm_H_GPa.csv",
        gmm_E_only="results/{specimen}/stats/gmm_E_GPa_only.csv",
        bic_E="results/{specimen}/stats/bic_E_GPa.csv",
        fig_hist_E=report(
            "results/{specimen}/figures/hist_E.png",
            caption="../report/hist_E.rst",
            category="Phase deconvolution",
            labels={"specimen": "{specimen}", "figure": "E histogram"},
        ),
        fig_hist_H=report(
            "results/{specimen}/figures/hist_H.png",
            caption="../report/hist_H.rst",
            category="Phase deconvolution",
            labels={"specimen": "{specimen}", "figure": "H histogram"},
        ),
        fig_bic=report(
            "results/{specimen}/figures/bic_E.png",
            caption="../report/bic.rst",
            category="Phase deconvolution",
            labels={"specimen": "{specimen}", "figure": "BIC"},
        ),
    params:
        areas=lambda w: stats_areas(w.specimen),
        n_components=spec_param("stats", "n_components"),
        method=spec_param("stats", "method"),
        k_max=spec_param("stats", "k_max"),
        seed=spec_param("stats", "seed"),
        phases=spec_param("phases"),
    log:
        "results/logs/deconvolve/{specimen}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/deconvolve.py"


rule deconvolution_stability:
    """Each phase's fraction, mean and sd against the number of indents (random subsamples)."""
    input:
        located=lambda w: stats_inputs(w.specimen),
    output:
        table="results/{specimen}/stats/deconvolution_stability.csv",
        fig=report(
            "results/{specimen}/figures/deconvolution_stability.png",
            caption="../report/deconvolution_stability.rst",
            category="Phase deconvolution",
            labels={"specimen": "{specimen}", "figure": "stability against N"},
        ),
    params:
        areas=lambda w: stats_areas(w.specimen),
        n_components=spec_param("stats", "n_components"),
        method=spec_param("stats", "method"),
        seed=spec_param("stats", "seed"),
        n_boot=spec_param("stats", "stability_boot", default=30),
        sizes=spec_param("stats", "stability_sizes", default=None),
        phases=spec_param("phases"),
    log:
        "results/logs/deconvolution_stability/{specimen}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/deconvolution_stability.py"


rule hydration:
    """Degree of hydration and Mr (seed paper eqs. 9-10): phase sets with cement hydration only."""
    input:
        gmm_E="results/{specimen}/stats/gmm_E_GPa.csv",
        gmm_H="results/{specimen}/stats/gmm_H_GPa.csv",
    output:
        hydration="results/{specimen}/stats/hydration.json",
    params:
        w_c=spec_param("w_c"),
    log:
        "results/logs/hydration/{specimen}.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/hydration.py"


rule baselines:
    input:
        dataset="results/{specimen}/dataset.h5",
    output:
        table="results/{specimen}/stats/baselines.csv",
        fig_table_model=report(
            "results/{specimen}/figures/table_model_E.png",
            caption="../report/table_model_E.rst",
            category="Baselines",
            labels={"specimen": "{specimen}", "target": "E"},
        ),
        fig_table_model_H=report(
            "results/{specimen}/figures/table_model_H.png",
            caption="../report/table_model_H.rst",
            category="Baselines",
            labels={"specimen": "{specimen}", "target": "H"},
        ),
        bins="results/{specimen}/stats/table_model_bins.csv",
    params:
        n_bins=spec_param("stats", "n_bins"),
        seed=spec_param("stats", "seed"),
    log:
        "results/logs/baselines/{specimen}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/baselines.py"


rule figures_overview:
    input:
        mosaic="results/{specimen}/{area}/mosaic_before.zarr",
        located=lambda w: located_files(w.specimen, w.area),
    output:
        overview=report(
            "results/{specimen}/figures/overview_{area}.png",
            caption="../report/overview.rst",
            category="Overview",
            labels={"specimen": "{specimen}", "area": "{area}", "figure": "BSE with indents"},
        ),
        modulus_map=report(
            "results/{specimen}/figures/modulus_map_{area}.png",
            caption="../report/modulus_map.rst",
            category="Overview",
            labels={"specimen": "{specimen}", "area": "{area}", "figure": "modulus map"},
        ),
    params:
        spacing_um=spec_param("indentation", "spacing_um"),
    log:
        "results/logs/figures_overview/{specimen}_{area}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/figures_overview.py"
