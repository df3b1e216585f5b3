"""The dataset: crops around indents, per-batch HDF5 shards, splits, the
assembly of ``dataset.h5`` and its one reader; the porosity study's local maps and
the sample study's images (:func:`open_dataset`,
:func:`read_split`, :func:`read_crops`).
"""
from ._assemble import (  # noqa: F401
    assemble,
)
from ._crops import (  # noqa: F401
    SKIP_NO_POSITION,
    SKIP_NO_TARGET,
    SKIP_OUTSIDE,
    crop_indents,
    crop_size_px,
)
from ._maps import (  # noqa: F401
    MAP_SCALES,
    cut_local_maps,
    read_maps,
    write_map_dataset,
)
from ._reader import (  # noqa: F401
    has_split,
    open_dataset,
    read_attrs,
    read_crops,
    read_split,
    read_splits,
    read_targets,
)
from ._samples import (  # noqa: F401
    load_sample_images,
    read_sample_dataset,
    read_sample_tables,
    sample_folds,
    write_sample_dataset,
)
from ._shards import (  # noqa: F401
    CONSISTENT_ATTRS,
    META_COLUMNS,
    META_STR,
    TARGETS,
    read_shard,
    write_shard,
)
from ._splits import (  # noqa: F401
    SPLIT_SCHEMES,
    SPLITS,
    block_ids,
    blocked_split,
    random_split,
)

__all__ = [
    "read_sample_tables",
    "load_sample_images",
    "sample_folds",
    "write_sample_dataset",
    "read_sample_dataset",
    "MAP_SCALES",
    "cut_local_maps",
    "read_maps",
    "write_map_dataset",
    "assemble",
    "SKIP_OUTSIDE",
    "SKIP_NO_POSITION",
    "SKIP_NO_TARGET",
    "crop_size_px",
    "crop_indents",
    "open_dataset",
    "has_split",
    "read_split",
    "read_splits",
    "read_targets",
    "read_attrs",
    "read_crops",
    "META_STR",
    "META_COLUMNS",
    "TARGETS",
    "CONSISTENT_ATTRS",
    "write_shard",
    "read_shard",
    "SPLITS",
    "SPLIT_SCHEMES",
    "random_split",
    "block_ids",
    "blocked_split",
]
