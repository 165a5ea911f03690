"""The genotype encoding every block model reads (pure torch).

Genotype ``g`` in {0, 1, 2} becomes a one-hot triple; a missing or hidden
entry becomes an all-zero triple, so it contributes nothing (never "dosage 0").
Class-major: class ``c`` of variant ``v`` sits at ``c * variants + v``.
"""

from __future__ import annotations

import torch

from ._keys import GENOTYPE_CLASSES

__all__ = ["one_hot_genotypes"]


def one_hot_genotypes(genotypes: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Encoder input: one-hot over {0, 1, 2}, all-zero where not visible.

    Parameters
    ----------
    genotypes
        Integer tensor (..., variants), values in {-1, 0, 1, 2}.
    visible
        Bool tensor of the same shape; False for missing, hidden and padding.

    Returns
    -------
    torch.Tensor
        float32 (..., 3 * variants), class-major (class c of variant v at ``c * variants + v``).
    """
    classes = torch.arange(GENOTYPE_CLASSES, device=genotypes.device, dtype=genotypes.dtype).unsqueeze(-1)
    hot = (genotypes.unsqueeze(-2) == classes) & visible.unsqueeze(-2)
    return hot.to(torch.float32).flatten(-2)
