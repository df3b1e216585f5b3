"""Known-answer tile sets for the stitching tests.

The library's one tile cutter is :func:`microprop.virtual.cut_tiles`, the
stage model of the virtual specimens (normal stage error in um, detector
noise). The stitching tests need a simpler truth: a regular grid with a
uniform integer error per tile, so that a bound on the error is exact. This
is that fixture; it is test code, not part of the library.
"""
import numpy as np
import pandas as pd


def cut_jittered_tiles(image, n_rows, n_cols, tile_shape, overlap_frac, jitter_px, rng,
              pixel_size_nm=500.0, gain_sd=0.0, offset_sd=0.0, counts_per_level=None):
    """Cut an image into a grid of overlapping tiles with known position errors.

    Nominal tile positions form a regular grid with step
    ``round(tile * (1 - overlap_frac))``, starting ``jitter_px`` from the
    image's top-left corner; each tile's true position is its nominal one
    plus an integer error drawn uniformly from ``[-jitter_px, jitter_px]``
    per axis. Optional per-tile drift: grey = gain * grey + offset, with
    gain ~ N(1, gain_sd) and offset ~ N(0, offset_sd) grey levels, then shot
    noise: Poisson counts with ``counts_per_level`` counts per grey level.

    Parameters
    ----------
    image : numpy.ndarray, shape (H, W), uint8 or uint16
        The specimen frame.
    n_rows, n_cols : int
    tile_shape : tuple of int
        ``(h, w)`` px.
    overlap_frac : float
        Nominal overlap as a fraction of the tile edge.
    jitter_px : int
        Largest stage error per axis (px).
    rng : numpy.random.Generator
    pixel_size_nm : float
        Converts nominal positions to the layout's ``x_um, y_um``.
    gain_sd, offset_sd : float
    counts_per_level : float, optional

    Returns
    -------
    tiles : list of numpy.ndarray
        Row-major, dtype of ``image``.
    layout : pandas.DataFrame
        ``tile, file, row, col, x_um, y_um`` (file ``tile_RRR_CCC.tif``).
    truth : pandas.DataFrame
        ``tile, x_px, y_px``: true position of each tile's pixel ``[0, 0]``
        in ``image``.

    Raises
    ------
    ValueError
        If the grid plus jitter does not fit into ``image``.
    """
    h, w = tile_shape
    step_y, step_x = int(round(h * (1 - overlap_frac))), int(round(w * (1 - overlap_frac)))
    j = int(jitter_px)
    need = (j * 2 + (n_rows - 1) * step_y + h, j * 2 + (n_cols - 1) * step_x + w)
    if need[0] > image.shape[0] or need[1] > image.shape[1]:
        raise ValueError(f"a {n_rows}x{n_cols} grid of {h}x{w} tiles with overlap {overlap_frac} "
                         f"and jitter {j} px needs an image of {need}, got {image.shape}")
    maxval = np.iinfo(image.dtype).max
    tiles, lay, truth = [], [], []
    for r in range(n_rows):
        for c in range(n_cols):
            nx, ny = j + c * step_x, j + r * step_y
            tx, ty = nx + int(rng.integers(-j, j + 1)), ny + int(rng.integers(-j, j + 1))
            tile = image[ty:ty + h, tx:tx + w].astype(np.float64)
            if gain_sd or offset_sd:
                tile = tile * rng.normal(1.0, gain_sd) + rng.normal(0.0, offset_sd)
            if counts_per_level:
                tile = rng.poisson(np.clip(tile, 0, None) * counts_per_level) / counts_per_level
            tiles.append(np.clip(np.rint(tile), 0, maxval).astype(image.dtype))
            name = f"r{r:03d}_c{c:03d}"
            lay.append(dict(tile=name, file=f"tile_{name}.tif", row=r, col=c,
                            x_um=nx * pixel_size_nm / 1000.0, y_um=ny * pixel_size_nm / 1000.0))
            truth.append(dict(tile=name, x_px=tx, y_px=ty))
    return tiles, pd.DataFrame(lay), pd.DataFrame(truth)
