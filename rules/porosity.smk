# The second study: equivalent-porosity maps of specimen classes (metal
# intrusion, graphene-oxide cement). Switched on by `porosity_studies:` in the
# config; each study's classes are generated (`virtual:`) or given as images.
# Monte Carlo eta(n) at the study's beam energy -> (virtual classes) -> BSE
# image per class -> calibrated MulF/MicF -> local maps (maps.h5) ->
# statistical baseline (nearest class mean, ANOVA, Tukey-Kramer).


rule porosity_backscatter:
    """Monte Carlo eta(n) of C-S-H/Field's metal at the study's beam energy."""
    output:
        eta_table="results/{study}/backscatter/eta_table.csv",
        eta_meta="results/{study}/backscatter/eta_table.json",
        phase_eta="results/{study}/backscatter/phase_eta.csv",
    params:
        beam_energy_keV=por_param("beam_energy_keV"),
        n_electrons=config["backscatter"]["n_electrons"],
        n_points=config["backscatter"]["n_points"],
        seed=config["backscatter"]["seed"],
        cross_section=config["backscatter"]["cross_section"],
    log:
        "results/logs/porosity_backscatter/{study}.log",
    threads: 2
    resources:
        mem_mb=1000,
        runtime=20,
    conda:
        "../envs/physics.yaml"
    script:
        "../scripts/simulate_backscatter.py"


rule porosity_specimen:
    """One class of the virtual metal-intruded specimens: BSE image and truth."""
    input:
        eta_table="results/{study}/backscatter/eta_table.csv",
    output:
        image="resources/{study}/{cls}/bse.tif",
        truth=directory("resources/truth/{study}/{cls}"),
    params:
        cls="{cls}",
        pixel_size_nm=por_param("pixel_size_nm"),
        map_size_px=por_param("maps", "size_px"),
        maps_per_class=por_param("virtual", "maps_per_class"),
        parameters=lambda w: (por_cfg(w.study)["virtual"].get("classes") or {}).get(w.cls) or {},
        seed=por_param("virtual", "seed"),
        electrons_per_px=por_param("virtual", "electrons_per_px"),
    log:
        "results/logs/porosity_specimen/{study}_{cls}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../envs/imaging.yaml"
    script:
        "../scripts/porosity_specimen.py"


rule porosity_calibrate:
    """A class's BSE image -> equivalent porosity MulF and MicF (eta(n) inverted)."""
    input:
        mosaic=por_image,
        phase_eta="results/{study}/backscatter/phase_eta.csv",
        eta_table="results/{study}/backscatter/eta_table.csv",
    output:
        calibrated=directory("results/{study}/classes/{cls}/calibrated.zarr"),
        hist=report(
            "results/{study}/figures/porosity_calibration_{cls}.png",
            caption="../report/porosity_calibration.rst",
            category="Porosity maps",
            labels={"study": "{study}", "class": "{cls}"},
        ),
    params:
        mode="porosity",
        mode_method="peaks",
        pixel_size_nm=por_param("pixel_size_nm"),
        region_px=lambda w: por_region(w.study, w.cls),
        reference_phases=["n=0", "n=1"],
        reference_greys=por_param("calibration", "reference_greys"),
        clinker_grey_window=por_param("calibration", "clinker_grey_window"),
        micf_sigma_px=por_param("calibration", "micf_sigma_px"),
        chunk=config["stitching"]["chunk_px"],
    log:
        "results/logs/porosity_calibrate/{study}_{cls}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../envs/imaging.yaml"
    script:
        "../scripts/calibrate.py"


rule porosity_maps:
    """Local MulF and MicF maps of every class, with their descriptors and splits."""
    input:
        calibrated=lambda w: [f"results/{w.study}/classes/{c}/calibrated.zarr" for c in por_classes(w.study)],
    output:
        maps="results/{study}/maps.h5",
    params:
        classes=lambda w: por_classes(w.study),
        pixel_size_nm=por_param("pixel_size_nm"),
        map_size_px=por_param("maps", "size_px"),
        input_px=por_param("maps", "input_px"),
        n_train=por_param("maps", "n_train"),
        train_fraction=por_param("maps", "train_fraction"),
        val_fraction=por_param("maps", "val_fraction"),
        max_maps=por_param("maps", "max_maps"),
        seed=por_param("maps", "seed"),
        pore_threshold=por_param("maps", "pore_threshold"),
    log:
        "results/logs/porosity_maps/{study}.log",
    threads: 1
    resources:
        mem_mb=8000,
        runtime=20,
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/porosity_maps.py"


