"""Weight initialisation as Keras does it by default, applied to every network the training loop fits.

The reference code (Keras) builds every layer with its defaults: Dense and GRU input kernels glorot-uniform, GRU
recurrent kernels orthogonal, every bias zero. PyTorch's defaults differ (uniform ±1/sqrt(fan_in) for weights *and*
biases), and that alone cost the Conversation model 0.10 HR@3 and doubled the GRU models' epochs on identical data
(the fidelity issue's measurement). ``fidelity.init: torch`` keeps PyTorch's defaults.

Shapes follow PyTorch: ``nn.Linear.weight`` (out, in); ``nn.GRU.weight_ih_l{k}`` (3H, in) and ``weight_hh_l{k}``
(3H, H) hold the reset, update and new gates stacked. Keras's GRU kernel is the transpose, (in, 3H), with the gates
side by side, and its glorot limit sqrt(6 / (in + 3H)) is taken over the whole stacked matrix — so is ours. Its
orthogonal recurrent kernel (H, 3H) has orthonormal rows; the transpose, ours, has orthonormal columns.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

InitScheme = Literal["keras", "torch"]


@torch.no_grad()
def keras_initialise_(module: nn.Module) -> nn.Module:
    """Re-initialise every ``nn.Linear`` and ``nn.GRU`` inside ``module`` in place as Keras would; returns it.

    Other parameterised layers keep their own initialisation (the project's networks have none).
    """
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.GRU):
            for name, parameter in layer.named_parameters():
                if name.startswith("weight_ih"):
                    nn.init.xavier_uniform_(parameter)
                elif name.startswith("weight_hh"):
                    nn.init.orthogonal_(parameter)
                elif name.startswith("bias"):
                    nn.init.zeros_(parameter)
    return module


def initialise_(module: nn.Module, scheme: InitScheme) -> nn.Module:
    """Apply ``scheme`` ("keras": ``keras_initialise_``; "torch": leave PyTorch's defaults) and return ``module``."""
    if scheme == "keras":
        return keras_initialise_(module)
    if scheme == "torch":
        return module
    raise ValueError(f"unknown initialisation {scheme!r}; expected 'keras' or 'torch'")
