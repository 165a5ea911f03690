"""Settings of the Phase 2 cross-block Transformer and its training, and the named presets (a plain dataclass)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

__all__ = ["AUTO_ATTENTION_WINDOW", "CROSS_BLOCK_PRESETS", "DENSE_ATTENTION_MAX_BLOCKS", "CrossBlockConfig"]


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
