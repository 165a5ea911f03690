"""The evaluation protocol of Phase 1 block models and the checks before training (pure torch, no Dagster).

Evaluation protocol (shared with the benchmark's reference loop):

* subjects are split once per subject count and seed into training and
  validation subjects (every block of a cohort uses the same split);
* in each block, ``heldout_fraction`` of the validation subjects' observed
  entries are hidden from the encoder and never a training target; the decoder
  predicts them from the rest (held-out masked accuracy), beside the most
  frequent genotype per variant among training subjects (mode baseline);
* early stopping watches the reconstruction of a second fixed set of
  validation entries, the stop mask, hidden from the encoder like the held-out
  ones (decoding the posterior mean, so neither sampling nor the beta warm-up
  moves the yardstick): it scores predictions of entries the encoder never
  saw, and the held-out accuracy stays untouched by the choice of epoch;
* the held-out calls are also predicted by rank-k PCA (k = latent size) and
  kNN baselines (:func:`._baselines.compare_with_baselines`).
"""

from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np
import torch

from ._baselines import compare_with_baselines
from ._block_vae import BlockVAE, BlockVAEConfig, vae_loss
from ._keys import GENOTYPE_CLASSES, METRIC_KEYS, TENSOR_KEYS

__all__ = ["block_metrics", "heldout_mask", "mode_baseline", "split_subjects", "validate_blocks"]

ACTIVE_UNIT_VARIANCE = 0.01


