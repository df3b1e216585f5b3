"""Rule sample_dataset: the sample and image tables -> ``samples.h5`` (checked, normalised, with grouped folds).

snakemake.input.samples, images : the study's tables (``microprop.data.read_sample_tables``)
snakemake.params.prop : ``name``, ``unit``, ``log10``
snakemake.params.normalise : ``method``, ``clahe``, ``clip_limit`` (``microprop.imaging.normalise_images``)
snakemake.params.input_px : images are area-averaged to this edge (a divisor of theirs)
snakemake.params.cv : ``n_folds``, ``seed``: folds drawn per sample
snakemake.params.pixel_size_nm : of the images as read (optional)
snakemake.output.dataset : ``results/{study}/samples.h5`` (layout: ``microprop.data._samples``)
snakemake.output.table : CSV per image: row, sample, value, target, fold, bright fraction, threshold, path
"""
import logging

from microprop.workflow import setup_script

log = logging.getLogger("microprop.sample_dataset")


def main(snakemake):
    """Read and check every image; normalise; average to the input size; bright fraction; folds; write."""
    import numpy as np
    from microprop import io as mio
    from microprop.data import load_sample_images, read_sample_tables, sample_folds, write_sample_dataset
    from microprop.errors import InputError
    from microprop.imaging import load_tile, normalise_images
    from microprop.stats import bright_fraction

    P = snakemake.params
    prop = dict(P.prop or {})
    name, unit, log10 = prop.get("name", "sigma_S_per_cm"), prop.get("unit", "S/cm"), bool(prop.get("log10", True))
    table = read_sample_tables(snakemake.input.samples, snakemake.input.images, log10=log10)
    raw = load_sample_images(table, load_tile)
    frac, thr = bright_fraction(raw)
    norm = normalise_images(raw, **{k: v for k, v in (P.normalise or {}).items()})
    size = raw.shape[-1]
    input_px = int(P.input_px or size)
    if input_px > size or size % input_px:
        raise InputError(f"input_px {input_px}: the images are {size} px; expected a divisor of {size}")
    factor = size // input_px
    small = mio.block_mean_stack(norm, factor) if factor > 1 else norm
    small_raw = np.round(mio.block_mean_stack(raw.astype(np.float32), factor)).astype(np.uint8) if factor > 1 else raw
    samples = list(dict.fromkeys(table["sample"]))
    index = {s: i for i, s in enumerate(samples)}
    sid = table["sample"].map(index).to_numpy(np.int64)
    cv = dict(P.cv or {})
    fold = sample_folds(sid, int(cv.get("n_folds", 5)), int(cv.get("seed", 0)))
    value = table["value"].to_numpy(float)
    target = np.log10(value) if log10 else value
    tname = f"log10_{name}" if log10 else name
    px = P.get("pixel_size_nm")
    write_sample_dataset(
        snakemake.output.dataset, small, small_raw, sid, samples, tname, target, frac, fold,
        {"property": name, "unit": unit, "log10": log10, "n_folds": int(cv.get("n_folds", 5)),
         "cv_seed": int(cv.get("seed", 0)), "image_px": int(size), "input_px": int(input_px),
         "pixel_size_nm": None if px is None else float(px) * factor,
         "normalise": dict(P.normalise or {}),
         "sources": {p: mio.sha256_file(p) for p in table["image"]}})
    out = table.assign(row=np.arange(len(table)), target=target, fold=fold, bright_fraction=frac,
                       threshold=thr)[["row", "sample", "value", "target", "fold", "bright_fraction", "threshold",
                                       "image"]]
    mio.write_table(out, snakemake.output.table)
    log.info("%d samples, %d images of %d px (stored at %d px), %d folds; %s from %.3g to %.3g %s", len(samples),
             len(table), size, input_px, int(cv.get("n_folds", 5)), name, value.min(), value.max(), unit)


if __name__ == "__main__":
    main(setup_script(globals()))
