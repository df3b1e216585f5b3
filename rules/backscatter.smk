# Monte Carlo backscatter coefficients: eta(n) of C-S-H/Field's metal and the
# eta of each named phase. Reruns only when its parameters change.


rule simulate_backscatter:
    output:
        eta_table="results/backscatter/eta_table.csv",
        eta_meta="results/backscatter/eta_table.json",
        phase_eta="results/backscatter/phase_eta.csv",
    params:
        beam_energy_keV=config["backscatter"]["beam_energy_keV"],
        n_electrons=config["backscatter"]["n_electrons"],
        n_points=config["backscatter"]["n_points"],
        seed=config["backscatter"]["seed"],
        cross_section=config["backscatter"]["cross_section"],
    log:
        "results/logs/simulate_backscatter.log",
    benchmark:
        "results/benchmarks/simulate_backscatter.tsv"
    threads: 2
    resources:
        mem_mb=1000,
        runtime=20,
    conda:
        "../envs/physics.yaml"
    script:
        "../scripts/simulate_backscatter.py"
