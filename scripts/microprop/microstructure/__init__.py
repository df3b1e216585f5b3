"""Microstructure descriptors of calibrated crops: phase segmentation by
thresholds, class fractions, state fields and two-point correlations (binary
phases, and grey-level maps as S2(r, delta n)); regions of relevance maps and the patterns they share.
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
from ._correlation import (  # noqa: F401
    correlation_lengths,
    level_correlation,
    quantize_levels,
    radial_s2,
)
from ._patterns import (  # noqa: F401
    anneal_order,
    characteristic_patterns,
    default_level,
    difference_matrix,
    pattern_groups,
    shared_fraction,
    shared_pattern,
    total_gradient,
)
from ._porosity import (  # noqa: F401
    MIN_PORE_PX,
    PORE_THRESHOLD,
    average_pore_size_nm,
    porosity_descriptors,
)
from ._regions import (  # noqa: F401
    CHARACTERISTIC_SHARE,
    boundary_features,
    characteristic_region,
    porosity_regions,
)
from ._two_point import (  # noqa: F401
    correlation_pairs,
    two_point,
    two_point_features,
)

__all__ = [
    "quantize_levels",
    "level_correlation",
    "radial_s2",
    "correlation_lengths",
    "characteristic_patterns",
    "difference_matrix",
    "total_gradient",
    "anneal_order",
    "pattern_groups",
    "shared_pattern",
    "shared_fraction",
    "default_level",
    "CHARACTERISTIC_SHARE",
    "characteristic_region",
    "porosity_regions",
    "boundary_features",
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
