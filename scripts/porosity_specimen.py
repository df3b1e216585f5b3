"""Rule porosity_specimen: one class of the virtual metal-intruded specimens, as a BSE image and its truth.

The second study's embedded default (:mod:`microprop.virtual._porosity`): an
equivalent-porosity map of the class, rendered through the Monte Carlo
``eta(n)`` of C-S-H/Field's-metal mixtures and a linear detector with shot
noise into the 8-bit BSE image a microscope would give.

snakemake.input.eta_table : CSV ``n, eta, eta_err`` (the study's Monte Carlo table)
snakemake.params.cls : str, the class name
snakemake.params.pixel_size_nm : float
snakemake.params.map_size_px : int, local-map edge at full resolution
snakemake.params.maps_per_class : int, how many local maps the image holds (sets its size)
snakemake.params.parameters : dict, the class's structure parameters (defaults
    from ``microprop.virtual.DEMO_POROSITY_CLASSES[cls]``, overridden key by key)
snakemake.params.seed : int
snakemake.params.electrons_per_px : float, detector signal (shot noise)
snakemake.output.image : TIFF, uint8 BSE image (what a user would bring)
snakemake.output.truth : folder: ``porosity.npy`` (float32 n), ``regions.npy``
    (uint8: 0 hydrates, 1 grain, 2 rim, 3 capillary metal), ``class.json``
    (parameters, detector, area fractions)
"""
import logging

from microprop.workflow import setup_script

log = logging.getLogger("microprop.porosity_specimen")


def main(snakemake):
    """Generate one class's image and truth."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    import math
    from pathlib import Path

    import numpy as np
    import tifffile
    from microprop import io as mio
    from microprop import virtual as mp_virtual
    from microprop.errors import InputError

    P = snakemake.params
    cls = str(P.cls)
    defaults = mp_virtual.DEMO_POROSITY_CLASSES.get(cls)
    given = dict(P.get("parameters") or {})
    if defaults is None and not given:
        raise InputError(f"porosity class {cls!r}: no parameters given and no demo class of that name "
                         f"(demo classes {sorted(mp_virtual.DEMO_POROSITY_CLASSES)})")
    params = {**(defaults or {}), **given}
    size = int(P.map_size_px)
    k = int(math.ceil(math.sqrt(int(P.maps_per_class))))
    shape = (k * size, k * size)
    seed = int(P.get("seed", 0))
    # one stream per class, from the study seed and the class name
    rng = np.random.default_rng([seed, int.from_bytes(cls.encode()[:8].ljust(8, b"\0"), "little")])
    log.info("class %s: %d x %d px (%d maps of %d px) at %.4g nm/px", cls, shape[1], shape[0], k * k,
             size, float(P.pixel_size_nm))
    n, regions = mp_virtual.porosity_map(shape, float(P.pixel_size_nm), params, rng, name=cls)
    table = mio.read_table(snakemake.input.eta_table, ("n", "eta"), what="eta(n) table")
    grey, detector = mp_virtual.render_porosity_bse(n, table, rng,
                                                    electrons_per_px=float(P.get("electrons_per_px", 2000.0)))
    truth = Path(snakemake.output.truth)
    with mio.atomic_path(truth) as tmp:
        tmp = Path(tmp)
        tmp.mkdir(parents=True)
        np.save(tmp / "porosity.npy", n)
        np.save(tmp / "regions.npy", regions)
        mio.write_json({"class": cls, "parameters": params, "detector": detector,
                        "pixel_size_nm": float(P.pixel_size_nm), "shape_px": list(shape),
                        "mean_porosity": float(n.mean()),
                        "region_fractions": {name: float((regions == i).mean()) for i, name in
                                             enumerate(("hydrates", "grain", "rim", "capillary"))}},
                       tmp / "class.json")
    with mio.atomic_path(snakemake.output.image) as tmp:
        tifffile.imwrite(tmp, grey)
    log.info("class %s: mean equivalent porosity %.3f; image %s", cls, float(n.mean()), snakemake.output.image)


if __name__ == "__main__":
    main(setup_script(globals()))
