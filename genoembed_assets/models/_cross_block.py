"""Phase 2 cross-block Transformer: the ``nn.Module`` (pure torch, no Dagster; its config is ``_cross_block_config``).

Tokens are the blocks of one subject: each block's standardized Phase 1
embedding goes through its own linear projection (latent sizes may differ by
block), plus a learned block identity, a chromosome embedding and a
sinusoidal encoding of the block midpoint in Mb. A CLS token is prepended.

The objective is masked-block modelling with two heads:

* a token head predicts a hidden block from the encoder output at its
  position (standard masked modelling), and
* a CLS head predicts every hidden block from the CLS output alone (plus the
  hidden block's identity), so the CLS vector, the subject embedding, must
  summarize what the visible blocks say about the hidden ones.

Inputs are standardized and whitened per block, and axes that every block
shares (ancestry) are regressed out before modelling (see
``_standardize.shared_axes``): otherwise every block predicts every other one
and no block-specific signal is left. Block importance (``_importance``) is
how well the token head predicts a hidden block from the others on held-out
subjects, tested against a permutation null, with a guard against blocks
that predict each other only through LD.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from ._attention import attend
from ._cross_block_config import AUTO_ATTENTION_WINDOW, CROSS_BLOCK_PRESETS, DENSE_ATTENTION_MAX_BLOCKS, CrossBlockConfig

__all__ = [
    "AUTO_ATTENTION_WINDOW",
    "CROSS_BLOCK_PRESETS",
    "DENSE_ATTENTION_MAX_BLOCKS",
    "CrossBlockConfig",
    "CrossBlockOutput",
    "CrossBlockTransformer",
    "draw_block_mask",
    "sinusoidal_encoding",
]


class CrossBlockOutput(NamedTuple):
    """What one forward pass returns.

    ``token_pred`` and ``cls_pred`` are ``(batch, blocks, k_max)`` predictions of
    the standardized embeddings; ``cls`` the ``(batch, width)`` subject
    embedding; ``cls_attention`` ``(batch, layers, heads, blocks)`` CLS
    attention to the block tokens and ``received_attention`` (same shape) the
    query-weighted attention each block token receives from block tokens
    (None unless asked for).
    """

    token_pred: torch.Tensor
    cls_pred: torch.Tensor
    cls: torch.Tensor
    cls_attention: torch.Tensor | None
    received_attention: torch.Tensor | None


def draw_block_mask(n: int, n_blocks: int, fraction_min: float, fraction_max: float, generator: torch.Generator) -> torch.Tensor:
    """Boolean ``(n, n_blocks)`` mask hiding a per-subject random fraction of blocks.

    The fraction is uniform in ``[fraction_min, fraction_max]``; at least one
    block is hidden and at least one stays visible.
    """
    fraction = fraction_min + (fraction_max - fraction_min) * torch.rand(n, generator=generator)
    count = torch.clamp(torch.round(fraction * n_blocks), 1, n_blocks - 1).long()
    ranks = torch.rand(n, n_blocks, generator=generator).argsort(dim=1).argsort(dim=1)
    return ranks < count[:, None]


def sinusoidal_encoding(position: torch.Tensor, width: int) -> torch.Tensor:
    """Transformer sinusoidal encoding of real positions (Mb): ``(n,) -> (n, width)``."""
    half = width // 2
    # Wavelengths from ~2 Mb (LD-block scale) to ~10,000 Mb (whole genome).
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=position.device) / max(half, 1))
    angle = position.float()[:, None] * freq[None, :]
    enc = torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)
    if enc.shape[1] < width:
        enc = torch.nn.functional.pad(enc, (0, width - enc.shape[1]))
    return enc


class _EncoderLayer(nn.Module):
    """Pre-LayerNorm Transformer layer that can return what block importance reads.

    ``nn.TransformerEncoderLayer`` discards the attention weights on its fast
    path, and block importance needs them; attention itself is in ``_attention``
    (dense, or windowed for genome-wide cohorts).
    """

    def __init__(self, width: int, heads: int, dropout: float, window: int = 0):
        super().__init__()
        self.heads = heads
        self.window = window
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.attn_drop = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(width)
        self.ff = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * width, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, *, return_attention: bool = False, query_weight: torch.Tensor | None = None):
        """Return the new states, the CLS attention row and the weighted received attention (``attend``)."""
        n, t, d = x.shape
        dh = d // self.heads
        q, k, v = self.qkv(self.norm1(x)).view(n, t, 3, self.heads, dh).permute(2, 0, 3, 1, 4)
        mixed, cls_row, received = attend(q, k, v, self.window, self.attn_drop,
                                          return_attention=return_attention, query_weight=query_weight)
        x = x + self.drop(self.out(mixed.transpose(1, 2).reshape(n, t, d)))
        x = x + self.drop(self.ff(self.norm2(x)))
        return x, cls_row, received


class CrossBlockTransformer(nn.Module):
    """Masked-block Transformer over one subject's Phase 1 block embeddings.

    Parameters
    ----------
    dims
        Latent size of each block (inputs are padded to ``max(dims)``).
    chrom_index
        Chromosome code of each block (0..n_chrom-1).
    position_mb
        Block midpoint in Mb.
    config
        Model sizes (width, layers, heads, dropout).
    n_chrom
        Number of chromosome codes (23 + one for unknown).
    """

    def __init__(self, dims, chrom_index, position_mb, config: CrossBlockConfig, n_chrom: int = 24):
        super().__init__()
        dims = torch.as_tensor(dims, dtype=torch.long)
        n_blocks, k_max, d = int(dims.numel()), int(dims.max()), config.width
        self.n_blocks, self.k_max, self.width = n_blocks, k_max, d
        # Padded latent dimensions are zero in the input and ignored by the loss.
        self.register_buffer("dim_mask", (torch.arange(k_max)[None, :] < dims[:, None]).float())
        self.register_buffer("chrom_index", torch.as_tensor(chrom_index, dtype=torch.long))
        self.register_buffer("position_code", sinusoidal_encoding(torch.as_tensor(position_mb, dtype=torch.float32), d))
        scale = 1.0 / math.sqrt(k_max)
        self.in_weight = nn.Parameter(torch.randn(n_blocks, k_max, d) * scale)
        self.in_bias = nn.Parameter(torch.zeros(n_blocks, d))
        self.block_embedding = nn.Parameter(torch.randn(n_blocks, d) * 0.02)
        self.chrom_embedding = nn.Embedding(n_chrom, d)
        nn.init.normal_(self.chrom_embedding.weight, std=0.02)
        self.mask_token = nn.Parameter(torch.randn(d) * 0.02)
        self.cls_token = nn.Parameter(torch.randn(d) * 0.02)
        self.window = config.window_for(n_blocks)
        self.layers = nn.ModuleList(_EncoderLayer(d, config.heads, config.dropout, self.window) for _ in range(config.layers))
        self.norm = nn.LayerNorm(d)
        out_scale = 1.0 / math.sqrt(d)
        self.token_weight = nn.Parameter(torch.randn(n_blocks, d, k_max) * out_scale)
        self.token_bias = nn.Parameter(torch.zeros(n_blocks, k_max))
        # CLS head: the hidden block's identity queries the subject vector.
        self.cls_query = nn.Parameter(torch.randn(n_blocks, d) * 0.02)
        self.cls_hidden = nn.Linear(d, d)
        self.cls_weight = nn.Parameter(torch.randn(n_blocks, d, k_max) * out_scale)
        self.cls_bias = nn.Parameter(torch.zeros(n_blocks, k_max))

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        return_attention: bool = False,
        query_weight: torch.Tensor | None = None,
    ) -> CrossBlockOutput:
        """Encode ``x`` (batch, blocks, k_max), hiding the blocks where ``mask`` is True.

        With ``return_attention`` the output carries the CLS attention to each
        block and, given ``query_weight`` (batch, blocks), the attention each
        block token receives from the other block tokens weighted by
        ``query_weight`` of the querying block (both per layer and head).
        """
        identity = self.block_embedding + self.chrom_embedding(self.chrom_index) + self.position_code
        values = torch.einsum("nbk,bkd->nbd", x * self.dim_mask, self.in_weight) + self.in_bias
        if mask is not None:
            # A hidden block keeps its identity (the model must know what to predict) but not its value.
            values = torch.where(mask[..., None], self.mask_token.expand_as(values), values)
        tokens = values + identity
        h = torch.cat([self.cls_token.expand(x.shape[0], 1, -1), tokens], dim=1)
        cls_rows, received = [], []
        for layer in self.layers:
            h, cls_row, got = layer(h, return_attention=return_attention, query_weight=query_weight)
            if return_attention:
                cls_rows.append(cls_row)
                if got is not None:
                    received.append(got)
        h = self.norm(h)
        cls, block_h = h[:, 0], h[:, 1:]
        token_pred = torch.einsum("nbd,bdk->nbk", block_h, self.token_weight) + self.token_bias
        query = torch.nn.functional.gelu(self.cls_hidden(cls)[:, None, :] + self.cls_query)
        cls_pred = torch.einsum("nbd,bdk->nbk", query, self.cls_weight) + self.cls_bias
        return CrossBlockOutput(
            token_pred,
            cls_pred,
            cls,
            torch.stack(cls_rows, dim=1) if cls_rows else None,
            torch.stack(received, dim=1) if received else None,
        )

    def masked_loss(self, out: CrossBlockOutput, target: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor, cls_loss_weight: float) -> dict[str, torch.Tensor]:
        """MSE over hidden blocks' active dimensions, per head and combined.

        ``weight`` (blocks, k_max) is 1 for dimensions that count (real and
        not collapsed in Phase 1), else 0.
        """
        w = mask[..., None].float() * weight
        denom = w.sum().clamp_min(1.0)
        token = (((out.token_pred - target) ** 2) * w).sum() / denom
        cls = (((out.cls_pred - target) ** 2) * w).sum() / denom
        return {"loss": token + cls_loss_weight * cls, "token": token, "cls": cls}
