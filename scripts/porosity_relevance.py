"""Rule porosity_relevance: deep Taylor relevance of the test maps, and the regions it marks.

snakemake.input.model : ``best.pt`` of rule porosity_train (one scale)
snakemake.input.maps : ``results/{study}/maps.h5``
snakemake.params.split : the split the model was trained on
snakemake.params.share : share of the positive relevance the characteristic region carries (0.7)
snakemake.params.boundary_quantile : boundary features are the pixels whose relevance
    gradient exceeds this quantile of the map's gradients (0.95)
snakemake.params.device : ``auto``, ``cpu`` or ``cuda``
snakemake.output.relevance : HDF5: ``relevance`` (N, P, P) float32 for the predicted
    class, ``region`` (N, P, P) bool characteristic regions, ``boundary`` (N, P, P)
    bool, ``high_porosity`` (N, P, P) bool (isodata), ``map`` (N,) rows of maps.h5,
    ``target`` (N,), attrs ``classes``, ``scale``, ``share``, ``pixel_size_nm``
snakemake.output.table : CSV per map: ``map, true, predicted, score, relevance_sum,
    conserved_fraction, area_fraction, isodata_threshold, relevance_on_high_porosity``
    (``conserved_fraction``: the relevance's sum over the map's pixels over the explained
    logit ``score``; the rest is absorbed by the biases of the convolutions (batch norm
    merged into them) and of the head; ``relevance_on_high_porosity``: share of the
    positive relevance on high-porosity pixels)
snakemake.output.figure : PNG, the reference's Fig. 5: one test map per class, its
    relevance (red on high-porosity, blue on low-porosity pixels), boundary
    features and characteristic region
"""
import logging

from microprop.workflow import setup_script

log = logging.getLogger("microprop.porosity_relevance")


def main(snakemake):
    """Relevance of every test map for its predicted class; regions; table and figure."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    import json

    import h5py
    import numpy as np
    import pandas as pd
    from microprop import io as mio
    from microprop import plots
    from microprop.data import read_maps
    from microprop.learning import load_classifier, relevance_maps, resolve_device
    from microprop.learning._augment import downsample_images
    from microprop.microstructure import boundary_features, characteristic_region, porosity_regions

    P = snakemake.params
    dev = resolve_device(P.get("device", "auto"))
    model, meta = load_classifier(snakemake.input.model, dev)
    x, y, idx, classes = read_maps(snakemake.input.maps, meta["scale"], str(P.split), "test")
    rel, score, target = relevance_maps(model, meta, x, device=dev)
    xin = downsample_images(x, meta.get("input_px"))[:, 0].numpy()
    share, q = float(P.get("share", 0.7)), float(P.get("boundary_quantile", 0.95))
    regions, bounds, highs, rows = [], [], [], []
    names = np.asarray(classes, dtype=object)
    for i in range(len(rel)):
        region, frac = characteristic_region(rel[i], share)
        high, t = porosity_regions(xin[i])
        bound = boundary_features(rel[i], quantile=q)
        pos = np.clip(rel[i], 0, None)
        regions.append(region)
        bounds.append(bound)
        highs.append(high)
        total = float(rel[i].sum(dtype=np.float64))
        rows.append({"map": int(idx[i]), "true": names[y[i]], "predicted": names[target[i]],
                     "score": float(score[i]), "relevance_sum": total,
                     "conserved_fraction": total / float(score[i]) if score[i] != 0 else float("nan"),
                     "area_fraction": frac, "isodata_threshold": t,
                     "relevance_on_high_porosity": float((pos * high).sum() / pos.sum()) if pos.sum() > 0
                     else float("nan")})
    table = pd.DataFrame(rows)
    with mio.open_hdf5(snakemake.input.maps, "local-map dataset") as f:
        px = float(f.attrs["pixel_size_nm"]) * (x.shape[-1] / xin.shape[-1])
    with mio.atomic_path(snakemake.output.relevance) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("relevance", data=rel, compression="gzip", compression_opts=1)
            for k, v in (("region", regions), ("boundary", bounds), ("high_porosity", highs)):
                f.create_dataset(k, data=np.asarray(v, bool), compression="gzip", compression_opts=1)
            f["map"] = idx
            f["target"] = target
            f.attrs.update({"classes": json.dumps(list(classes)), "scale": meta["scale"], "share": share,
                            "boundary_quantile": q, "pixel_size_nm": px,
                            "rules": "z+ after ReLUs, z^B at the input (n in 0..1), batch norm merged (zennit)"})
    mio.write_table(table, snakemake.output.table)
    for c in classes:
        t = table[table["true"] == c]
        log.info("%s %s: characteristic region %.2f +- %.2f %% of the map (%d test maps), %.0f %% of the "
                 "positive relevance on high-porosity pixels; relevance conserved %.3f +- %.3f of the logit",
                 meta["scale"], c, 100 * t["area_fraction"].mean(), 100 * t["area_fraction"].std(), len(t),
                 100 * t["relevance_on_high_porosity"].mean(), t["conserved_fraction"].mean(),
                 t["conserved_fraction"].std())
    first = [int(np.nonzero(y == i)[0][0]) for i in range(len(classes)) if (y == i).any()]
    plots.save_png(plots.relevance_panels(xin[first], rel[first], np.asarray(highs)[first],
                                          np.asarray(bounds)[first], np.asarray(regions)[first],
                                          [names[y[i]] for i in first], px, share=share,
                                          title=f"Deep Taylor relevance, {meta['scale']} test maps"),
                   snakemake.output.figure)


if __name__ == "__main__":
    main(setup_script(globals()))
