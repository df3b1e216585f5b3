"""Property learning: the device, data augmentation, checkpoints, the training
loop, prediction, ensembles and prediction intervals, evaluation, the
baseline ladder and the mapping of whole areas; the networks are in
:mod:`microprop.learning.models`.
"""
from ._augment import (  # noqa: F401
    d4_apply,
    symmetry_augment,
    d4_index_maps,
    downsample_images,
    quantize_uint8,
)
from ._classify import (  # noqa: F401
    CLASS_METRIC_COLUMNS,
    classify_maps,
    evaluate_classifier,
    load_classifier,
    train_classifier,
)
from ._checkpoint import (  # noqa: F401
    RESUME_DEFAULTS,
    RESUME_KEYS,
    load_model,
    member_seed,
    set_aside_stale_work,
)
from ._device import (  # noqa: F401
    cpu_reduced_run,
    resolve_device,
)
from ._evaluate import (  # noqa: F401
    PREDICTION_COLUMNS,
    ensemble_predict,
    evaluate,
    pick_examples,
)
from ._intervals import (  # noqa: F401
    SPREAD_FLOOR,
    conformal_quantile,
    coverage_confidence_interval,
    empirical_coverage,
    prediction_interval,
    regression_metrics,
    spread_floor,
)
from ._ladder import (  # noqa: F401
    ALPHAS,
    MODELS,
    N_COMPONENTS,
    crop_means_from,
    fit_boosting,
    fit_pca_ridge,
    ladder,
    predict_pca_ridge,
)
from ._mapping import (  # noqa: F401
    INDENTATION,
    STRIP_PX,
    compare_statistics,
    dense_step_px,
    ensemble_mean_predictor,
    first_centre_um,
    load_ensemble,
    map_geometry,
    map_label,
    predict_map,
    table_model_map,
    timed_predict_map,
    window_centres,
    window_means,
)
from ._predict import (  # noqa: F401
    predict,
)
from ._relevance import (  # noqa: F401
    relevance_maps,
)
from ._samples import (  # noqa: F401
    SAMPLE_METRIC_COLUMNS,
    activation_maps,
    fold_metrics,
    fold_parts,
    load_sample_cnn,
    predict_fold,
    predict_symmetric,
    train_sample_cnn,
)
from ._train import (  # noqa: F401
    COMPILE_MODES,
    METRIC_COLUMNS,
    MIN_INPUT_PX,
    TrainingStopped,
    train,
)

__all__ = [
    "SAMPLE_METRIC_COLUMNS",
    "activation_maps",
    "fold_metrics",
    "fold_parts",
    "load_sample_cnn",
    "predict_fold",
    "predict_symmetric",
    "train_sample_cnn",
    "cpu_reduced_run",
    "set_aside_stale_work",
    "relevance_maps",
    "CLASS_METRIC_COLUMNS",
    "train_classifier",
    "evaluate_classifier",
    "load_classifier",
    "classify_maps",
    "d4_index_maps",
    "d4_apply",
    "symmetry_augment",
    "downsample_images",
    "quantize_uint8",
    "RESUME_KEYS",
    "RESUME_DEFAULTS",
    "member_seed",
    "load_model",
    "resolve_device",
    "PREDICTION_COLUMNS",
    "ensemble_predict",
    "evaluate",
    "pick_examples",
    "SPREAD_FLOOR",
    "regression_metrics",
    "conformal_quantile",
    "spread_floor",
    "prediction_interval",
    "empirical_coverage",
    "coverage_confidence_interval",
    "MODELS",
    "N_COMPONENTS",
    "ALPHAS",
    "fit_pca_ridge",
    "predict_pca_ridge",
    "fit_boosting",
    "ladder",
    "crop_means_from",
    "STRIP_PX",
    "INDENTATION",
    "window_centres",
    "predict_map",
    "timed_predict_map",
    "window_means",
    "table_model_map",
    "compare_statistics",
    "dense_step_px",
    "map_label",
    "map_geometry",
    "first_centre_um",
    "load_ensemble",
    "ensemble_mean_predictor",
    "predict",
    "METRIC_COLUMNS",
    "MIN_INPUT_PX",
    "COMPILE_MODES",
    "TrainingStopped",
    "train",
]
