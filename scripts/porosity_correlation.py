"""Rule porosity_correlation: two-point correlation S2(r, delta n) of the test maps and their characteristic regions.

snakemake.input.maps : ``results/{study}/maps.h5``
snakemake.input.relevance : ``relevance.h5`` of rule porosity_relevance (its maps and regions)
snakemake.params.n_levels : levels the maps are binned into (the reference: 256)
snakemake.params.max_r_um : largest distance, um (default: half the map)
snakemake.params.maps_per_class : test maps per class at most (the first ones)
snakemake.params.device : ``auto`` (CUDA when available), ``cpu`` or ``cuda``: where the FFTs run
snakemake.output.s2 : HDF5: ``r_um``, ``delta_n``, and per class ``<class>/whole`` and
    ``<class>/region`` (R + 1, 2 L - 1): S2 pooled over the class's maps
snakemake.output.lengths : CSV per map and part (whole map or region): correlation
    length and characteristic length, um
snakemake.output.summary : JSON: per class and part the mean and standard deviation
    of both lengths, and the Kruskal-Wallis test of whether the classes differ
snakemake.output.figure : PNG, the reference's Fig. 6: S2(r, delta n) per class, whole
    maps and characteristic regions, and the same-porosity probability p0(r)
"""
import logging

from microprop.workflow import setup_script

log = logging.getLogger("microprop.porosity_correlation")


def main(snakemake):
    """S2 of every selected test map, whole and region; lengths per map; class statistics; figure."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    import json

    import h5py
    import numpy as np
    import pandas as pd
    from scipy import stats as sps
    from microprop import io as mio
    from microprop import plots
    from microprop.io import block_mean_stack
    from microprop.learning import resolve_device
    from microprop.microstructure import correlation_lengths, quantize_levels, radial_s2
    from microprop.progress import progress

    P = snakemake.params
    L = int(P.get("n_levels", 256))
    workers = int(getattr(snakemake, "threads", 1) or 1)
    dev = resolve_device(P.get("device", "auto"))
    fft_device = dev if dev.type == "cuda" else None          # scipy on the CPU needs the least memory
    log.info("S2 FFTs on %s", dev)
    with h5py.File(snakemake.input.relevance, "r") as f:
        region = f["region"][:]
        rows = f["map"][:]
        scale = str(f.attrs["scale"])
        classes = json.loads(f.attrs["classes"])
        px_nm = float(f.attrs["pixel_size_nm"])
    order = np.argsort(rows)                   # h5py reads rows in increasing order
    rows, region = rows[order], region[order]
    with mio.open_hdf5(snakemake.input.maps, "local-map dataset") as f:
        maps = f[f"maps/{scale}"][rows]
        labels = f["labels"][:][rows]
    if maps.shape[-1] != region.shape[-1]:     # the network's input was area-averaged
        maps = block_mean_stack(maps, maps.shape[-1] // region.shape[-1])
    R = region.shape[-1] // 2 if P.get("max_r_um") is None else int(round(float(P.max_r_um) * 1000 / px_nm))
    R = min(R, region.shape[-1] - 1)
    k_max = P.get("maps_per_class")
    pick = np.concatenate([np.nonzero(labels == i)[0][:None if k_max is None else int(k_max)]
                           for i in range(len(classes))])
    counts = {(c, part): [] for c in classes for part in ("whole", "region")}
    out_rows = []
    r_um = None
    for i in progress(pick, desc=f"S2 {scale}", unit="map"):
        lev = quantize_levels(maps[i], L)
        c = classes[labels[i]]
        for part, mask in (("whole", None), ("region", region[i])):
            if mask is not None and mask.sum() < 2:
                continue
            r, delta, s2, frac = radial_s2(lev, L, R, mask=mask, workers=workers, device=fft_device)
            r_um = r * px_nm / 1000
            ln = correlation_lengths(r_um, np.nan_to_num(s2), frac)
            counts[(c, part)].append(s2)
            out_rows.append({"map": int(rows[i]), "class": c, "part": part,
                             "correlation_length_um": ln["correlation_length"],
                             "characteristic_length_um": ln["characteristic_length"],
                             "area_fraction": 1.0 if mask is None else float(mask.mean())})
    table = pd.DataFrame(out_rows)
    mio.write_table(table, snakemake.output.lengths)
    delta_n = np.arange(-(L - 1), L) / (L - 1)
    pooled = {}
    with mio.atomic_path(snakemake.output.s2) as tmp:
        with h5py.File(tmp, "w") as f:
            f["r_um"] = r_um
            f["delta_n"] = delta_n
            for (c, part), v in counts.items():
                if v:
                    pooled[(c, part)] = np.nanmean(np.stack(v), axis=0)
                    f[f"{c}/{part}"] = pooled[(c, part)]
            f.attrs.update({"scale": scale, "n_levels": L, "pixel_size_nm": px_nm})
    summary = {"scale": scale, "n_levels": L, "classes": classes, "parts": {}}
    for part in ("whole", "region"):
        t = table[table["part"] == part]
        entry = {}
        for col in ("correlation_length_um", "characteristic_length_um"):
            groups = [t.loc[t["class"] == c, col].dropna().to_numpy() for c in classes]
            per = {c: {"mean": float(np.mean(g)) if len(g) else None, "sd": float(np.std(g, ddof=1)) if len(g) > 1
                       else None, "n": int(len(g))} for c, g in zip(classes, groups)}
            test = None
            if all(len(g) > 1 for g in groups) and len({float(v) for g in groups for v in g}) > 1:
                h, p = sps.kruskal(*groups)
                test = {"test": "Kruskal-Wallis H (scipy.stats.kruskal)", "H": float(h), "p_value": float(p)}
            entry[col] = {"per_class": per, "classes_differ": test}
        summary["parts"][part] = entry
        log.info("%s %s: correlation length %s um; characteristic length %s um", scale, part,
                 {c: round(v["mean"], 3) if v["mean"] is not None else None
                  for c, v in entry["correlation_length_um"]["per_class"].items()},
                 {c: round(v["mean"], 2) if v["mean"] is not None else None
                  for c, v in entry["characteristic_length_um"]["per_class"].items()})
    mio.write_json(summary, snakemake.output.summary)
    plots.save_png(plots.s2_panels(r_um, delta_n, pooled, classes, title=f"Two-point correlation, {scale}"),
                   snakemake.output.figure)


if __name__ == "__main__":
    main(setup_script(globals()))
