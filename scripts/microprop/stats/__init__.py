"""Statistics of indentation data: Gaussian-mixture deconvolution with BIC,
phase naming, hydration (Powers; Tennis & Jennings), the seed's table model
and a linear model.
"""
from ._hydration import (  # noqa: F401
    POWERS_CEMENT_VOLUME,
    hydration,
)
from ._mixture import (  # noqa: F401
    bic_table,
    component_curves,
    deconvolve,
    deconvolve_joint,
    fit_gmm,
    marginal,
    name_components,
    phase_reference_means,
)
from ._table_model import (  # noqa: F401
    crop_means,
    linear_model,
    metrics,
    split_indices,
    table_model,
    table_model_fit,
    table_model_predict,
)

__all__ = [
    "POWERS_CEMENT_VOLUME",
    "hydration",
    "phase_reference_means",
    "name_components",
    "fit_gmm",
    "deconvolve",
    "deconvolve_joint",
    "marginal",
    "component_curves",
    "bic_table",
    "metrics",
    "table_model_fit",
    "table_model_predict",
    "split_indices",
    "table_model",
    "linear_model",
    "crop_means",
]
