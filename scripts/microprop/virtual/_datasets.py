"""A known-answer synthetic dataset: crops whose targets follow a known formula.

:func:`synthetic_known_relation` draws crops (a smooth random eta field plus
a central disc of random contrast, under a random affine grey change) whose
E and H are a linear function of the disc's standardised contrast plus noise,
so that the best possible R^2 is known; :func:`write_synthetic_dataset`
writes them as a ``dataset.h5`` through the dataset writers (one shard, then
the assembly with its random and blocked splits), following the dataset
contract of ``docs/ARCHITECTURE.md``. Tests and benchmarks of the learning
code train on it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import data as ds


def synthetic_known_relation(n=200, size=32, seed=0, a=40.0, b=10.0, noise_GPa=1.0):
    """Crops whose target follows a known formula of their content.

    Each crop is a smooth random eta field (Gaussian-filtered white noise,
    mean ~0.13, std ~0.01) plus a central disc (radius ``size / 5``, centre
    ``((S-1)/2, (S-1)/2)``, so the disc is D4-symmetric) of random contrast,
    then a random affine grey change ``eta -> g * eta + o`` (g in 0.7..1.3,
    o in -0.02..0.02). The known feature is the disc's standardised contrast
    ``z = (mean over the disc - mean over the crop) / std over the crop``,
    which the per-image standardisation of the network (B1) keeps, and

        ``E_GPa = a + b * z + N(0, noise_GPa)``,
        ``H_GPa = a / 20 + b / 20 * z + N(0, noise_GPa / 20)``.

    The best possible R2 is ``var(b z) / (var(b z) + noise_GPa**2)`` (~0.9
    for the defaults).

    Parameters
    ----------
    n, size : int
        Number of crops and crop edge, px.
    seed : int
    a, b, noise_GPa : float
        Intercept, slope and noise of the relation, GPa.

    Returns
    -------
    crops : numpy.ndarray, shape (n, size, size), float32
    table : pandas.DataFrame
        ``specimen, area, batch, indent, x_um, y_um, E_GPa, H_GPa`` (the
        columns of :func:`microprop.data.write_shard`) and ``z``.
    """
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    c = (size - 1) / 2
    disc = (yy - c) ** 2 + (xx - c) ** 2 <= (size / 5) ** 2
    crops = np.empty((n, size, size), np.float32)
    z = np.empty(n)
    for i in range(n):
        field = gaussian_filter(rng.normal(size=(size, size)), 1.5, mode="wrap")
        img = 0.13 + 0.01 * field / field.std()
        img[disc] += rng.uniform(-0.03, 0.03)
        img = rng.uniform(0.7, 1.3) * img + rng.uniform(-0.02, 0.02)
        crops[i] = img
        im = crops[i].astype(np.float64)
        z[i] = (im[disc].mean() - im.mean()) / im.std()
    e = a + b * z + rng.normal(0, noise_GPa, n)
    h = (a + b * z) / 20 + rng.normal(0, noise_GPa / 20, n)
    side = int(np.ceil(np.sqrt(n)))
    table = pd.DataFrame({"specimen": "synthetic", "area": "S1", "batch": "b01",
                          "indent": np.arange(1, n + 1), "x_um": (np.arange(n) % side) * 5.0,
                          "y_um": (np.arange(n) // side) * 5.0, "E_GPa": e, "H_GPa": h, "z": z})
    return crops, table


def write_synthetic_dataset(path, n=200, size=32, seed=0, pixel_size_nm=40.0, **kwargs):
    """Write a known-relation ``dataset.h5`` (see :func:`synthetic_known_relation`).

    Goes through the dataset writers (:func:`microprop.data.write_shard`,
    :func:`microprop.data.assemble`), so the file follows the dataset
    contract, with 70/15/15 random and blocked splits.

    Returns
    -------
    table : pandas.DataFrame
        The per-crop table in dataset order (``z`` is the known feature).
    """

    path = Path(path)
    crops, table = synthetic_known_relation(n, size, seed, **kwargs)
    shard = path.with_name(path.stem + "_shard.h5")
    attrs = {"pixel_size_nm": pixel_size_nm, "crop_size_px": size,
             "crop_size_um": size * pixel_size_nm / 1000, "quantity": "eta", "scale": "MulF",
             "sources": {}}
    ds.write_shard(shard, crops, table.drop(columns="z"), attrs)
    ds.assemble([shard], path, seed=seed, block_um=15.0)
    shard.unlink()
    return table
