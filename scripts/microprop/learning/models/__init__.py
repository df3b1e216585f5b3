"""Networks: the seed's ResNet (Li et al.), CentreNet (centre-weighted pooling of a
fully convolutional trunk), the porosity-map classifier (DCNN) and the sample-level
conductivity CNN.
"""
from ._centre import (  # noqa: F401
    CENTRE_WIDTHS,
    N_CENTRE_PARAMETERS,
    CentreNet,
    centre_arch_kwargs,
)
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

#: ``learning.architecture`` of the config -> the network class (its name is ``meta["arch"]``)
ARCHITECTURES = {"seed_resnet": SeedResNet, "centre": CentreNet}

__all__ = [
    "ARCHITECTURES",
    "CENTRE_WIDTHS",
    "N_CENTRE_PARAMETERS",
    "CentreNet",
    "centre_arch_kwargs",
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
