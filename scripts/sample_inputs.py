"""Rule sample_inputs: the generated inputs of a sample study, with a property a conduction solver computes.

Two sources, both with a physically computed truth:

* ``virtual``: virtual ceramic-metal composites (``microprop.virtual.composite_samples``:
  bright conductive particles in a darker matrix, particle fraction, size and
  clustering varied across samples), each sample's conductivity solved on its
  conductivity map (metal, matrix and a graded interphase:
  ``microprop.virtual.conductivity_map`` and
  ``microprop.physics.effective_conductivity``, the geometric mean over its
  images and both axes) plus a log-normal measurement error (the solved
  value is kept beside it);
* ``simulated_on_real``: square regions of a real micrograph as the images
  (``images_per_sample`` neighbouring regions per sample), the bright phase
  segmented by Otsu's threshold of the whole micrograph, and the property
  solved on each region's bright phase (the geometric mean over the sample's
  regions). The microstructure is real; the property is SIMULATED, and the
  tables and ``truth.json`` say so.

snakemake.params.virtual, real : the config's ``virtual`` / ``simulated_on_real``
snakemake.params.prop : ``name``, ``unit``, ``log10``
snakemake.output.samples : CSV ``sample, value`` (+ the generator's parameters, ``simulated``)
snakemake.output.images : CSV ``sample, image`` (paths relative to it)
snakemake.output.folder : the PNG images
snakemake.output.truth : JSON: source, solver settings, per-sample parameters and values
"""
import logging
from pathlib import Path

from microprop.workflow import setup_script

log = logging.getLogger("microprop.sample_inputs")


def main(snakemake):
    """Generate or cut the images; solve the property; write the two tables, the images and the truth."""
    import numpy as np
    import pandas as pd
    from PIL import Image
    from microprop import io as mio

    P = snakemake.params
    folder = Path(snakemake.output.folder)
    folder.mkdir(parents=True, exist_ok=True)
    if P.get("virtual"):
        samples, images, sample_of, truth = _virtual(dict(P.virtual))
    else:
        samples, images, sample_of, truth = _real(dict(P.real))
    rows = []
    for i, (img, s) in enumerate(zip(images, sample_of)):
        name = f"{s}_{i:04d}.png"
        Image.fromarray(np.asarray(img, np.uint8)).save(folder / name)
        rows.append({"sample": s, "image": f"images/{name}"})
    mio.write_table(pd.DataFrame(rows), snakemake.output.images)
    mio.write_table(samples, snakemake.output.samples)
    mio.write_json({**truth, "property": dict(P.prop or {}), "samples": samples.to_dict(orient="records")},
                   snakemake.output.truth)
    v = samples["value"].to_numpy(float)
    log.info("%d samples, %d images; property %.3g .. %.3g (%s)%s", len(samples), len(rows), v.min(), v.max(),
             (P.prop or {}).get("unit", ""), "; SIMULATED on a real microstructure" if not P.get("virtual") else "")


def _virtual(v):
    """Virtual composites: the generator's table, images and sample ids."""
    import numpy as np
    from microprop.virtual import composite_samples

    rng = np.random.default_rng(int(v.get("seed", 0)))
    res = composite_samples(n_samples=int(v.get("n_samples", 58)), images_per_sample=int(v.get("images_per_sample", 3)),
                            size_px=int(v.get("size_px", 1024)), rng=rng, params=v.get("params") or None,
                            show_progress=True)
    table = res.samples.rename(columns={"sigma_S_per_cm": "value"})
    table["sample"] = table["sample"].astype(str)
    table["simulated"] = "virtual composite, conductivity solved on its microstructure"
    return table, res.images, np.asarray(res.image_sample).astype(str), {"source": "virtual", **v}


def _real(c):
    """Regions of a real micrograph; the property solved on their Otsu-segmented bright phase."""
    import numpy as np
    import pandas as pd
    from skimage.filters import threshold_otsu
    from microprop import io as mio
    from microprop.errors import InputError
    from microprop.imaging import load_tile
    from microprop.physics import two_phase_conductivity
    from microprop.progress import progress

    img = load_tile(c["image"])
    if img.ndim != 2:
        raise InputError(f"{c['image']}: a grey image expected")
    e, k = int(c.get("region_px", 128)), int(c.get("images_per_sample", 3))
    ny, nx = img.shape[0] // e, img.shape[1] // e
    if ny * nx < 4 * k:
        raise InputError(f"{c['image']}: {img.shape[1]} x {img.shape[0]} px holds {ny * nx} regions of {e} px; "
                         f"at least {4 * k} needed for 4 samples of {k} images")
    t = threshold_otsu(img)
    regions = [img[y * e:(y + 1) * e, x * e:(x + 1) * e] for y in range(ny) for x in range(nx)]
    n = len(regions) // k if c.get("n_samples") is None else min(int(c["n_samples"]), len(regions) // k)
    sb, sd = float(c.get("sigma_bright_S_per_cm", 1e4)), float(c.get("sigma_dark_S_per_cm", 1e-2))
    rows, images, sample_of = [], [], []
    for j in progress(range(n), desc="solve regions", unit="sample"):
        sig, frac = [], []
        for r in regions[j * k:(j + 1) * k]:
            bright = r > t
            sig.append(two_phase_conductivity(bright, sb, sd)["sigma_S_per_cm"])
            frac.append(float(bright.mean()))
            images.append(r)
            sample_of.append(f"R{j:03d}")
        rows.append({"sample": f"R{j:03d}", "value": float(np.exp(np.mean(np.log(sig)))),
                     "bright_fraction": float(np.mean(frac)),
                     "simulated": "SIMULATED: conduction solved on the real micrograph's bright phase"})
    truth = {"source": "simulated_on_real", "image": str(c["image"]), "image_sha256": mio.sha256_file(c["image"]),
             "otsu_threshold": int(t), "region_px": e, "images_per_sample": k,
             "sigma_bright_S_per_cm": sb, "sigma_dark_S_per_cm": sd,
             "note": "the microstructure is real, the property is simulated (not measured)"}
    return pd.DataFrame(rows), np.stack(images), np.asarray(sample_of), truth


if __name__ == "__main__":
    main(setup_script(globals()))
