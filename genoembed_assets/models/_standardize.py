"""Per-block standardization and whitening of Phase 1 embeddings, and shared (ancestry) axes.

Pure numpy, no Dagster. Phase 2 models what the blocks say about EACH OTHER,
so each block is z-scored and whitened on training subjects (every block
contributes decorrelated unit-variance dimensions) and the axes that every
block shares (continuous ancestry) are projected out: otherwise every block
predicts every other one and no block-specific dependence is left to find.
Split out of ``_cross_block_training`` so training, importance and
projection of a new cohort share one definition of the Phase 2 input space.
"""

from __future__ import annotations

import numpy as np

from ._embedding_store import BlockEmbeddingStore

__all__ = ["Standardizer", "shared_axes"]

# A Phase 1 latent whose spread is under this fraction of its block's largest
# one is a collapsed VAE unit: standardizing it would turn noise into signal.
_ACTIVE_DIM_RATIO = 0.01


class Standardizer:
    """Per block: z-scores, then whitening, from training subjects; collapsed dims zeroed.

    Whitening each block (ridge-regularized inverse square root of its
    covariance) makes every block contribute decorrelated unit-variance
    dimensions, so what remains correlated across the concatenation is
    correlation BETWEEN blocks. With ``shared`` (``(D, r)`` orthonormal axes in
    the concatenated whitened space) the projection on those axes is removed.
    """

    def __init__(self, store: BlockEmbeddingStore, index: np.ndarray, *, sample: np.ndarray | None = None):
        mean, std = store.block_stats(index)
        real = np.arange(store.k_max)[None, :] < store.dims[:, None]
        block_max = np.where(real, std, 0).max(axis=1, keepdims=True)
        active = real & (std > _ACTIVE_DIM_RATIO * block_max) & (std > 1e-8)
        self.mean = mean.astype(np.float32)
        self.scale = np.where(active, 1.0 / np.where(active, std, 1.0), 0.0).astype(np.float32)
        self.active = active.astype(np.float32)
        self.shared: np.ndarray | None = None
        z = self.standardized(store.get(index if sample is None else sample)).astype(np.float64)
        z -= z.mean(axis=0)
        self.whiten = np.stack([_ridge_whitener(z[:, b, :], active[b]) for b in range(store.n_blocks)]).astype(np.float32)

    def standardized(self, batch: np.ndarray) -> np.ndarray:
        """Per-dimension z-scores (the Phase 1 space of the distance correlation)."""
        return (batch - self.mean) * self.scale

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        z = np.einsum("nbk,bkj->nbj", self.standardized(batch), self.whiten)
        if self.shared is None or self.shared.shape[1] == 0:
            return z.astype(np.float32, copy=False)
        flat = z.reshape(len(z), -1)
        flat = flat - (flat @ self.shared) @ self.shared.T
        return flat.reshape(z.shape).astype(np.float32, copy=False)


def _ridge_whitener(z: np.ndarray, active: np.ndarray, ridge: float = 0.05) -> np.ndarray:
    """``(k, k)`` matrix W with ``cov(z @ W)`` close to identity on the active dims.

    The ridge (a fraction of the mean eigenvalue) keeps near-empty directions
    from being blown up into noise of unit variance.
    """
    k = z.shape[1]
    w = np.zeros((k, k))
    idx = np.flatnonzero(active)
    if idx.size == 0:
        return w
    cov = np.cov(z[:, idx], rowvar=False).reshape(idx.size, idx.size)
    values, vectors = np.linalg.eigh(cov)
    values = np.maximum(values, 0) + ridge * max(values.mean(), 1e-12)
    w[np.ix_(idx, idx)] = vectors @ np.diag(values**-0.5) @ vectors.T
    return w


def shared_axes(
    z: np.ndarray, active: np.ndarray, n_factors: int | None, *, max_factors: int = 20, min_block_share: float = 0.5
) -> tuple[np.ndarray, list[dict]]:
    """Axes of variation that every block shares (ancestry), to be regressed out.

    Parameters
    ----------
    z
        Block-whitened embeddings of a subject subsample, ``(n, blocks, k_max)``
        (whitening keeps block-specific structure from passing the noise edge).
    active
        ``(blocks, k_max)`` 1 for dimensions in use.
    n_factors
        Number of leading principal components to remove; None picks them:
        a component is shared when its variance exceeds the Marchenko-Pastur
        noise edge and its loadings spread over at least ``min_block_share``
        of the blocks (effective number of blocks = exp entropy of the
        per-block loading mass). A factor only a few blocks carry (a planted
        stratum in the HLA blocks) is kept: it is what Phase 2 should find.

    Returns
    -------
    axes
        ``(blocks * k_max, r)`` orthonormal axes in the flattened space.
    summary
        Per inspected component: variance, noise edge, effective blocks, shared.
    """
    n, n_blocks, k_max = z.shape
    flat = (z * active).reshape(n, -1).astype(np.float64)
    flat = flat - flat.mean(axis=0)
    _, s, vt = np.linalg.svd(flat, full_matrices=False)
    variance = s**2 / max(n - 1, 1)
    n_dims = max(int(active.sum()), 1)
    edge = (1 + np.sqrt(n_dims / n)) ** 2  # noise edge for unit-variance dimensions
    chosen, summary = [], []
    for i in range(min(max_factors, len(s))):
        mass = (vt[i].reshape(n_blocks, k_max) ** 2).sum(axis=1)
        mass = mass / mass.sum()
        nz = mass[mass > 0]
        eff_blocks = float(np.exp(-(nz * np.log(nz)).sum()))
        if n_factors is None:
            shared = bool(variance[i] > edge and eff_blocks >= min_block_share * n_blocks)
        else:
            shared = i < n_factors
        summary.append({"component": i, "variance": float(variance[i]), "noise_edge": float(edge), "effective_blocks": eff_blocks, "shared": shared})
        if shared:
            chosen.append(i)
    return vt[chosen].T.astype(np.float32), summary


# The name the trainer and older tests use.
_Standardizer = Standardizer
