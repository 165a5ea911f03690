"""Principal components used by the simulator: block PC1 (the effect feature) and genotype PCs."""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["block_pc1", "genotype_pcs", "standardize", "top_axes"]


def standardize(genotypes: np.ndarray) -> np.ndarray:
    """Centre and scale each variant; missing (-1) becomes 0 (the mean)."""
    g = genotypes.astype(np.float64)
    observed = genotypes >= 0
    n_obs = np.maximum(observed.sum(axis=0), 1)
    mean = np.where(observed, g, 0.0).sum(axis=0) / n_obs
    x = np.where(observed, g - mean, 0.0)
    sd = np.sqrt((x**2).sum(axis=0) / n_obs)
    return x / np.where(sd > 0, sd, 1.0)


def top_axes(x: np.ndarray, k: int) -> np.ndarray:
    """Top ``k`` right singular vectors of ``x`` (columns: variants).

    ``eigh`` on the smaller Gram matrix is far cheaper than a full SVD of the
    subjects x variants matrix.
    """
    if x.shape[0] >= x.shape[1]:
        _, vectors = np.linalg.eigh(x.T @ x)
        return vectors[:, ::-1][:, :k]
    _, left = np.linalg.eigh(x @ x.T)
    axes = x.T @ left[:, ::-1][:, :k]
    return axes / np.maximum(np.linalg.norm(axes, axis=0), 1e-300)


def block_pc1(genotypes: np.ndarray) -> np.ndarray:
    """Standardized first principal component of one block's genotypes.

    This is the feature that carries the planted phenotype effects: variants
    are centred and scaled (missing entries take the variant mean), the
    subject scores on the first component are scaled to mean 0 and SD 1, and
    the sign makes the sum of variant loadings positive.

    Parameters
    ----------
    genotypes : ndarray of int8, shape (subjects, variants)
        Values in {-1, 0, 1, 2}, -1 missing.

    Returns
    -------
    ndarray of float64, shape (subjects,)
    """
    x = standardize(genotypes)
    loading = top_axes(x, 1)[:, 0]
    score = x @ (loading if loading.sum() >= 0 else -loading)
    return (score - score.mean()) / score.std()


def genotype_pcs(blocks: Sequence[np.ndarray], n_pcs: int) -> np.ndarray:
    """Top principal components (unit-norm eigenvectors, PLINK style) of the blocks' columns together.

    Each variant is standardized (missing at the mean), as ``plink --pca`` does
    on its genotype relationship matrix; nothing is pruned.
    """
    from scipy.sparse.linalg import eigsh

    x = np.concatenate([standardize(g) for g in blocks], axis=1)
    n = x.shape[0]
    k = min(n_pcs, n - 2, x.shape[1])
    # Lanczos on the subjects' Gram matrix: only the top k are needed, and a
    # fixed start vector keeps reruns identical.
    values, vectors = eigsh(x @ x.T, k=k, v0=np.ones(n), tol=1e-10)
    u = vectors[:, np.argsort(values)[::-1]]
    # Fix signs (largest-magnitude entry positive) so the output is canonical.
    flip = np.sign(u[np.abs(u).argmax(axis=0), np.arange(k)])
    return u * flip
