"""Virtual specimens and their truth: generated microstructures, BSE
rendering, tile cutting, area generation with indentation batches, virtual
indentation of a real image, known-relation datasets, and the validation of
results against the truth.

The top of the simulation: imported by no library module, only by rule
scripts, benchmarks and tests.
"""
from ._area import (  # noqa: F401
    area_geometry,
    generate_area,
)
from ._large import (  # noqa: F401
    DEMO_CALIBRATED_ETA,
    large_area,
)
from ._bse import (  # noqa: F401
    bse_gain_offset,
    render_bse,
)
from ._datasets import (  # noqa: F401
    synthetic_known_relation,
    write_synthetic_dataset,
)
from ._indentation import (  # noqa: F401
    regular_grid_px,
    virtual_indentation,
)
from ._microstructure import (  # noqa: F401
    DEFAULT_PHASE_ETA,
    DEFAULT_TEXTURE_REL,
    generate_microstructure,
    phase_fractions,
)
from ._tiles import (  # noqa: F401
    cut_tiles,
    cut_window,
    tile_grid,
)
from ._validation import (  # noqa: F401
    calibration_errors,
    generated_phases,
    gmm_errors,
    location_errors,
    mosaic_offset_px,
    stitching_errors,
)
from ._detector import (  # noqa: F401
    DETECTOR_SETTINGS,
    detector_setting_test,
    reimage_calibrated,
)
from ._porosity import (  # noqa: F401
    DEMO_POROSITY_CLASSES,
    gaussian_random_field,
    porosity_map,
    render_porosity_bse,
)

from ._composite import (  # noqa: F401
    DEMO_COMPOSITE,
    CompositeSamples,
    composite_microstructure,
    composite_samples,
    conductivity_map,
    render_sem,
)

__all__ = [
    "DEMO_COMPOSITE",
    "CompositeSamples",
    "composite_microstructure",
    "composite_samples",
    "conductivity_map",
    "render_sem",
    "DETECTOR_SETTINGS",
    "detector_setting_test",
    "reimage_calibrated",
    "DEMO_POROSITY_CLASSES",
    "gaussian_random_field",
    "porosity_map",
    "render_porosity_bse",
    "area_geometry",
    "generate_area",
    "DEMO_CALIBRATED_ETA",
    "large_area",
    "bse_gain_offset",
    "render_bse",
    "synthetic_known_relation",
    "write_synthetic_dataset",
    "regular_grid_px",
    "virtual_indentation",
    "DEFAULT_PHASE_ETA",
    "DEFAULT_TEXTURE_REL",
    "generate_microstructure",
    "phase_fractions",
    "tile_grid",
    "cut_tiles",
    "cut_window",
    "mosaic_offset_px",
    "stitching_errors",
    "location_errors",
    "calibration_errors",
    "generated_phases",
    "gmm_errors",
]
