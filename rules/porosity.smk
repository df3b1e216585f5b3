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
