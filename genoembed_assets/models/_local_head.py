"""The block model's local imputation head: each variant read from its LD partners (pure torch).

The block VAE reads a whole block through an 8-unit bottleneck; that bottleneck
is the embedding, and on real haplotypes it predicts a hidden call no better
than a rank-8 PCA of the block (1000 Genomes chr20: 0.905 against 0.918). What
it lacks is locality. The head adds, to the decoder's logits of variant v, a
multinomial logistic regression on the one-hot calls of v's ``k`` strongest-LD
partners in the block (r² over the training subjects' observed calls, as the
LD-neighbour rule picks them):

    logits[c, v] = decoder(z)[c, v] + bias[c, v] + sum_k sum_c' onehot[c', p(v, k)] W[v, k, c', c]

A missing or hidden partner is an all-zero one-hot, so it adds nothing; the
variant itself is never its own partner, so the head never copies its input.
This is the "imputation model wider than the embedding bottleneck" of the
denoising autoencoders genoembed grows from (Dias et al. 2022): sparse,
masked and local.

The head trains beside the VAE on the same masked mini-batches, but against the
decoder's logits *detached*: its loss never reaches the encoder or decoder, so
the VAE, its early stopping and the Phase 1 embedding are exactly what they are
without it. Its weights start at zero (the block model starts as the VAE).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from ._keys import GENOTYPE_CLASSES

__all__ = ["LocalHead", "StackedLocalHead", "local_logits"]


def local_logits(onehot: torch.Tensor, partners: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The head's logits (..., subjects, 3, variants) from class-major one-hot inputs.

    Parameters
    ----------
    onehot
        (..., subjects, 3 * variants) float, class-major, zero where a call is not visible.
    partners
        (..., variants, k) int64 partner indices.
    weight
        (..., variants, k, 3, 3): partner class c' -> logit of class c.
    bias
        (..., 3, variants).
    """
    *lead, n, flat = onehot.shape
    n_var, k = partners.shape[-2:]
    x = onehot.reshape(*lead, n, GENOTYPE_CLASSES, n_var)
    index = partners.reshape(*lead, 1, 1, n_var * k).expand(*lead, n, GENOTYPE_CLASSES, n_var * k)
    gathered = torch.gather(x, -1, index).unflatten(-1, (n_var, k))  # (..., n, 3, V, k)
    # batched over variants: (V, n, 3k) @ (V, 3k, 3)
    lhs = gathered.movedim(-2, -4).movedim(-2, -1).flatten(-2)  # (..., V, n, k * 3)
    rhs = weight.flatten(-3, -2)  # (..., V, k * 3, 3)
    out = torch.matmul(lhs, rhs)  # (..., V, n, 3)
    return out.movedim(-3, -1) + bias.unsqueeze(-3)


class LocalHead(nn.Module):
    """One block's head, saved with its :class:`~._block_vae.BlockVAE` (``local.*`` in the state dict).

    Parameters
    ----------
    partners
        int64 (variants, k) partner indices (:func:`._ld_neighbours.ld_partners`).
    """

    def __init__(self, partners: torch.Tensor | np.ndarray) -> None:
        super().__init__()
        partners = torch.as_tensor(np.asarray(partners), dtype=torch.int64)
        n_var, k = partners.shape
        self.register_buffer("partners", partners)
        self.weight = nn.Parameter(torch.zeros(n_var, k, GENOTYPE_CLASSES, GENOTYPE_CLASSES))
        self.bias = nn.Parameter(torch.zeros(GENOTYPE_CLASSES, n_var))

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        return local_logits(onehot, self.partners, self.weight, self.bias)


class StackedLocalHead(nn.Module):
    """G blocks' heads, padded to the widest block, beside a :class:`~._block_vae.StackedBlockVAE`.

    Padding variants take variant 0 as every partner and keep zero weights; they
    are never a target, and :meth:`block_state_dict` slices them off.

    Parameters
    ----------
    partners
        One int64 (variants, k) array per block; all share k.
    width
        The stack's padded variant count.
    """

    def __init__(self, partners: Sequence[np.ndarray], width: int) -> None:
        super().__init__()
        k = partners[0].shape[1]
        stacked = torch.zeros(len(partners), width, k, dtype=torch.int64)
        for g, p in enumerate(partners):
            stacked[g, : p.shape[0]] = torch.as_tensor(p)
        self.n_snps = [p.shape[0] for p in partners]
        self.register_buffer("partners", stacked)
        self.weight = nn.Parameter(torch.zeros(len(partners), width, k, GENOTYPE_CLASSES, GENOTYPE_CLASSES))
        self.bias = nn.Parameter(torch.zeros(len(partners), 1, GENOTYPE_CLASSES, width))

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        """(G, subjects, 3 * width) class-major one-hot -> (G, subjects, 3, width) logits."""
        return local_logits(onehot, self.partners, self.weight, self.bias.squeeze(1))

    @torch.no_grad()
    def keep_blocks(self, keep: torch.Tensor) -> None:
        """Keep the blocks at ``keep`` (new parameters, as :meth:`StackedBlockVAE.keep_blocks`)."""
        self.weight = nn.Parameter(self.weight.detach()[keep].contiguous())
        self.bias = nn.Parameter(self.bias.detach()[keep].contiguous())
        self.partners = self.partners[keep].contiguous()
        self.n_snps = [self.n_snps[i] for i in keep.tolist()]

    @torch.no_grad()
    def snapshot(self) -> list[torch.Tensor]:
        return [self.weight.detach().clone(), self.bias.detach().clone()]

    @torch.no_grad()
    def block_state_dict(self, g: int, params: Sequence[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Block ``g``'s head as a :class:`LocalHead` state dict (keys without the ``local.`` prefix)."""
        weight, bias = params if params is not None else (self.weight, self.bias)
        n = self.n_snps[g]
        return {"partners": self.partners[g, :n].clone(), "weight": weight[g, :n].clone(),
                "bias": bias[g, 0, :, :n].clone()}
