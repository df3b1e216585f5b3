"""Networks: the seed's ResNet (Li et al.).
"""
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
    "N_PARAMETERS",
    "PAPER_N_PARAMETERS",
    "Standardise",
    "IdentityBlock",
    "ConvBlock",
    "SeedResNet",
    "count_parameters",
    "model_flops",
]
