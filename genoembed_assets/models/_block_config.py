"""Settings of a Phase 1 block model and its training, and the named presets (plain dataclasses)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ._schedules import BETA_SCHEDULES, BetaSchedule

__all__ = ["DENSE_HEAD_MAX_WIDTH", "PRESETS", "BlockVAEConfig"]

#: Blocks up to this many variants run the local head as one dense GEMM (:class:`._local_head.StackedLocalHead`).
DENSE_HEAD_MAX_WIDTH = 512


@dataclass(frozen=True)
class BlockVAEConfig:
    """Everything that shapes a block VAE and its training; defaults live here only.

    Parameters
    ----------
    latent_size
        Latent dimensions per block.
    hidden_widths
        Encoder hidden layer widths; the decoder mirrors them in reverse.
    beta
        Target KL weight.
    beta_schedule
        ``"constant"``, ``"linear"`` (warm-up) or ``"cyclic"`` (cosine cycles).
    kl_warmup_epochs
        Length of the linear warm-up.
    kl_cycles
        Number of cycles of the cyclic schedule over ``max_epochs``.
    max_epochs
        Upper bound on epochs.
    patience
        Epochs without validation improvement before a block stops.
    lr
        Peak AdamW learning rate (linear warm-up, then cosine decay).
    lr_warmup_epochs
        Epochs of learning-rate warm-up.
    weight_decay
        AdamW decoupled weight decay.
    batch_size
        Subjects per mini-batch.
    mask_rate_min, mask_rate_max
        Each step hides a fraction drawn uniformly from this range of every
        subject's observed entries from the encoder (denoising).
    focal_gamma
        Focal-loss exponent; 0 gives plain cross-entropy.
    val_fraction
        Fraction of subjects held out for validation and early stopping.
    heldout_fraction
        Fraction of the validation subjects' observed entries hidden from the
        encoder and never trained on; they score the held-out masked accuracy.
    seed
        Seed of every random draw (splits, initialisation, masking, sampling).
    local_partners
        LD partners each variant's local imputation head reads in blocks of up
        to 512 variants (:mod:`._local_head`); 0 trains the VAE alone. The head
        never touches the embedding. There the head is one dense GEMM whose
        cost does not depend on the partner count: 32 partners against 16 took
        the demo's block model from 0.9733 to 0.9772 held-out accuracy (31 to
        32 of 32 blocks above rank-8 PCA) and a simulated OutOfAfrica_3G09
        cohort from 0.9708 to 0.9749 (30 to 31 of 32), in the same time.
    local_partners_wide
        Partners in blocks wider than 512 variants, where the head gathers
        them and its cost grows with their number: on the chr20 blocks
        (557-952 variants) 32 partners gained 0.25 points (0.9660 -> 0.9685)
        for 1.45x Phase 1's time, so these read 16.
    local_lr
        The head's peak Adam learning rate (it follows the VAE's warm-up and cosine decay).
    local_l2
        The head's L2 penalty: ``local_l2 * sum(W²) / training subjects`` per block.
    """

    latent_size: int = 8
    hidden_widths: tuple[int, ...] = (128,)
    beta: float = 1.0
    beta_schedule: BetaSchedule = "linear"
    kl_warmup_epochs: int = 10
    kl_cycles: int = 4
    max_epochs: int = 100
    patience: int = 10
    lr: float = 3e-3
    lr_warmup_epochs: int = 2
    weight_decay: float = 1e-4
    batch_size: int = 128
    mask_rate_min: float = 0.05
    mask_rate_max: float = 0.25
    focal_gamma: float = 0.0
    val_fraction: float = 0.1
    heldout_fraction: float = 0.05
    seed: int = 0
    local_partners: int = 32
    local_partners_wide: int = 16
    local_lr: float = 0.05
    local_l2: float = 0.01

    def __post_init__(self) -> None:
        # Coerce lists (from JSON or a Dagster Config) so the frozen config stays hashable.
        object.__setattr__(self, "hidden_widths", tuple(int(w) for w in self.hidden_widths))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field; called on construction."""
        if self.latent_size < 1:
            raise ValueError(f"latent_size must be at least 1, got {self.latent_size}")
        if not self.hidden_widths or any(w < 1 for w in self.hidden_widths):
            raise ValueError(f"hidden_widths must be one or more positive widths, got {self.hidden_widths}")
        if self.beta < 0 or not math.isfinite(self.beta):
            raise ValueError(f"beta must be a finite number >= 0, got {self.beta}")
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(
                f"beta_schedule must be one of {list(BETA_SCHEDULES)}, got {self.beta_schedule!r}"
            )
        for name in ("kl_warmup_epochs", "lr_warmup_epochs", "weight_decay", "focal_gamma", "local_l2",
                     "local_partners", "local_partners_wide"):  # 0 partners: no local head
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("kl_cycles", "max_epochs", "patience", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        for name in ("mask_rate_min", "mask_rate_max"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.mask_rate_min > self.mask_rate_max:
            raise ValueError(
                f"mask_rate_min ({self.mask_rate_min}) must not exceed mask_rate_max ({self.mask_rate_max})"
            )
        if not self.local_lr > 0:
            raise ValueError(f"local_lr must be > 0, got {self.local_lr}")
        for name in ("val_fraction", "heldout_fraction"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {getattr(self, name)}")

    def head_partners(self, n_snps: int) -> int:
        """Partners per variant of the local head of a block of ``n_snps`` variants (0: no head)."""
        if n_snps < 2 or not self.local_partners:
            return 0
        return self.local_partners if n_snps <= DENSE_HEAD_MAX_WIDTH else self.local_partners_wide

    def replace(self, **changes) -> "BlockVAEConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


#: Named presets; "balanced" is the class defaults.
PRESETS: dict[str, BlockVAEConfig] = {
    "fast": BlockVAEConfig(hidden_widths=(64,), max_epochs=30, patience=5, kl_warmup_epochs=5, batch_size=256),
    "balanced": BlockVAEConfig(),
    "thorough": BlockVAEConfig(
        latent_size=16, hidden_widths=(256, 128), max_epochs=300, patience=20, kl_warmup_epochs=20, lr=1e-3
    ),
    # `genoembed impute`'s default: the same bottleneck, a wider layer, a weaker KL pull and smaller batches
    # (more steps on small cohorts); it beat rank-k PCA where "balanced" did not (docs/benchmarks.md)
    "impute": BlockVAEConfig(hidden_widths=(256,), beta=0.1, batch_size=32),
}
