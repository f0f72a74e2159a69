"""The regression head shared by the LAION aesthetic predictor and ImageReward.

Both publish the same five-linear stack without activations (the ReLUs are commented out in
christophschuhmann/improved-aesthetic-predictor ``simple_inference.py`` @6934dd8 and in
THUDM/ImageReward ``ImageReward/ImageReward.py`` @c1392c6):

    Linear(d, 1024) Dropout(0.2) Linear(1024, 128) Dropout(0.2) Linear(128, 64) Dropout(0.1)
    Linear(64, 16) Linear(16, 1)

The dropouts sit at Sequential indices 1, 3 and 5, so the checkpoints' parameters are named
``layers.{0,2,4,6,7}.{weight,bias}``; the module below keeps those indices so the published state
dicts load without renaming. At inference it is an affine map, but it is evaluated layer by layer
as the references do, for identical float32 rounding.
"""

from __future__ import annotations

import torch
from torch import nn

from sail_core.errors import InputError

HIDDEN = (1024, 128, 64, 16)
DROPOUTS = (0.2, 0.2, 0.1)


class LinearStackHead(nn.Module):
    def __init__(self, input_size: int, hidden: tuple[int, ...] = HIDDEN) -> None:
        super().__init__()
        widths = (input_size, *hidden, 1)
        modules: list[nn.Module] = []
        for index in range(len(widths) - 1):
            modules.append(nn.Linear(widths[index], widths[index + 1]))
            if index < len(DROPOUTS):
                modules.append(nn.Dropout(DROPOUTS[index]))
        self.layers = nn.Sequential(*modules)
        self.input_size = input_size

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


def head_from_state_dict(state: dict[str, torch.Tensor], prefix: str = "layers.") -> LinearStackHead:
    """A head whose widths are read from the checkpoint (``prefix`` + ``0.weight`` is [1024, d]);
    any missing, extra or misshapen tensor is an InputError."""
    try:
        weights = [state[f"{prefix}{i}.weight"] for i in (0, 2, 4, 6, 7)]
        head = LinearStackHead(weights[0].shape[1], tuple(w.shape[0] for w in weights[:-1]))
        head.layers.load_state_dict({k[len(prefix):]: v.float() for k, v in state.items()})
    except (KeyError, RuntimeError, IndexError) as exc:
        raise InputError(f"not a five-linear regression head state dict ({exc})", parameter="head") from exc
    return head.eval()
