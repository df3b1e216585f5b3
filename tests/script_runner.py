"""Run a rule script in-process with a job built from YAML (shared by the tests)."""
import logging
import os
import runpy
from pathlib import Path

import yaml
from microprop.workflow import job_from_yaml

REPO = Path(__file__).resolve().parents[1]


def run_script(name, job, tmp_path):
    """Run ``scripts/<name>.py`` as Snakemake would, with ``job`` as its job.

    In-process (runpy) rather than a subprocess, to spare interpreter and
    import start-up. ``setup_script`` reconfigures the root logger; pytest's
    handlers and level, and the environment, are restored afterwards.

    Parameters
    ----------
    name : str
        Script name without ``.py``.
    job : dict
        ``input``, ``output``, ``params``, ... (see ``microprop.workflow``).
    tmp_path : pathlib.Path
        Where the job's YAML is written.
    """
    spec = Path(tmp_path) / f"{name}.yaml"
    spec.write_text(yaml.safe_dump({"rule": name, **job}))
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    environ = dict(os.environ)  # setup_script sets thread counts for the job only
    try:
        runpy.run_path(str(REPO / "scripts" / f"{name}.py"),
                       init_globals={"snakemake": job_from_yaml(spec)}, run_name="__main__")
    finally:
        for h in list(root.handlers):
            if h not in handlers:
                root.removeHandler(h)
                h.close()
        for h in handlers:
            if h not in root.handlers:
                root.addHandler(h)
        root.setLevel(level)
        os.environ.clear()
        os.environ.update(environ)


def write_map_stores(tmp_path, image, pixel_size_nm, origin_um=(0.0, 0.0)):
    """Write the inputs of rule ``map_area``: ``calibrated.zarr`` and ``mosaic.zarr``.

    ``calibrated.zarr`` holds ``image`` (float, backscatter coefficient) as its
    ``MulF`` map; ``mosaic.zarr`` the same image as 8-bit grey (x 1000,
    clipped). Returns the two paths.
    """
    import numpy as np
    from microprop import io as mio

    tmp_path = Path(tmp_path)
    g = mio.create_group(tmp_path / "calibrated.zarr")
    g.attrs.update({"pixel_size_nm": pixel_size_nm, "origin_um": list(origin_um), "quantity": "eta"})
    arr = mio.create_group_array(g, "MulF", image.shape, np.float32, chunk=128,
                                 attrs={"pixel_size_nm": pixel_size_nm})
    arr[:] = image
    mosaic = mio.create_image_store(tmp_path / "mosaic.zarr", image.shape, np.uint8,
                                    attrs={"pixel_size_nm": pixel_size_nm})
    mosaic[:] = np.clip(image * 1000, 0, 255).astype(np.uint8)
    return tmp_path / "calibrated.zarr", tmp_path / "mosaic.zarr"
