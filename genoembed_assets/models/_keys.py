"""Names of the tensors passed between the block VAE's stages (scvi-tools style).

Keys live in ``NamedTuple`` singletons so a typo is an ``AttributeError``
rather than a silent ``KeyError`` deep inside training.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["GENOTYPE_CLASSES", "METRIC_KEYS", "TENSOR_KEYS"]

#: Genotype classes the decoder predicts (dosage of the alternate allele).
GENOTYPE_CLASSES = 3


class _TensorKeys(NamedTuple):
    GENOTYPES: str = "genotypes"
    VISIBLE: str = "visible"
    TARGET: str = "target"
    Z_MEAN: str = "z_mean"
    Z_LOG_VAR: str = "z_log_var"
    Z: str = "z"
    LOGITS: str = "logits"


class _MetricKeys(NamedTuple):
    HELDOUT_ACCURACY: str = "heldout_accuracy"
    VAE_HELDOUT_ACCURACY: str = "vae_heldout_accuracy"
    LOCAL_PARTNERS: str = "local_partners"
    MODE_BASELINE_ACCURACY: str = "mode_baseline_accuracy"
    N_HELDOUT: str = "n_heldout"
    RECON_LOSS: str = "recon_loss"
    RECON_PER_ENTRY: str = "recon_per_entry"
    KL: str = "kl"
    ACTIVE_UNITS: str = "active_units"
    EPOCHS_RUN: str = "epochs_run"
    BEST_EPOCH: str = "best_epoch"
    N_SUBJECTS: str = "n_subjects"
    N_SNPS: str = "n_snps"
    N_TRAIN: str = "n_train"
    N_VAL: str = "n_val"


TENSOR_KEYS = _TensorKeys()
METRIC_KEYS = _MetricKeys()
