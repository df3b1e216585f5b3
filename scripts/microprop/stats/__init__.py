"""Statistics of indentation data: Gaussian-mixture deconvolution with BIC,
phase naming, the deconvolution's stability against the number of
indents (bootstrap), hydration (seed paper eqs. 9-10), the seed's table model
and a linear model.
"""
from ._classes import (  # noqa: F401
    anova_tukey,
    nearest_class_mean,
    wilson_interval,
)
from ._hydration import (  # noqa: F401
    HYDRATION_EQUATIONS,
    HYDRATION_PRODUCTS,
    PRODUCT_TO_REACTANT_VOLUME,
    hydration,
    hydration_by_area,
    hydration_or_note,
)
from ._mixture import (  # noqa: F401
    bic_table,
    component_curves,
    deconvolve,
    deconvolve_joint,
    fit_gmm,
    gmm_tables,
    marginal,
    mixture_fractions,
    name_components,
    phase_reference_means,
)
from ._stability import (  # noqa: F401
    default_sizes,
    deconvolution_stability,
    stable_size,
)
from ._table_model import (  # noqa: F401
    crop_means,
    linear_model,
    metrics,
    read_crop_means,
    read_table_model_bins,
    split_indices,
    table_model,
    table_model_fit,
    table_model_predict,
)

from ._bright_fraction import (  # noqa: F401
    bright_fraction,
    fit_polynomial_glm,
    predict_polynomial_glm,
    polynomial_glm_cv,
)

__all__ = [
    "bright_fraction",
    "fit_polynomial_glm",
    "predict_polynomial_glm",
    "polynomial_glm_cv",
    "nearest_class_mean",
    "anova_tukey",
    "wilson_interval",
    "PRODUCT_TO_REACTANT_VOLUME",
    "HYDRATION_PRODUCTS",
    "HYDRATION_EQUATIONS",
    "hydration",
    "hydration_or_note",
    "hydration_by_area",
    "phase_reference_means",
    "name_components",
    "fit_gmm",
    "deconvolve",
    "deconvolve_joint",
    "marginal",
    "component_curves",
    "bic_table",
    "gmm_tables",
    "mixture_fractions",
    "deconvolution_stability",
    "default_sizes",
    "stable_size",
    "metrics",
    "table_model_fit",
    "table_model_predict",
    "split_indices",
    "table_model",
    "linear_model",
    "crop_means",
    "read_table_model_bins",
    "read_crop_means",
]
