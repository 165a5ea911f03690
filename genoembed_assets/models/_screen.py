"""A linear cross-block screen: which blocks share structure with distant blocks at all.

Pure numpy/scipy, no Dagster. Phase 2 learns by hiding blocks and predicting
them from the others; its loss is a mean over every hidden block. On a
genome-wide cohort almost every block is unpredictable noise once the shared
ancestry axes are removed, so the few blocks that carry cross-block structure
contribute a vanishing share of the loss and of its gradient. Measured on the
2,000 x 1,703-block bench cohort (docs/scale.md): the three planted structure
blocks are 0.18% of the hidden targets, and after 20 epochs the held-out R2
of every block was within 0.01 of 0 (the planted blocks ranked 405-1,593).
The same cohort's training embeddings hold the structure plainly: this
screen gives the three planted blocks z = 27-28 against at most 4.3 for the
other 1,700 blocks, in 6-8 s on 2 cores.

Statistic
---------
Inputs are the Phase 2 input space (per-block standardized and whitened,
shared axes removed) of TRAINING subjects only, so using the screen to focus
training does not touch the held-out subjects block importance is tested on.
For blocks ``b`` and ``c`` with ``k_b`` and ``k_c`` active whitened dimensions,
``S_bc = n * sum_ij r_ij^2`` over their cross-correlations is close to
chi-square with ``k_b k_c`` degrees of freedom when the two are independent.
It is divided by a genomic-control factor (the median of ``S / df`` over all
distal pairs relative to the chi-square median, at least 1), so structure
every pair shares (ancestry left after the shared axes) does not turn into
false candidates. A block's screen
p-value is the Bonferroni-adjusted best pair over its DISTAL partners (LD
neighbours, as in the importance guard, are skipped: adjacent blocks
correlate through LD); ``q`` is Benjamini-Hochberg over blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import chi2, norm

from ._importance import bh_qvalues

__all__ = ["ScreenResult", "cross_block_screen", "focus_weights"]

# Blocks per chunk of the cross-correlation: a chunk of 128 blocks x 8 dims against
# 1,703 x 8 is 1,024 x 13,624 float32 (56 MB), never the whole 0.7 GB matrix.
_CHUNK_BLOCKS = 128
SCREEN_ALPHA = 0.05
# Singular values below this fraction of a block's largest are numerical null space.
_RANK_TOL = 1e-3


@dataclass
class ScreenResult:
    """Per block: ``z`` (best distal pair, standard-normal scale), ``p``, ``q``, ``partner`` (index or -1)."""

    z: np.ndarray
    p: np.ndarray
    q: np.ndarray
    partner: np.ndarray
    inflation: float

    @property
    def candidates(self) -> np.ndarray:
        return self.q < SCREEN_ALPHA

    def table(self, block_ids) -> pd.DataFrame:
        ids = np.asarray(list(block_ids), dtype=object)
        return pd.DataFrame({
            "block_id": ids,
            "screen_z": self.z,
            "screen_p": self.p,
            "screen_q": self.q,
            "screen_partner": [ids[j] if j >= 0 else "" for j in self.partner],
        })


def cross_block_screen(x: np.ndarray, active: np.ndarray, neighbours: np.ndarray) -> ScreenResult:
    """Screen every block for dependence on distal blocks.

    Parameters
    ----------
    x
        ``(n, blocks, k_max)`` training subjects in the Phase 2 input space.
    active
        ``(blocks, k_max)``: 1 for dimensions that count.
    neighbours
        ``(blocks, blocks)`` bool LD neighbours (self excluded); never paired.

    Returns
    -------
    ScreenResult
        With ``p`` = 1 and ``partner`` = -1 for a block without active
        dimensions or without a distal partner.
    """
    n, n_blocks, k_max = x.shape
    if n < 3 or n_blocks < 2:
        ones = np.ones(n_blocks)
        return ScreenResult(np.zeros(n_blocks), ones, ones.copy(), np.full(n_blocks, -1), 1.0)
    # Each block as an exact orthonormal basis of its span: whitening is
    # ridge-regularized, and dimensions left correlated within a block made the
    # pair statistic heavy-tailed (median calibrated, 94% of null blocks at
    # p < 0.05 on the bench cohort). With orthonormal columns, S is chi-square
    # with r_b r_c degrees of freedom under independence whatever the scaling.
    flat = np.zeros((n, n_blocks * k_max), dtype=np.float32)
    dims = np.zeros(n_blocks, dtype=np.int64)
    for b in range(n_blocks):
        cols = x[:, b, active[b] > 0].astype(np.float64)
        if cols.shape[1] == 0:
            continue
        u, sv, _ = np.linalg.svd(cols - cols.mean(axis=0), full_matrices=False)
        rank = int((sv > _RANK_TOL * sv[0]).sum()) if sv[0] > 0 else 0  # singular values come sorted
        flat[:, b * k_max:b * k_max + rank] = u[:, :rank]
        dims[b] = rank
    df = np.outer(dims, dims)
    usable = (df > 0) & ~neighbours
    np.fill_diagonal(usable, False)
    stat = np.zeros((n_blocks, n_blocks), dtype=np.float64)
    for lo in range(0, n_blocks, _CHUNK_BLOCKS):
        hi = min(n_blocks, lo + _CHUNK_BLOCKS)
        corr = flat[:, lo * k_max:hi * k_max].T @ flat  # (chunk*k, blocks*k) correlations
        stat[lo:hi] = n * (corr.reshape(hi - lo, k_max, n_blocks, k_max) ** 2).sum(axis=(1, 3))
    # Genomic control: most distal pairs are null; dependence shared by every
    # pair inflates every S alike, and the median sees it (1.02 on the bench cohort).
    ratio = stat[usable] / df[usable]
    ref = np.median(chi2.median(df[usable]) / df[usable]) if ratio.size else 1.0
    inflation = float(max(1.0, np.median(ratio) / ref)) if ratio.size else 1.0
    pair_p = np.where(usable, chi2.sf(stat / inflation, np.maximum(df, 1)), 1.0)
    partner = np.where(usable.any(axis=1), pair_p.argmin(axis=1), -1)
    best = pair_p.min(axis=1)
    p = np.clip(best * np.maximum(usable.sum(axis=1), 1), 0.0, 1.0)
    p = np.where(partner >= 0, p, 1.0)
    zscore = norm.isf(np.clip(p, 1e-300, 1.0))
    return ScreenResult(zscore, p, bh_qvalues(p), partner, inflation)


def focus_weights(screen: ScreenResult) -> np.ndarray:
    """Per-block loss weights: the candidates together weigh as much as all other blocks.

    1 everywhere when there is no candidate or when candidates are at least
    half the blocks (then they already dominate the loss).
    """
    candidates = screen.candidates
    n_blocks, n_cand = candidates.size, int(candidates.sum())
    weights = np.ones(n_blocks, dtype=np.float32)
    if 0 < n_cand < n_blocks - n_cand:
        weights[candidates] = (n_blocks - n_cand) / n_cand
    return weights
