# The embedded virtual specimen: one generator job per virtual area writes the
# tiles, layouts and indentation exports a user would bring, plus a truth
# folder that only validation rules and tests read.

for _s in [s for s in config["specimens"] if is_virtual(s)]:
    for _a in all_areas(_s):
        _acfg = area_cfg(_s, _a)
        _v = spec_cfg(_s)["virtual"]

        rule:
            name:
                f"virtual_specimen_{_s}_{_a}"
            input:
                phase_eta="results/backscatter/phase_eta.csv",
            output:
                before=directory(_acfg["before"]),
                after=directory(_acfg["after"]),
                exports=[f"{_acfg['indentation']}/{b}.csv" for b in virtual_batch_names(_s)],
                truth_dir=directory(f"resources/truth/{_s}/{_a}"),
            params:
                pixel_size_nm=spec_cfg(_s)["pixel_size_nm"],
                batches=virtual_batch_names(_s),
                indenter_offset_um=_acfg["indenter_offset_um"],
                indenter_axes=_acfg["indenter_axes"],
                seed=_v["seed"] + 1000 * all_areas(_s).index(_a),
                **{k: v for k, v in _v.items() if k != "seed"},
            log:
                f"results/logs/virtual_specimen/{_s}_{_a}.log",
            benchmark:
                f"results/benchmarks/virtual_specimen/{_s}_{_a}.tsv"
            threads: 1
            resources:
                mem_mb=6000,
                runtime=20,
            conda:
                "../envs/imaging.yaml"
            script:
                "../scripts/virtual_specimen.py"
