# microprop: from SEM micrographs and nanoindentation to local material properties.
#
#   snakemake --cores all --use-conda            # the demo study (config.yaml)
#   snakemake --cores all --configfile my.yaml   # your own data
#   snakemake --report results/report.html       # figures with captions
#
# The DAG and its file contracts: docs/ARCHITECTURE.md.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


# config.yaml holds the defaults and the embedded demo specimen. A study of
# one's own (`--configfile my_study.yaml`) brings its own `specimens:` (and/or
# `porosity_studies:`, `sample_studies:`), which replace the demo's instead of being added to
# them, so that the demo is not planned beside it; the other sections still
# default from config.yaml.
if workflow.overwrite_configfiles:
    import copy as _copy

    _own = workflow.config_settings.overwrite_config
    for _section in ("specimens", "porosity_studies", "sample_studies"):
        config[_section] = _copy.deepcopy(_own.get(_section) or {})
    if not (config["specimens"] or config["porosity_studies"] or config["sample_studies"]):
        raise ValueError(
            "config: no `specimens:` (or `porosity_studies:`, `sample_studies:`) in "
            + ", ".join(map(str, workflow.overwrite_configfiles))
            + "; a study's config file names its specimens (see configs/example_user.yaml)")


wildcard_constraints:
    specimen="[A-Za-z0-9_-]+",
    area="[A-Za-z0-9_-]+",
    batch="[A-Za-z0-9_.-]+",  # = BATCH_ID of rules/common.smk (export file names)
    stage="before|after",
    split="random|blocked",
    target="E_GPa|H_GPa",
    member="[0-9]+",
    study="[A-Za-z0-9_-]+",
    cls="[A-Za-z0-9_-]+",
    fold="[0-9]+",


report: "report/workflow.rst"


include: "rules/common.smk"


check_specimens()


include: "rules/backscatter.smk"
include: "rules/specimen.smk"
include: "rules/stitch.smk"
include: "rules/calibrate.smk"
include: "rules/indentation.smk"
include: "rules/dataset.smk"
include: "rules/stats.smk"
include: "rules/validate.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/ladder.smk"
include: "rules/mapping.smk"
include: "rules/porosity.smk"
include: "rules/samples.smk"


rule all:
    input:
        final_targets(),
        porosity_targets(),
        sample_targets(),
    default_target: True