rule porosity_baseline:
    """Nearest class mean, one-way ANOVA and Tukey-Kramer on porosity and average pore size."""
    input:
        maps="results/{study}/maps.h5",
    output:
        summary="results/{study}/baseline/summary.json",
        tukey="results/{study}/baseline/tukey_kramer.csv",
        figure=report(
            "results/{study}/figures/baseline_scatter.png",
            caption="../report/porosity_baseline.rst",
            category="Porosity maps",
            labels={"study": "{study}", "figure": "baseline"},
        ),
    params:
        alpha=por_param("baseline", "alpha", default=0.10),
    log:
        "results/logs/porosity_baseline/{study}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/porosity_baseline.py"


rule porosity_train:
    """The study's DCNN (seven conv + BN + ReLU layers) on one scale of the local maps."""
    input:
        maps="results/{study}/maps.h5",
    output:
        best="results/{study}/classifier/{scale}/best.pt",
        last="results/{study}/classifier/{scale}/last.pt",
        metrics="results/{study}/classifier/{scale}/metrics.csv",
        summary="results/{study}/classifier/{scale}/train.json",
    params:
        scale="{scale}",
        work_dir="results/{study}/classifier/{scale}/work",
        split=por_param("classifier", "split"),
        epochs=por_param("classifier", "epochs"),
        batch_size=por_param("classifier", "batch_size"),
        lr=por_param("classifier", "lr"),
        input_px=por_param("classifier", "input_px"),
        augment=por_param("classifier", "augment"),
        device=por_param("classifier", "device"),
        bf16=por_param("classifier", "bf16"),
        compile=por_param("classifier", "compile"),
        resident_uint8=por_param("classifier", "resident_uint8"),
        seed=por_param("classifier", "seed"),
        patience=por_param("classifier", "patience"),
        factor=por_param("classifier", "factor"),
        arch_kwargs=por_param("classifier", "arch_kwargs"),
        cpu=por_param("classifier", "cpu"),
    log:
        "results/logs/porosity_train/{study}_{scale}.log",
    benchmark:
        "results/benchmarks/porosity_train/{study}_{scale}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=gpu_request(por_param("classifier", "device")),
    conda:
        "../envs/learning.yaml"
    script:
        "../scripts/porosity_train.py"


rule porosity_evaluate:
    """The trained classifier of one scale on the test maps: predictions, accuracy, confusion."""
    input:
        model="results/{study}/classifier/{scale}/best.pt",
        maps="results/{study}/maps.h5",
    output:
        predictions="results/{study}/classifier/{scale}/predictions.csv",
        metrics="results/{study}/classifier/{scale}/metrics.json",
    params:
        split=por_param("classifier", "split"),
        device=por_param("classifier", "device"),
    log:
        "results/logs/porosity_evaluate/{study}_{scale}.log",
    threads: 2
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../envs/learning.yaml"
    script:
        "../scripts/porosity_evaluate.py"


rule porosity_summary:
    """Baseline and DCNN accuracies side by side; confusion matrices, training curves, examples."""
    input:
        baseline="results/{study}/baseline/summary.json",
        metrics=lambda w: [f"results/{w.study}/classifier/{s}/metrics.json" for s in por_scales(w.study)],
        histories=lambda w: [f"results/{w.study}/classifier/{s}/metrics.csv" for s in por_scales(w.study)],
        predictions=lambda w: [f"results/{w.study}/classifier/{s}/predictions.csv" for s in por_scales(w.study)],
        maps="results/{study}/maps.h5",
    output:
        table="results/{study}/summary.csv",
        summary="results/{study}/summary.json",
        confusion=report(
            "results/{study}/figures/classifier_confusion.png",
            caption="../report/porosity_confusion.rst",
            category="Porosity maps",
            labels={"study": "{study}", "figure": "confusion matrices"},
        ),
        history=report(
            "results/{study}/figures/classifier_training.png",
            caption="../report/porosity_training.rst",
            category="Porosity maps",
            labels={"study": "{study}", "figure": "classifier training"},
        ),
        examples=report(
            "results/{study}/figures/classifier_examples.png",
            caption="../report/porosity_examples.rst",
            category="Porosity maps",
            labels={"study": "{study}", "figure": "test maps"},
        ),
    params:
        scales=lambda w: por_scales(w.study),
    log:
        "results/logs/porosity_summary/{study}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/porosity_summary.py"


