# Mapping: the trained ensemble maps an area it never saw (role `map`); the
# phase statistics of the map beside those of the indentation (Table 1): per
# target in map_area (1D, conditional means), joint in (E, H) and from the
# windows' predictive distributions in map_statistics once every target is mapped.


rule map_area:
    """The seed's out-of-bag test: map an area the model never saw."""
    input:
        calibrated="results/{specimen}/{area}/calibrated.zarr",
        mosaic="results/{specimen}/{area}/mosaic_before.zarr",
        checkpoints=lambda w: member_files(w.specimen, "random", w.target, "best.pt"),
        table="results/{specimen}/stats/table_model_bins.csv",
        indents=lambda w: located_files(w.specimen),
    output:
        grid_coarse="results/{specimen}/maps/{area}/grid_coarse_{target}.npy",
        grid_dense="results/{specimen}/maps/{area}/grid_dense_{target}.npy",
        table1=report(
            "results/{specimen}/maps/{area}/table1_{target}.csv",
            caption="../report/map_table1.rst",
            category="Mapping",
            labels={"specimen": "{specimen}", "area": "{area}", "target": "{target}", "figure": "Table 1"},
        ),
        fig_maps=report(
            "results/{specimen}/figures/map_{area}_{target}.png",
            caption="../report/map_triptych.rst",
            category="Mapping",
            labels={"specimen": "{specimen}", "area": "{area}", "target": "{target}", "figure": "maps"},
        ),
        fig_hist=report(
            "results/{specimen}/figures/map_hist_{area}_{target}.png",
            caption="../report/map_histograms.rst",
            category="Mapping",
            labels={"specimen": "{specimen}", "area": "{area}", "target": "{target}", "figure": "histograms"},
        ),
        meta="results/{specimen}/maps/{area}/meta_{target}.json",
        agreement="results/{specimen}/maps/{area}/dense_agreement_{target}.json",
        windows="results/{specimen}/maps/{area}/windows_{target}.npz",
    params:
        scale=spec_param("dataset", "scale"),
        step_um=spec_param("indentation", "spacing_um", transform=lambda v: v or 10.0),
        dense_step_px=learn_param("map_dense_step_px"),
        dense_max_crops=learn_param("map_dense_max_crops"),
        mode=learn_param("map_mode"),
        check_windows=learn_param("map_check_windows"),
        tile_px=learn_param("map_tile_px"),
        device=learn_param("device"),
        n_components=lambda w: spec_cfg(w.specimen)["stats"]["n_components"]
        or len(_phase_set_of(w.specimen).solid),
        seed=spec_param("stats", "seed"),
    log:
        "results/logs/map_area/{specimen}_{area}_{target}.log",
    benchmark:
        "results/benchmarks/map_area/{specimen}_{area}_{target}.tsv"
    threads: 2
    resources:
        mem_mb=6000,
        runtime=120,
        gpu=gpu_request(learn_param("device")),
    conda:
        "../envs/learning.yaml"
    script:
        "../scripts/map_area.py"


rule map_statistics:
    """Table 1 once every target is mapped: joint (E, H) mixtures, predictive draws, truth."""
    input:
        unpack(map_truth),
        grids_coarse=lambda w: map_files(w, "grid_coarse_{target}.npy"),
        grids_dense=lambda w: map_files(w, "grid_dense_{target}.npy"),
        windows=lambda w: map_files(w, "windows_{target}.npz"),
        summaries=lambda w: [
            f"results/{w.specimen}/learning/random/{t}/summary.json" for t in map_targets(w.specimen)
        ],
        predictions=lambda w: [
            f"results/{w.specimen}/learning/random/{t}/predictions.csv" for t in map_targets(w.specimen)
        ],
        indents=lambda w: located_files(w.specimen),
    output:
        table1=report(
            "results/{specimen}/maps/{area}/table1.csv",
            caption="../report/map_statistics.rst",
            category="Mapping",
            labels={"specimen": "{specimen}", "area": "{area}", "target": "E-H", "figure": "Table 1 (joint, predictive)"},
        ),
        summary="results/{specimen}/maps/{area}/table1.json",
        figure=report(
            "results/{specimen}/figures/map_fractions_{area}.png",
            caption="../report/map_fractions.rst",
            category="Mapping",
            labels={"specimen": "{specimen}", "area": "{area}", "target": "E-H", "figure": "phase fractions"},
        ),
    params:
        targets=lambda w: map_targets(w.specimen),
        draws=learn_param("map_draws"),
        draws_method=learn_param("map_draws_method"),
        neighbours=learn_param("map_neighbours"),
        max_values=learn_param("map_max_values"),
        n_components=lambda w: spec_cfg(w.specimen)["stats"]["n_components"]
        or len(_phase_set_of(w.specimen).solid),
        seed=spec_param("stats", "seed"),
    log:
        "results/logs/map_statistics/{specimen}_{area}.log",
    threads: 1
    resources:
        mem_mb=3000,
        runtime=20,
    conda:
        "../envs/learning.yaml"
    script:
        "../scripts/map_statistics.py"
