"""Rule porosity_maps: local equivalent-porosity maps (MulF and MicF) of every class, one HDF5 per study.

snakemake.input.calibrated : list of ``calibrated.zarr`` groups (MulF, MicF in
    porosity mode), one per class, in the order of ``params.classes``
snakemake.params.classes : list of str, the class names
snakemake.params.pixel_size_nm : float, pixel size of the calibrated maps (nm)
snakemake.params.map_size_px : int, window edge at full resolution
snakemake.params.input_px : int or None, edge of the stored maps (area average)
snakemake.params.n_train : int, training maps per class of the random split
snakemake.params.train_fraction : float, spatial split: share of each class's width that trains
snakemake.params.val_fraction : float, share of each class's training maps kept for validation
snakemake.params.max_maps : int or None, maps per class at most
snakemake.params.seed : int
snakemake.params.pore_threshold : float, n at and above which a pixel is pore
snakemake.output.maps : ``maps.h5`` (layout: :mod:`microprop.data._maps`)
"""
import logging

from microprop.workflow import setup_script

log = logging.getLogger("microprop.porosity_maps")


def main(snakemake):
    """Cut the classes' calibrated maps into local maps; write the study's HDF5."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    from microprop import data, microstructure
    from microprop import io as mio
    from microprop.errors import InputError

    P = snakemake.params
    names = [str(c) for c in P.classes]
    paths = list(snakemake.input.calibrated)
    if len(names) != len(paths):
        raise InputError(f"porosity_maps: {len(names)} classes but {len(paths)} calibrated maps")
    classes = {}
    for name, path in zip(names, paths):
        mulf = mio.open_image(path, "MulF")
        if mulf.attrs.get("quantity") != "porosity":
            raise InputError(f"{path}: holds {mulf.attrs.get('quantity')!r}, expected an equivalent-porosity "
                             "map (calibration mode porosity)")
        classes[name] = {"mulf": mulf, "micf": mio.open_image(path, "MicF"), "source": str(path)}
    thr = float(P.get("pore_threshold", microstructure.PORE_THRESHOLD))

    def describe(maps, px):
        d = microstructure.porosity_descriptors(maps, px, thr)
        return {"porosity": d[:, 0], "pore_size_nm": d[:, 1]}

    res = data.write_map_dataset(
        snakemake.output.maps, classes, float(P.pixel_size_nm), int(P.map_size_px),
        input_px=P.get("input_px"), n_train=int(P.get("n_train", 750)),
        train_fraction=float(P.get("train_fraction", 0.75)), max_maps=P.get("max_maps"),
        val_fraction=float(P.get("val_fraction", 0.1) if P.get("val_fraction") is not None else 0.1),
        seed=int(P.get("seed", 0)), describe=describe,
        extra_attrs={"pore_threshold": thr,
                     "descriptor_definitions": "porosity: mean equivalent porosity n of the MulF map; "
                     "pore_size_nm: mean equivalent-circle diameter of the 8-connected regions with "
                     f"n >= {thr} of at least {microstructure.MIN_PORE_PX} px, at full resolution"})
    log.info("maps per class %s; splits %s; stored at %.4g nm/px", res["maps_per_class"], res["splits"],
             res["pixel_size_nm"])


if __name__ == "__main__":
    main(setup_script(globals()))