rule porosity_relevance:
    """Deep Taylor relevance of the test maps (zennit), characteristic regions and boundaries."""
    input:
        model="results/{study}/classifier/{scale}/best.pt",
        maps="results/{study}/maps.h5",
    output:
        relevance="results/{study}/relevance/{scale}/relevance.h5",
        table="results/{study}/relevance/{scale}/regions.csv",
        figure=report(
            "results/{study}/figures/relevance_{scale}.png",
            caption="../report/porosity_relevance.rst",
            category="Porosity maps",
            labels={"study": "{study}", "figure": "relevance {scale}"},
        ),
    params:
        split=por_param("classifier", "split"),
        device=por_param("classifier", "device"),
        share=por_param("relevance", "share"),
        boundary_quantile=por_param("relevance", "boundary_quantile"),
    log:
        "results/logs/porosity_relevance/{study}_{scale}.log",
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/learning.yaml"
    script:
        "../scripts/porosity_relevance.py"


rule porosity_correlation:
    """Two-point correlation S2(r, delta n) of the test maps and their characteristic regions, per class."""
    input:
        maps="results/{study}/maps.h5",
        relevance="results/{study}/relevance/{scale}/relevance.h5",
    output:
        s2="results/{study}/correlation/{scale}/s2.h5",
        lengths="results/{study}/correlation/{scale}/lengths.csv",
        summary="results/{study}/correlation/{scale}/summary.json",
        figure=report(
            "results/{study}/figures/correlation_{scale}.png",
            caption="../report/porosity_correlation.rst",
            category="Porosity maps",
            labels={"study": "{study}", "figure": "two-point correlation {scale}"},
        ),
    params:
        n_levels=por_param("relevance", "n_levels"),
        max_r_um=por_param("relevance", "max_r_um"),
        maps_per_class=por_param("relevance", "maps_per_class"),
        device=por_param("relevance", "device", default="auto"),
    log:
        "results/logs/porosity_correlation/{study}_{scale}.log",
    threads: 2
    resources:
        mem_mb=6000,
        runtime=60,
    conda:
        "../envs/learning.yaml"
    script:
        "../scripts/porosity_correlation.py"


rule porosity_patterns:
    """Shared characteristic patterns per class: difference matrix, annealed order, groups, superposition sR."""
    input:
        maps="results/{study}/maps.h5",
        relevance="results/{study}/relevance/{scale}/relevance.h5",
    output:
        patterns="results/{study}/patterns/{scale}/patterns.h5",
        summary="results/{study}/patterns/{scale}/summary.json",
        search_figure=report(
            "results/{study}/figures/pattern_search_{scale}.png",
            caption="../report/porosity_pattern_search.rst",
            category="Porosity maps",
            labels={"study": "{study}", "figure": "pattern search {scale}"},
        ),
        shared_figure=report(
            "results/{study}/figures/shared_patterns_{scale}.png",
            caption="../report/porosity_shared_patterns.rst",
            category="Porosity maps",
            labels={"study": "{study}", "figure": "shared patterns {scale}"},
        ),
    params:
        n_groups=por_param("relevance", "patterns", "n_groups", default=3),
        min_group=por_param("relevance", "patterns", "min_group", default=3),
        level=por_param("relevance", "patterns", "level"),
        seed=por_param("relevance", "patterns", "seed", default=0),
    log:
        "results/logs/porosity_patterns/{study}_{scale}.log",
    threads: 1
    resources:
        mem_mb=3000,
        runtime=20,
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/porosity_patterns.py"


rule porosity_explanation:
    """One table: characteristic regions, correlation and characteristic lengths, shared patterns, per class, tested."""
    input:
        regions="results/{study}/relevance/{scale}/regions.csv",
        lengths="results/{study}/correlation/{scale}/lengths.csv",
        patterns="results/{study}/patterns/{scale}/summary.json",
    output:
        table=report(
            "results/{study}/explanation/{scale}/summary.csv",
            caption="../report/porosity_explanation.rst",
            category="Porosity maps",
            labels={"study": "{study}", "figure": "explanation table {scale}"},
        ),
    params:
        alpha=0.05,
    log:
        "results/logs/porosity_explanation/{study}_{scale}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/porosity_explanation.py"
