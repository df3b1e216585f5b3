"""Rule porosity_patterns: shared characteristic patterns of each class's test maps.

The reference's search (``../shared/references/dtd_nanoporosity_go_cement.txt``,
SI section 4, Figs. S34 and 7): the difference matrix of the maps'
characteristic patterns, its rows and columns reordered by simulated annealing
so that similar patterns sit together, groups of similar patterns as diagonal
blocks, and each group's patterns superimposed into a shared pattern ``sR``
whose contour gives the fraction of the map where the pattern is shared.

snakemake.input.maps : ``results/{study}/maps.h5``
snakemake.input.relevance : ``relevance.h5`` of rule porosity_relevance
snakemake.params.n_groups : groups per class (the reference: 3)
snakemake.params.min_group : smallest group, maps
snakemake.params.level : contour level of ``sR``; ``None``: the reference's 3e-6
    for 384 x 384 px scaled by area (:func:`microprop.microstructure.default_level`)
snakemake.params.seed : of the annealing
snakemake.output.patterns : HDF5 per class ``<class>/D`` (N, N), ``<class>/order``,
    ``<class>/map`` (rows of maps.h5), ``<class>/group_<k>/members`` and ``/sR``
snakemake.output.summary : JSON per class: maps, total gradient before and after,
    mean difference of all pairs, and per group its size, mean difference,
    contrast and shared fraction; the class's mean shared fraction
snakemake.output.search_figure : PNG like the reference's Fig. S34
snakemake.output.shared_figure : PNG like the reference's Fig. 7
"""
import logging

from microprop.workflow import setup_script

log = logging.getLogger("microprop.porosity_patterns")


def main(snakemake):
    """Difference matrix, annealed order, groups and shared patterns per class; table, figures."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    import json

    import h5py
    import numpy as np
    from microprop import io as mio
    from microprop import plots
    from microprop.io import block_mean_stack
    from microprop.microstructure import (
        anneal_order,
        characteristic_patterns,
        default_level,
        difference_matrix,
        pattern_groups,
        shared_fraction,
        shared_pattern,
        total_gradient,
    )

    P = snakemake.params
    with h5py.File(snakemake.input.relevance, "r") as f:
        rel, region, rows = f["relevance"][:], f["region"][:], f["map"][:]
        scale, classes = str(f.attrs["scale"]), json.loads(f.attrs["classes"])
        px_nm = float(f.attrs["pixel_size_nm"])
    order = np.argsort(rows)                       # h5py reads rows in increasing order
    rel, region, rows = rel[order], region[order], rows[order]
    with mio.open_hdf5(snakemake.input.maps, "local-map dataset") as f:
        maps = f[f"maps/{scale}"][rows]
        labels = f["labels"][:][rows]
    if maps.shape[-1] != rel.shape[-1]:            # the network's input was area-averaged
        maps = block_mean_stack(maps, maps.shape[-1] // rel.shape[-1])
    level = default_level(rel.shape[1:]) if P.get("level") is None else float(P.level)
    n_groups, min_group = int(P.get("n_groups", 3)), int(P.get("min_group", 3))
    rng = np.random.default_rng(int(P.get("seed", 0)))
    summary = {"scale": scale, "level": level, "pixel_size_nm": px_nm, "n_groups": n_groups,
               "min_group": min_group, "classes": {}}
    search, shared = {}, {}
    with mio.atomic_path(snakemake.output.patterns) as tmp:
        with h5py.File(tmp, "w") as out:
            for ci, c in enumerate(classes):
                sel = np.nonzero(labels == ci)[0]
                if len(sel) < max(3, 2 * min_group):
                    log.warning("%s %s: %d test maps, fewer than %d: no pattern search", scale, c, len(sel),
                                max(3, 2 * min_group))
                    summary["classes"][c] = {"n_maps": int(len(sel)), "groups": [], "shared_fraction_mean": None}
                    continue
                pats = characteristic_patterns(rel[sel], region[sel])
                D = difference_matrix(pats)
                ann = anneal_order(D, rng)
                groups = pattern_groups(D, ann.order, n_groups=n_groups, min_size=min_group)
                g_out = out.create_group(c)
                g_out["D"], g_out["order"], g_out["map"] = D, ann.order, rows[sel]
                entries = []
                for k, g in enumerate(groups):
                    sR = shared_pattern(pats[g["members"]], maps[sel][g["members"]])
                    nR = (pats[g["members"]] * maps[sel][g["members"]]).sum(axis=0)
                    frac = shared_fraction(sR, level)
                    g_out[f"group_{k + 1}/members"] = rows[sel][g["members"]]
                    g_out[f"group_{k + 1}/sR"] = sR
                    entries.append({"size": int(g["size"]), "maps": [int(v) for v in rows[sel][g["members"]]],
                                    "mean_difference": g["mean_difference"],
                                    "mean_outside_difference": g["mean_outside_difference"],
                                    "contrast": g["contrast"], "shared_fraction": frac})
                    shared.setdefault(c, []).append({"sR": sR, "nR": nR, "level": level, "fraction": frac, "size": g["size"]})
                fracs = [e["shared_fraction"] for e in entries]
                summary["classes"][c] = {
                    "n_maps": int(len(sel)),
                    "total_gradient_start": ann.total_gradient_start,
                    "total_gradient_end": ann.total_gradient_end,
                    "total_gradient_check": total_gradient(D[np.ix_(ann.order, ann.order)]),
                    "mean_difference_all": groups[0]["mean_difference_all"] if groups else None,
                    "groups": entries,
                    "shared_fraction_mean": float(np.mean(fracs)) if fracs else None,
                }
                search[c] = {"D": D, "order": ann.order, "groups": groups,
                             "total_gradient_start": ann.total_gradient_start,
                             "total_gradient_end": ann.total_gradient_end}
                log.info("%s %s: %d maps, total gradient %.4g -> %.4g, groups of %s maps, shared fraction %s %%",
                         scale, c, len(sel), ann.total_gradient_start, ann.total_gradient_end,
                         [e["size"] for e in entries], [round(100 * f, 1) for f in fracs])
            out.attrs.update({"scale": scale, "level": level, "pixel_size_nm": px_nm,
                              "classes": json.dumps(classes)})
    mio.write_json(summary, snakemake.output.summary)
    if search:
        plots.save_png(plots.pattern_search_panels(search, classes, title=f"Search for shared patterns, {scale}"),
                       snakemake.output.search_figure)
        plots.save_png(plots.shared_pattern_panels(shared, classes, px_nm,
                                                   title=f"Shared characteristic patterns, {scale}"),
                       snakemake.output.shared_figure)
    else:
        raise mio.InputError(f"porosity_patterns: no class of {snakemake.input.relevance} has enough test maps "
                             f"(at least {max(3, 2 * min_group)}) for a pattern search")


if __name__ == "__main__":
    main(setup_script(globals()))
