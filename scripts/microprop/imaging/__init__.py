"""Image geometry: tile sets and stitching, mosaic registration, Berkovich
marks (rendering and detection), the indent grid model, its fit and the
location of indentation batches, grey-level phase segmentation and the
normalisation of SEM images.
"""
from ._grid import (  # noqa: F401
    LOCATED_COLUMNS,
    fit_batch_grid,
    grid_indices,
    grid_positions,
    indenter_to_pixels,
    locate_batch,
    locate_nominal,
)
from ._marks import (  # noqa: F401
    BERKOVICH_AREA_FACTOR,
    BERKOVICH_SIDE_PER_DEPTH,
    berkovich_side_px,
    detect_marks,
    render_berkovich_marks,
)
from ._normalise import (  # noqa: F401
    NORMALISATIONS,
    normalise_images,
)
from ._register import (  # noqa: F401
    register_mosaics,
)
from ._segment import (  # noqa: F401
    segment_eta,
    segment_phases,
)
from ._stitch import (  # noqa: F401
    LINK_COLUMNS,
    MIN_TEMPLATE_PX,
    TABLE_COLUMNS,
    check_link_graph,
    check_margin,
    feather_weights,
    mosaic_shape,
    neighbour_pairs,
    overlap_ncc,
    register_pair,
    register_pairs,
    solve_positions,
    stitch,
    write_mosaic,
)
from ._tiles import (  # noqa: F401
    LAYOUT_COLUMNS,
    crop_region,
    load_tile,
    read_layout,
    write_tile_set,
)

__all__ = [
    "NORMALISATIONS",
    "normalise_images",
    "grid_positions",
    "LOCATED_COLUMNS",
    "fit_batch_grid",
    "indenter_to_pixels",
    "grid_indices",
    "locate_nominal",
    "locate_batch",
    "BERKOVICH_AREA_FACTOR",
    "BERKOVICH_SIDE_PER_DEPTH",
    "berkovich_side_px",
    "render_berkovich_marks",
    "detect_marks",
    "register_mosaics",
    "segment_eta",
    "segment_phases",
    "TABLE_COLUMNS",
    "LINK_COLUMNS",
    "MIN_TEMPLATE_PX",
    "check_margin",
    "check_link_graph",
    "overlap_ncc",
    "register_pair",
    "neighbour_pairs",
    "register_pairs",
    "solve_positions",
    "feather_weights",
    "mosaic_shape",
    "write_mosaic",
    "stitch",
    "LAYOUT_COLUMNS",
    "load_tile",
    "crop_region",
    "read_layout",
    "write_tile_set",
]
