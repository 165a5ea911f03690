"""Phase 2 cross-block Transformer: config and ``nn.Module`` (pure torch, no Dagster).

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
from dataclasses import dataclass, fields, replace
from typing import NamedTuple

import torch
from torch import nn

from ._attention import attend

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


# Dense attention is exact and cheap up to a few hundred blocks (2.1 s and 1.9 GB
# per batch-64 step at 400 blocks, balanced model); beyond, windows bound memory.
DENSE_ATTENTION_MAX_BLOCKS = 256
AUTO_ATTENTION_WINDOW = 64


@dataclass(frozen=True)
class CrossBlockConfig:
    """Hyper-parameters of the cross-block Transformer and its training.

    Parameters
    ----------
    width
        Model width (token dimension); also the subject embedding size.
    layers
        Number of Transformer encoder layers.
    heads
        Attention heads per layer; must divide ``width``.
    dropout
        Dropout in attention and feed-forward layers, in [0, 1).
    mask_fraction_min, mask_fraction_max
        Each subject hides a fraction of its blocks drawn uniformly from this
        range (at least one block hidden, at least one visible).
    cls_loss_weight
        Weight of the CLS-head reconstruction loss beside the token-head loss.
    lr
        AdamW learning rate.
    weight_decay
        AdamW weight decay.
    batch_size
        Subjects per mini-batch.
    epochs
        Maximum number of epochs.
    patience
        Epochs without validation improvement before stopping.
    val_fraction
        Fraction of subjects held out for early stopping, in (0, 0.5].
    importance_fraction
        Fraction of subjects held out from fitting AND early stopping, in
        (0, 0.5]: block importance and its null are measured on them only
        (choosing the best epoch on the importance subjects biased their
        null z-scores upward). ``val_fraction + importance_fraction <= 0.6``.
    seeds
        One model is trained per seed; importance is reported across seeds.
    shared_factors
        Axes every block shares (ancestry) regressed out of the standardized
        embeddings before modelling: -1 picks them from the data (see
        ``shared_axes``), 0 keeps everything, n > 0 removes the top n
        principal components of the concatenated embeddings.
    importance_subjects
        Most test subjects (``importance_fraction``) on which importance is
        measured (subsampled, seeded, when the split is larger).
    importance_mask_draws
        Random block masks per held-out subject when measuring importance
        (the same masks for the observed data and every null replicate).
    importance_permutations
        Permutation-null replicates (held-out subjects shuffled within each
        block independently); at least 2. See ``_importance``.
    importance_ld_window_mb
        Blocks on one chromosome whose intervals lie within this many Mb are
        LD neighbours: a block must also predict (or be predicted) with its
        neighbours hidden, or it is reported ``ld_only``.
    distance_subjects
        Subjects (subsampled, seeded) for the Phase 1 vs Phase 2 distance correlation.
    attention_window
        How block tokens attend. ``-1`` (auto): dense up to
        ``DENSE_ATTENTION_MAX_BLOCKS`` blocks, windows of
        ``AUTO_ATTENTION_WINDOW`` blocks beyond; ``0``: always dense; ``w > 0``:
        windows of ``w`` blocks whenever the cohort has more than ``2 w``
        blocks. In windowed (block-sparse) attention each block token attends
        to the CLS token and to the blocks of its own window and the two
        windows beside it (genomic order); the CLS token attends to every
        block, so distant blocks still exchange information through it from
        the second layer on. Memory per layer is ``O(blocks x 3w)`` instead of
        ``O(blocks^2)``: at 1,703 blocks dense attention took 21.5 GB per
        training step (issue 12).
    screen_focus
        Whether training focuses on the blocks a linear cross-block screen
        (``_screen``, on training subjects only) finds dependent on distal
        blocks (q < 0.05): their loss weights are raised so that together they
        weigh as much as all other blocks. ``-1`` (auto): on when attention is
        windowed (more than ``DENSE_ATTENTION_MAX_BLOCKS`` blocks), where the
        few blocks with structure are otherwise a vanishing share of the loss;
        ``0``: off; ``1``: on. Every block stays a token and a target, and
        importance is still tested on held-out subjects only.
    importance_head
        Which head's prediction of a hidden block importance scores:
        ``"token"``; ``"best"``: per seed and block, the head (token or CLS)
        with the higher R2 on the validation subjects (chosen before the
        test on the importance subjects, so the null stays exact);
        ``"auto"``: ``"best"`` where training focuses (``focus_for``), else
        ``"token"``.
    """

    width: int = 64
    layers: int = 2
    heads: int = 4
    dropout: float = 0.1
    mask_fraction_min: float = 0.15
    mask_fraction_max: float = 0.30
    cls_loss_weight: float = 1.0
    lr: float = 2e-3
    weight_decay: float = 1e-4
    batch_size: int = 128
    epochs: int = 60
    patience: int = 8
    val_fraction: float = 0.1
    importance_fraction: float = 0.15
    seeds: tuple[int, ...] = (0, 1, 2)
    shared_factors: int = -1
    importance_subjects: int = 2000
    importance_mask_draws: int = 4
    importance_permutations: int = 50
    importance_ld_window_mb: float = 2.0
    distance_subjects: int = 1000
    attention_window: int = -1
    screen_focus: int = -1
    importance_head: str = "auto"

    def validate(self) -> "CrossBlockConfig":
        """Raise ``ValueError`` naming the first bad field; return self."""
        for name in ("width", "layers", "heads", "batch_size", "epochs", "patience", "importance_subjects", "importance_mask_draws",
                     "importance_permutations", "distance_subjects"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"CrossBlockConfig.{name} must be a positive integer, got {value!r}")
        if self.importance_permutations < 2:
            raise ValueError(f"CrossBlockConfig.importance_permutations must be at least 2 (the null needs a spread), got {self.importance_permutations!r}")
        if not isinstance(self.attention_window, int) or isinstance(self.attention_window, bool) or self.attention_window < -1:
            raise ValueError(f"CrossBlockConfig.attention_window must be -1 (auto), 0 (dense) or a positive integer, got {self.attention_window!r}")
        if self.screen_focus not in (-1, 0, 1) or isinstance(self.screen_focus, bool):
            raise ValueError(f"CrossBlockConfig.screen_focus must be -1 (auto), 0 (off) or 1 (on), got {self.screen_focus!r}")
        if self.importance_head not in ("auto", "token", "best"):
            raise ValueError(f"CrossBlockConfig.importance_head must be 'auto', 'token' or 'best', got {self.importance_head!r}")
        if not self.importance_ld_window_mb >= 0:
            raise ValueError(f"CrossBlockConfig.importance_ld_window_mb must be >= 0, got {self.importance_ld_window_mb!r}")
        if self.width % self.heads:
            raise ValueError(f"CrossBlockConfig.width ({self.width}) must be divisible by heads ({self.heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"CrossBlockConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if not 0.0 < self.mask_fraction_min <= self.mask_fraction_max < 1.0:
            raise ValueError(
                "CrossBlockConfig.mask_fraction_min/max must satisfy 0 < min <= max < 1, "
                f"got min={self.mask_fraction_min!r}, max={self.mask_fraction_max!r}"
            )
        if not isinstance(self.shared_factors, int) or self.shared_factors < -1:
            raise ValueError(f"CrossBlockConfig.shared_factors must be -1 (auto), 0 (off) or a positive integer, got {self.shared_factors!r}")
        if self.cls_loss_weight < 0:
            raise ValueError(f"CrossBlockConfig.cls_loss_weight must be >= 0, got {self.cls_loss_weight!r}")
        if not self.lr > 0:
            raise ValueError(f"CrossBlockConfig.lr must be > 0, got {self.lr!r}")
        if self.weight_decay < 0:
            raise ValueError(f"CrossBlockConfig.weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0.0 < self.val_fraction <= 0.5:
            raise ValueError(f"CrossBlockConfig.val_fraction must be in (0, 0.5], got {self.val_fraction!r}")
        if not 0.0 < self.importance_fraction <= 0.5:
            raise ValueError(f"CrossBlockConfig.importance_fraction must be in (0, 0.5], got {self.importance_fraction!r}")
        if self.val_fraction + self.importance_fraction > 0.6:
            raise ValueError("CrossBlockConfig.val_fraction + importance_fraction must be <= 0.6 (training keeps the rest), "
                             f"got {self.val_fraction!r} + {self.importance_fraction!r}")
        seeds = tuple(self.seeds)
        if not seeds or any(not isinstance(s, int) or isinstance(s, bool) for s in seeds) or len(set(seeds)) != len(seeds):
            raise ValueError(f"CrossBlockConfig.seeds must be a non-empty tuple of distinct integers, got {self.seeds!r}")
        return self

    def window_for(self, n_blocks: int) -> int:
        """The attention window used for ``n_blocks`` blocks; 0 means dense attention."""
        if self.attention_window == -1:
            return AUTO_ATTENTION_WINDOW if n_blocks > DENSE_ATTENTION_MAX_BLOCKS else 0
        if self.attention_window == 0 or n_blocks <= 2 * self.attention_window:
            return 0
        return self.attention_window

    def focus_for(self, n_blocks: int) -> bool:
        """Whether training focuses on screened blocks for a cohort of ``n_blocks`` blocks."""
        if self.screen_focus == -1:
            return self.window_for(n_blocks) > 0
        return bool(self.screen_focus)

    def head_for(self, n_blocks: int) -> str:
        """``"token"`` or ``"best"``: the importance head rule for ``n_blocks`` blocks."""
        if self.importance_head == "auto":
            return "best" if self.focus_for(n_blocks) else "token"
        return self.importance_head

    def with_overrides(self, **overrides) -> "CrossBlockConfig":
        """A copy with some fields changed (unknown names raise ``ValueError``)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown CrossBlockConfig fields {unknown}; known: {sorted(known)}")
        return replace(self, **overrides).validate()