def split_subjects(n_subjects: int, config: BlockVAEConfig) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation subject indices (sorted), seeded by ``config.seed``.

    At least one subject lands on each side, so ``n_subjects`` must be >= 2.
    """
    if n_subjects < 2:
        raise ValueError(f"need at least 2 subjects to split training and validation, got {n_subjects}")
    rng = np.random.default_rng([config.seed, n_subjects])
    order = rng.permutation(n_subjects)
    n_val = min(n_subjects - 1, max(1, round(config.val_fraction * n_subjects)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def heldout_mask(val_genotypes: np.ndarray, config: BlockVAEConfig, block_id: str) -> np.ndarray:
    """Bool mask of the held-out entries among validation subjects' observed entries.

    Exactly ``round(heldout_fraction * observed)`` entries (at least one when
    any is observed), drawn with a seed from ``config.seed`` and the block id,
    so a block's held-out set does not depend on which other blocks trained
    beside it.
    """
    observed = np.flatnonzero(val_genotypes.reshape(-1) >= 0)
    mask = np.zeros(val_genotypes.size, dtype=bool)
    if observed.size:
        rng = np.random.default_rng([config.seed, zlib.crc32(block_id.encode())])
        k = max(1, round(config.heldout_fraction * observed.size))
        mask[rng.choice(observed, size=k, replace=False)] = True
    return mask.reshape(val_genotypes.shape)


def mode_baseline(train_genotypes: np.ndarray) -> np.ndarray:
    """Most frequent observed genotype per variant (0 where none is observed); ties pick the lower class."""
    counts = np.stack([(train_genotypes == c).sum(axis=0) for c in range(GENOTYPE_CLASSES)])
    return counts.argmax(axis=0).astype(np.int8)


def block_metrics(
    model: BlockVAE, genotypes: np.ndarray, config: BlockVAEConfig, block_id: str,
) -> tuple[np.ndarray, dict[str, float | int]]:
    """Embedding and evaluation metrics of a trained single-block model.

    Parameters
    ----------
    model
        The block's model (its device is used).
    genotypes
        int8 (subjects, variants) of the block, all subjects.
    config, block_id
        Fix the split and the held-out entries (as in training).

    Returns
    -------
    embedding, metrics
        Posterior means of all subjects (every observed entry visible) and the
        metrics dict (held-out accuracy vs mode baseline on validation subjects,
        validation reconstruction and KL, active units).
    """
    device = next(model.parameters()).device
    train_idx, val_idx = split_subjects(genotypes.shape[0], config)
    held = heldout_mask(genotypes[val_idx], config, block_id)
    model.eval()
    with torch.no_grad():
        x = torch.as_tensor(genotypes, device=device)
        embedding = _posterior_means(model, x, x >= 0, config.batch_size)
        xv = x[val_idx]
        held_t = torch.as_tensor(held, device=device)
        visible = (xv >= 0) & ~held_t
        inference = model.inference(xv, visible, sample=False)
        vae_logits = model.generative(inference[TENSOR_KEYS.Z])[TENSOR_KEYS.LOGITS]
        terms = vae_loss(vae_logits, xv, visible, inference[TENSOR_KEYS.Z_MEAN], inference[TENSOR_KEYS.Z_LOG_VAR],
                         config.beta, config.focal_gamma)
        logits = model.predict_logits(xv, visible, inference[TENSOR_KEYS.Z])
        predicted = logits.argmax(-2).cpu().numpy()
        vae_predicted = vae_logits.argmax(-2).cpu().numpy()
        probs = torch.softmax(logits, dim=-2).cpu().numpy()
    truth = genotypes[val_idx][held]
    baseline = mode_baseline(genotypes[train_idx])
    base_pred = np.broadcast_to(baseline, held.shape)[held]
    n_held = int(held.sum())
    n_targets = int(terms.n_targets)
    metrics: dict[str, float | int] = {
        METRIC_KEYS.HELDOUT_ACCURACY: float((predicted[held] == truth).mean()) if n_held else float("nan"),
        # the VAE alone (what the embedding reads), beside the block model with its local head
        METRIC_KEYS.VAE_HELDOUT_ACCURACY: float((vae_predicted[held] == truth).mean()) if n_held else float("nan"),
        METRIC_KEYS.LOCAL_PARTNERS: 0 if model.local is None else int(model.local.partners.shape[1]),
        METRIC_KEYS.MODE_BASELINE_ACCURACY: float((base_pred == truth).mean()) if n_held else float("nan"),
        METRIC_KEYS.N_HELDOUT: n_held,
        METRIC_KEYS.RECON_LOSS: float(terms.reconstruction),
        METRIC_KEYS.RECON_PER_ENTRY: float(terms.reconstruction) * len(val_idx) / max(1, n_targets),
        METRIC_KEYS.KL: float(terms.kl),
        METRIC_KEYS.ACTIVE_UNITS: int((embedding.var(axis=0) > ACTIVE_UNIT_VARIANCE).sum()),
        METRIC_KEYS.N_SUBJECTS: int(genotypes.shape[0]),
        METRIC_KEYS.N_SNPS: int(genotypes.shape[1]),
        METRIC_KEYS.N_TRAIN: len(train_idx),
        METRIC_KEYS.N_VAL: len(val_idx),
    }
    if n_held:
        metrics.update(compare_with_baselines(genotypes, train_idx, val_idx, held, probs, rank=config.latent_size,
                                              seed=config.seed))
    return embedding, metrics


def _posterior_means(model, x: torch.Tensor, visible: torch.Tensor, chunk: int) -> np.ndarray:
    size = max(chunk, 1024)
    parts = [
        model.inference(x[i:i + size], visible[i:i + size], sample=False)[TENSOR_KEYS.Z_MEAN]
        for i in range(0, x.shape[0], size)
    ]
    return torch.cat(parts).cpu().numpy().astype(np.float32)


# ---------------------------------------------------------------- validation


def validate_blocks(blocks: Sequence[tuple[str, np.ndarray]], config: BlockVAEConfig) -> list[tuple[str, np.ndarray]]:
    """Check every block before any training; return them as int8 arrays.

    Raises
    ------
    ValueError
        Naming the block: duplicate id, not 2-D, no variants, fewer than 2
        subjects, values outside {-1, 0, 1, 2}, or no observed genotype.
    """
    if not isinstance(config, BlockVAEConfig):
        raise ValueError(f"config must be a BlockVAEConfig, got {type(config).__name__}")
    checked: list[tuple[str, np.ndarray]] = []
    seen: set[str] = set()
    for block_id, genotypes in blocks:
        if block_id in seen:
            raise ValueError(f"block {block_id!r} is given twice")
        seen.add(block_id)
        array = np.asarray(genotypes)
        if array.ndim != 2:
            raise ValueError(f"block {block_id!r}: expected a 2-D (subjects x variants) array, got shape {array.shape}")
        n_subjects, n_snps = array.shape
        if n_snps < 1:
            raise ValueError(f"block {block_id!r} has no variants")
        if n_subjects < 2:
            raise ValueError(
                f"block {block_id!r} has {n_subjects} subject(s); at least 2 are needed "
                "to split training and validation subjects"
            )
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"block {block_id!r}: genotypes must be integers (int8), got {array.dtype}")
        low, high = int(array.min()), int(array.max())
        if low < -1 or high > 2:
            raise ValueError(f"block {block_id!r}: genotypes must be in {{-1, 0, 1, 2}}, found {low}..{high}")
        if high < 0:
            raise ValueError(f"block {block_id!r} has no observed genotype (all missing)")
        checked.append((block_id, array.astype(np.int8, copy=False)))
    return checked
