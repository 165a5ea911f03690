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

The head trains beside the VAE on the same masked mini-batches, on top of the
decoder's logits at the posterior mean, *detached*: its loss never reaches the
encoder or decoder, so the VAE, its early stopping and the Phase 1 embedding are
exactly what they are without it. It has its own Adam (following the VAE's
learning-rate schedule) and its own best epoch on the same stop entries. Its
weights start at zero (the block model starts as the VAE).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from ._block_config import DENSE_HEAD_MAX_WIDTH
from ._encoding import one_hot_genotypes
from ._keys import GENOTYPE_CLASSES

__all__ = ["LocalHead", "StackedLocalHead", "local_logits"]


def _bf16_native(device: torch.device) -> bool:
    """bfloat16 GEMMs are fast here: a GPU, or a CPU whose oneDNN has native bf16 (AVX512-BF16 / AMX)."""
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def local_logits(genotypes: torch.Tensor, visible: torch.Tensor, partners: torch.Tensor, weight: torch.Tensor,
                 bias: torch.Tensor) -> torch.Tensor:
    """The head's logits (..., subjects, 3, variants).

    Parameters
    ----------
    genotypes
        (..., subjects, variants) integers in {-1, 0, 1, 2}.
    visible
        Bool, same shape: the calls the head may read (a partner not visible adds nothing).
    partners
        (..., variants, k) int64 partner indices.
    weight
        (..., variants, k, 3, 3): partner class c' -> logit of class c.
    bias
        (..., 3, variants).
    """
    *lead, n, n_var = genotypes.shape
    k = partners.shape[-1]
    g = int(np.prod(lead)) if lead else 1
    # One-hot laid out (block, variant, class, subject), so gathering partners along the variant axis yields
    # (block, variant, partner * class, subject) contiguous: one batched matmul per variant and no copy of the
    # k-times-larger gathered tensor (1.6x faster on CPU than gathering class-major rows).
    x = genotypes.reshape(g, n, n_var).transpose(1, 2)
    seen = visible.reshape(g, n, n_var).transpose(1, 2)
    classes = torch.arange(GENOTYPE_CLASSES, device=x.device, dtype=x.dtype).view(1, 1, -1, 1)
    hot = ((x.unsqueeze(2) == classes) & seen.unsqueeze(2)).to(weight.dtype)  # (g, V, 3, n)
    index = partners.reshape(g, n_var * k, 1, 1).expand(g, n_var * k, GENOTYPE_CLASSES, n)
    gathered = torch.gather(hot, 1, index).view(g * n_var, k * GENOTYPE_CLASSES, n)
    w = weight.reshape(g * n_var, k * GENOTYPE_CLASSES, GENOTYPE_CLASSES).transpose(1, 2)
    out = torch.bmm(w, gathered).view(g, n_var, GENOTYPE_CLASSES, n).permute(0, 3, 2, 1)  # (g, n, 3, V)
    return (out + bias.reshape(g, 1, GENOTYPE_CLASSES, n_var)).reshape(*lead, n, GENOTYPE_CLASSES, n_var)


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

    def forward(self, genotypes: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """(subjects, variants) calls and visibility -> (subjects, 3, variants) logits."""
        return local_logits(genotypes, visible, self.partners, self.weight, self.bias)


class StackedLocalHead(nn.Module):
    """G blocks' heads, padded to the widest block, beside a :class:`~._block_vae.StackedBlockVAE`.

    Padding variants take variant 0 as every partner and keep zero weights; they
    are never a target, and :meth:`block_state_dict` slices them off.

    Two ways to compute the same logits, chosen by the padded width: up to
    ``DENSE_HEAD_MAX_WIDTH`` variants the partner weights are scattered into a dense
    (3W x 3W) matrix per block and applied as one batched GEMM, in bfloat16
    where the CPU has native support (AMX/AVX512-BF16) or on a GPU, since
    GEMMs are what CPUs do fastest (160-variant blocks, batch 256: 6.5x the gather in
    bfloat16, 3.3x in float32); wider blocks gather each variant's partners (the
    dense matrix grows as W², the gather as W: at 860 variants the gather was
    1.6x faster). The head never touches the VAE, so its precision cannot move the embedding.

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
        self.width = int(width)
        self.register_buffer("partners", stacked)
        self.weight = nn.Parameter(torch.zeros(len(partners), width, k, GENOTYPE_CLASSES, GENOTYPE_CLASSES))
        self.bias = nn.Parameter(torch.zeros(len(partners), 1, GENOTYPE_CLASSES, width))
        self.dense = self.width <= DENSE_HEAD_MAX_WIDTH
        self._index_dense()

    def _index_dense(self) -> None:
        """Where each partner weight lands in the dense matrix: row c' * W + partner, column c * W + variant."""
        if not self.dense:
            self.register_buffer("dense_index", None, persistent=False)
            return
        g, w, k = self.partners.shape
        c = GENOTYPE_CLASSES
        block = torch.arange(g, device=self.partners.device).view(g, 1, 1, 1, 1)
        rows = torch.arange(c, device=self.partners.device).view(1, 1, 1, c, 1) * w + self.partners.view(g, w, k, 1, 1)
        cols = torch.arange(c, device=self.partners.device).view(1, 1, 1, 1, c) * w + \
            torch.arange(w, device=self.partners.device).view(1, w, 1, 1, 1)
        # a buffer (not saved with the state) so that .to(device) moves it with the weights
        self.register_buffer("dense_index", ((block * c * w + rows) * c * w + cols).reshape(-1), persistent=False)

    def forward(self, genotypes: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """(G, subjects, width) calls and visibility -> (G, subjects, 3, width) logits."""
        if not self.dense:
            return local_logits(genotypes, visible, self.partners, self.weight, self.bias.squeeze(1))
        g, c, w = self.weight.shape[0], GENOTYPE_CLASSES, self.width
        # index_add (not a plain scatter): a narrow block repeats its strongest partner, and repeats must add up
        matrix = torch.zeros(g * c * w * c * w, dtype=self.weight.dtype, device=self.weight.device).index_add(
            0, self.dense_index, self.weight.reshape(-1)).view(g, c * w, c * w)
        with torch.autocast(genotypes.device.type, dtype=torch.bfloat16, enabled=_bf16_native(genotypes.device)):
            out = torch.bmm(one_hot_genotypes(genotypes, visible), matrix)
        return out.float().unflatten(-1, (c, w)) + self.bias

    @torch.no_grad()
    def keep_blocks(self, keep: torch.Tensor) -> None:
        """Keep the blocks at ``keep`` (new parameters, as :meth:`StackedBlockVAE.keep_blocks`)."""
        self.weight = nn.Parameter(self.weight.detach()[keep].contiguous())
        self.bias = nn.Parameter(self.bias.detach()[keep].contiguous())
        self.partners = self.partners[keep].contiguous()
        self.n_snps = [self.n_snps[i] for i in keep.tolist()]
        self._index_dense()

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