CROSS_BLOCK_PRESETS: dict[str, CrossBlockConfig] = {
    # Smoke runs, CI and the validity grid. Cross-block structure is learned
    # after a loss plateau, so patience stays generous even here; at 40 epochs
    # most seeds were still improving when stopped, and the planted strata
    # came back with ARI 0.79-0.84 instead of 0.93-0.97 (docs/validity.md).
    "fast": CrossBlockConfig(width=32, layers=2, heads=2, lr=5e-3, batch_size=64, epochs=80, patience=15, importance_subjects=1000),
    "balanced": CrossBlockConfig(width=64, layers=2, heads=4, lr=3e-3, batch_size=64, epochs=100, patience=15),
    # Genome-wide cohorts (hundreds to thousands of blocks): windowed attention
    # (auto above 256 blocks); no dropout, which cost 40% of a 1,703-block step on
    # CPU and matters little beside the masking; two seeds and a shorter budget,
    # because one epoch over 2,000 subjects x 1,703 blocks takes ~0.5 min on 2 cores.
    # No early stop within the 20 epochs: with patience 5 both seeds of a 1,200-subject
    # synthetic cohort stopped on the plateau after 8-14 epochs (weak block rank 229,
    # k = 1); run to 20 it ranked the planted blocks 1, 2, 3 (docs/scale.md).
    "genome": CrossBlockConfig(width=32, layers=2, heads=2, dropout=0.0, lr=5e-3, batch_size=64, epochs=20, patience=20,
                               seeds=(0, 1), importance_subjects=400, importance_permutations=30),
    "thorough": CrossBlockConfig(width=128, layers=4, heads=8, lr=1e-3, batch_size=128, epochs=300, patience=30, seeds=(0, 1, 2, 3, 4), importance_mask_draws=8),
}


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
