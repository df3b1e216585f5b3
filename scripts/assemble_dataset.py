"""Rule assemble_dataset: all shards of a specimen -> dataset.h5 with splits.

snakemake.input.shards : list of str
    HDF5 shards from crop_batch (empty shards allowed).
snakemake.params.seed : int
    Seed of the random and blocked splits.
snakemake.params.split_fractions : list of 3 float
    Train, val, test fractions (sum 1).
snakemake.params.block_um : float
    Edge of the square blocks of the spatially blocked split, um.
snakemake.params.config_sha256 : str
    SHA-256 of the run's configuration, stored in the file attrs.
snakemake.params.code_version : str
    Code version (git describe or package version), stored in the file attrs.
snakemake.output.dataset : str
    ``dataset.h5`` (layout in ``docs/ARCHITECTURE.md``).
snakemake.output.splits_report : str
    JSON: n, n_blocks, block_um, seed, and per scheme (random, blocked) per
    split (train, val, test) count, fraction and target.
"""
from microprop.workflow import setup_script


def main(snakemake):
    """Assemble the shards of ``snakemake.input`` into the dataset and its splits report."""
    # the library is imported here, after setup_script has set the thread counts
    from microprop import data
    from microprop import io as mio

    inp, par, out = snakemake.input, snakemake.params, snakemake.output
    shards = inp.shards
    shards = [shards] if isinstance(shards, str) else [str(p) for p in shards]
    report = data.assemble(
        shards, out.dataset, seed=int(par.seed), fractions=[float(f) for f in par.split_fractions],
        block_um=float(par.block_um),
        attrs={"config_sha256": str(par.config_sha256), "code_version": str(par.code_version)})
    mio.write_json(report, out.splits_report)


if __name__ == "__main__":
    main(setup_script(globals()))
