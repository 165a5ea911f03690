"""Building blocks of the block-importance test: LD neighbours, masks, permutations, q-values, seed agreement.

Pure numpy/torch/scipy (no Dagster), used by :mod:`._importance`.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import torch
from scipy.stats import norm, spearmanr

from ._cross_block import CrossBlockConfig, draw_block_mask

__all__ = [
    "bh_qvalues",
    "importance_masks",
    "ld_neighbours",
    "normalized_positive",
    "null_permutations",
    "rank_stability",
    "top_block_agreement",
]

# Closed masks hiding more than this multiple of the plain masks' blocks are thinned.
_MAX_CLOSURE_EXPANSION = 1.5
# A block whose distal dependence does not reach this p is LD-only.
_DISTAL_ALPHA = 0.05
# Offsets of the generators: masks and permutations do not depend on the seed
# of any model, so every seed sees the same held-out data and masks.
_MASK_SEED, _PERM_SEED = 30_000, 40_000


def _distally_linked(neighbours: np.ndarray, p_distal: np.ndarray) -> np.ndarray:
    """Per block: does its LD group (the block and its ``neighbours``) have a significant distal link?"""
    group = neighbours | np.eye(len(p_distal), dtype=bool)
    p = np.where(np.isnan(p_distal), np.inf, p_distal)
    best = np.where(group, p[None, :], np.inf).min(axis=1)
    return best < _DISTAL_ALPHA / group.sum(axis=1)


def ld_neighbours(block_meta: pd.DataFrame, window_mb: float) -> np.ndarray:
    """``(n_blocks, n_blocks)`` bool: same chromosome, intervals within ``window_mb`` (self excluded).

    The gap between two intervals is 0 when they overlap or touch.
    """
    chrom = block_meta["chrom"].astype(str).str.removeprefix("chr").to_numpy()
    start = block_meta["start"].to_numpy(np.float64)
    end = block_meta["end"].to_numpy(np.float64)
    gap = np.maximum(0.0, np.maximum(start[:, None], start[None, :]) - np.minimum(end[:, None], end[None, :]))
    near = (chrom[:, None] == chrom[None, :]) & (gap <= window_mb * 1e6)
    np.fill_diagonal(near, False)
    return near


def importance_masks(n: int, neighbours: np.ndarray, config: CrossBlockConfig, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain and neighbour-closed masks, each ``(draws, n, n_blocks)`` bool.

    The closed masks extend the plain ones: every neighbour of a hidden block
    is hidden too (it may then hide every block of a row; the model still runs).
    """
    n_blocks = neighbours.shape[0]
    generator = torch.Generator().manual_seed(_MASK_SEED + seed)
    plain = torch.stack([
        draw_block_mask(n, n_blocks, config.mask_fraction_min, config.mask_fraction_max, generator)
        for _ in range(config.importance_mask_draws)
    ])
    near = torch.from_numpy(neighbours).float()
    closed = plain | ((plain.float() @ near) > 0)
    expansion = float(closed.float().mean() / plain.float().mean().clamp_min(1e-12))
    if expansion > _MAX_CLOSURE_EXPANSION:
        # Dense map: thin the seed so that, closed, it hides about the plain fraction
        # (hidden share 1 - (1 - f r)^(1 + d) for seed share f r and d neighbours).
        f = float(plain.float().mean())
        degree = float(neighbours.sum(axis=1).mean())
        keep = (1.0 - (1.0 - f) ** (1.0 / (1.0 + degree))) / f
        seed_mask = plain & (torch.rand(plain.shape, generator=generator) < keep)
        # every row keeps at least its first hidden block, so every row hides something
        first = plain.float().argmax(dim=-1, keepdim=True)
        seed_mask.scatter_(-1, first, True)
        closed = seed_mask | ((seed_mask.float() @ near) > 0)
    return plain, closed


def null_permutations(n: int, n_blocks: int, replicates: int, seed: int) -> np.ndarray:
    """``(replicates, n, n_blocks)`` row indices: one independent permutation per replicate and block."""
    rng = np.random.default_rng(_PERM_SEED + seed)
    return rng.random((replicates, n, n_blocks)).argsort(axis=1)


def bh_qvalues(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (monotone, capped at 1)."""
    p = np.asarray(p, dtype=np.float64)
    order = np.argsort(p)
    ranked = p[order] * len(p) / np.arange(1, len(p) + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1].clip(max=1.0)
    out = np.empty_like(q)
    out[order] = q
    return out


def normalized_positive(values: np.ndarray) -> np.ndarray:
    """Positive part normalized to sum to 1; uniform when nothing is positive."""
    positive = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), 0.0, None)
    total = positive.sum()
    return positive / total if total > 0 else np.full(positive.shape, 1.0 / positive.size)


def rank_stability(importance_by_seed: np.ndarray) -> float:
    """Mean pairwise Spearman correlation between seeds' importance vectors (nan for one seed)."""
    rows = np.asarray(importance_by_seed)
    values = [spearmanr(rows[i], rows[j])[0] for i, j in itertools.combinations(range(len(rows)), 2)]
    values = [v for v in values if np.isfinite(v)]  # constant rows (uniform) have no rank order
    return float(np.mean(values)) if values else float("nan")


def top_block_agreement(importance_by_seed: np.ndarray, significant: np.ndarray) -> float:
    """Mean over seeds of the share of the ``k`` significant blocks among that seed's top ``k`` (nan when none).

    Spearman over all blocks (:func:`rank_stability`) is dominated by the
    blocks without signal, whose order is noise once importance is tested
    against a null (0.34 on the demo while every seed put the same three
    planted blocks on top); this asks whether the seeds agree on the blocks
    that matter.
    """
    rows = np.asarray(importance_by_seed)
    chosen = np.flatnonzero(np.asarray(significant, dtype=bool))
    if chosen.size == 0:
        return float("nan")
    tops = [set(np.argsort(-row, kind="stable")[: chosen.size]) for row in rows]
    return float(np.mean([len(top & set(chosen)) / chosen.size for top in tops]))


def _test(observed: np.ndarray, null: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """z, normal upper-tail p, empirical p and null sd of ``observed`` (blocks) against ``null`` (R, blocks)."""
    mean, sd = null.mean(axis=0), null.std(axis=0, ddof=1)
    # A null with no spread (a block with no active dimension) tests nothing.
    z = np.where(sd > 0, (observed - mean) / np.where(sd > 0, sd, 1.0), 0.0)
    p_emp = (1 + (null >= observed[None, :]).sum(axis=0)) / (len(null) + 1)
    return z, norm.sf(z), p_emp, sd
