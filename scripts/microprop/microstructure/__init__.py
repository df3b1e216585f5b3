"""Microstructure descriptors of calibrated crops: phase segmentation by
thresholds, class fractions, state fields and two-point correlations.
"""
from ._descriptors import (  # noqa: F401
    QUANTILES,
    block_factor,
    central_window,
    class_fractions,
    crop_features,
    disc_mask,
    fit_thresholds,
    segment,
    state_fields,
)
from ._porosity import (  # noqa: F401
    MIN_PORE_PX,
    PORE_THRESHOLD,
    average_pore_size_nm,
    porosity_descriptors,
)
from ._two_point import (  # noqa: F401
    correlation_pairs,
    two_point,
    two_point_features,
)

__all__ = [
    "PORE_THRESHOLD",
    "MIN_PORE_PX",
    "average_pore_size_nm",
    "porosity_descriptors",
    "QUANTILES",
    "fit_thresholds",
    "segment",
    "disc_mask",
    "crop_features",
    "class_fractions",
    "block_factor",
    "state_fields",
    "central_window",
    "correlation_pairs",
    "two_point",
    "two_point_features",
]
