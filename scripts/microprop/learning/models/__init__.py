"""Networks: the seed's ResNet (Li et al.), the porosity-map classifier (DCNN) and the
sample-level conductivity CNN.
"""
from ._conductivity import (  # noqa: F401
    CONDUCTIVITY_WIDTHS,
    ConductivityCNN,
)
from ._dcnn import (  # noqa: F401
    DCNN_WIDTHS,
    PorosityDCNN,
)
from ._resnet import (  # noqa: F401
    N_PARAMETERS,
    PAPER_N_PARAMETERS,
    ConvBlock,
    IdentityBlock,
    SeedResNet,
    Standardise,
    count_parameters,
    model_flops,
)

__all__ = [
    "CONDUCTIVITY_WIDTHS",
    "ConductivityCNN",
    "DCNN_WIDTHS",
    "PorosityDCNN",
    "N_PARAMETERS",
    "PAPER_N_PARAMETERS",
    "Standardise",
    "IdentityBlock",
    "ConvBlock",
    "SeedResNet",
    "count_parameters",
    "model_flops",
]
