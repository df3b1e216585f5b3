"""All figure code: matplotlib ``Figure`` objects (no pyplot state), written by
the rule scripts with :func:`save_png`. Imported by no computing module.
"""
from ._common import (  # noqa: F401
    DPI,
    FIGSIZE,
    add_scale_bar,
    nice_length,
    quantity_label,
    robust_limits,
    save_png,
)
from ._classes import (  # noqa: F401
    classifier_history,
    confusion_matrices,
    example_maps,
    pattern_search_panels,
    relevance_panels,
    s2_panels,
    shared_pattern_panels,
)
from ._learning import (  # noqa: F401
    CROPS_FIGSIZE,
    example_crops,
    predicted_vs_measured,
    r2_figure,
    SUMMARY_FIGSIZE,
    summary_figure,
    training_history,
)
from ._maps import (  # noqa: F401
    FIGSIZE_FRACTIONS,
    FIGSIZE_PANEL,
    FIGSIZE_TRIPTYCH,
    grid_extent,
    map_histograms,
    map_phase_fractions,
    map_triptych,
)
from ._overview import (  # noqa: F401
    modulus_map,
    mosaic_overview,
)
from ._samples import (  # noqa: F401
    activation_map_panels,
    bright_fraction_figure,
    observed_predicted_figure,
    sample_training_curves,
)
from ._stats import (  # noqa: F401
    bic_plot,
    porosity_scatter,
    stability_plot,
    validation_table,
    draw_components,
    histogram_components,
    table_model_scatter,
)

__all__ = [
    "activation_map_panels",
    "bright_fraction_figure",
    "observed_predicted_figure",
    "sample_training_curves",
    "classifier_history",
    "stability_plot",
    "confusion_matrices",
    "example_maps",
    "relevance_panels",
    "s2_panels",
    "pattern_search_panels",
    "shared_pattern_panels",
    "DPI",
    "FIGSIZE",
    "quantity_label",
    "save_png",
    "nice_length",
    "add_scale_bar",
    "robust_limits",
    "CROPS_FIGSIZE",
    "training_history",
    "predicted_vs_measured",
    "example_crops",
    "r2_figure",
    "SUMMARY_FIGSIZE",
    "summary_figure",
    "FIGSIZE_TRIPTYCH",
    "FIGSIZE_PANEL",
    "grid_extent",
    "map_triptych",
    "map_histograms",
    "map_phase_fractions",
    "FIGSIZE_FRACTIONS",
    "mosaic_overview",
    "modulus_map",
    "draw_components",
    "histogram_components",
    "table_model_scatter",
    "bic_plot",
    "porosity_scatter",
    "validation_table",
]
