"""Pure torch models (no Dagster): Phase 1 block VAE, Phase 2 cross-block Transformer, block importance."""

from ._block_artifacts import BlockFit, load_block_model, save_block_fit
from ._block_protocol import block_metrics, heldout_mask, mode_baseline, split_subjects, validate_blocks
from ._block_training import train_blocks
from ._block_vae import PRESETS, BlockVAE, BlockVAEConfig, LossOutput, StackedBlockVAE, one_hot_genotypes, vae_loss
from ._cross_block import CROSS_BLOCK_PRESETS, CrossBlockConfig, CrossBlockTransformer
from ._cross_block_artifacts import plot_block_importance, save_cross_block_result
from ._cross_block_training import CrossBlockResult, fit_cross_block, seed_ensemble
from ._embedding_store import BlockEmbeddingStore, InMemoryEmbeddingStore
from ._importance import ImportanceResult, ld_neighbours, measure_importance
from ._standardize import Standardizer, shared_axes
from ._keys import GENOTYPE_CLASSES, METRIC_KEYS, TENSOR_KEYS
from ._schedules import BETA_SCHEDULES, kl_weight, learning_rate
from ._synthetic import synthetic_genotypes

__all__ = [
    "CROSS_BLOCK_PRESETS",
    "BlockEmbeddingStore",
    "CrossBlockConfig",
    "CrossBlockResult",
    "CrossBlockTransformer",
    "ImportanceResult",
    "InMemoryEmbeddingStore",
    "Standardizer",
    "ld_neighbours",
    "measure_importance",
    "shared_axes",
    "fit_cross_block",
    "seed_ensemble",
    "plot_block_importance",
    "save_cross_block_result",
    "BETA_SCHEDULES",
    "GENOTYPE_CLASSES",
    "METRIC_KEYS",
    "PRESETS",
    "TENSOR_KEYS",
    "BlockFit",
    "BlockVAE",
    "BlockVAEConfig",
    "LossOutput",
    "StackedBlockVAE",
    "block_metrics",
    "heldout_mask",
    "kl_weight",
    "learning_rate",
    "load_block_model",
    "mode_baseline",
    "one_hot_genotypes",
    "save_block_fit",
    "split_subjects",
    "synthetic_genotypes",
    "train_blocks",
    "validate_blocks",
    "vae_loss",
]
