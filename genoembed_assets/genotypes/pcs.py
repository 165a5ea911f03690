"""Missing-aware genotype principal components computed from LD blocks.

Used when a cohort ships no ``.eigenvec``. Each variant is standardised with
the allele frequency of its observed calls (``(g - 2p) / sqrt(2p(1-p))``) and a
missing call becomes 0, i.e. the variant's mean after centring, so missingness
adds no signal of its own. Memory stays bounded: at most ``max_variants``
variants are kept (uniform reservoir sample over the whole stream of blocks,
held as int8), then a randomized SVD gives the leading components.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from sklearn.utils.extmath import randomized_svd

from .qc import allele_stats

__all__ = ["genotype_pcs", "standardize"]


def standardize(genotypes: np.ndarray, alt_freq: np.ndarray | None = None) -> np.ndarray:
    """Centre and scale each variant on its observed calls; missing -> 0.

    Parameters
    ----------
    genotypes
        int8 matrix (subjects x variants), -1 = missing.
    alt_freq
        ALT allele frequencies; computed from the observed calls when None.

    Returns
    -------
    numpy.ndarray of float32
        Same shape; monomorphic variants become all-zero columns.
    """
    g = np.asarray(genotypes)
    if alt_freq is None:
        _, alt_freq, _ = allele_stats(g)
    p = np.nan_to_num(alt_freq, nan=0.0).astype(np.float32)
    sd = np.sqrt(2.0 * p * (1.0 - p))
    scale = np.divide(1.0, sd, out=np.zeros_like(sd), where=sd > 0)
    x = (g.astype(np.float32) - 2.0 * p) * scale
    x[g < 0] = 0.0
    return x


def genotype_pcs(
    blocks: np.ndarray | Iterable[np.ndarray],
    subject_ids: Sequence[str],
    n_pcs: int = 10,
    seed: int = 0,
    *,
    maf_min: float = 0.01,
    max_missing: float = 0.2,
    max_variants: int = 20_000,
) -> pd.DataFrame:
    """Leading genotype PCs of a cohort.

    Parameters
    ----------
    blocks
        One int8 matrix (subjects x variants) or an iterable of block matrices
        with the same rows; streamed, never concatenated in full.
    subject_ids
        Row labels, one per subject.
    n_pcs
        Components wanted. Fewer come back when the data cannot support them
        (at most ``min(n_subjects - 1, n_variants_used)``); columns are never
        padded with made-up values.
    seed
        Seeds the variant reservoir and the randomized SVD.
    maf_min, max_missing
        Variants below this MAF or above this missing rate are not used.
    max_variants
        Cap on variants held in memory (n_subjects x max_variants int8).

    Returns
    -------
    pandas.DataFrame
        ``subject_id, PC1..PCk``: unit-length eigenvectors as PLINK writes them,
        each signed so its largest-magnitude entry is positive.
    """
    subject_ids = [str(s) for s in subject_ids]
    n = len(subject_ids)
    if n_pcs < 1:
        raise ValueError(f"n_pcs must be >= 1, got {n_pcs}")
    if max_variants < 1:
        raise ValueError(f"max_variants must be >= 1, got {max_variants}")
    if isinstance(blocks, np.ndarray):
        blocks = [blocks]
    rng = np.random.default_rng(seed)
    reservoir = np.empty((n, max_variants), dtype=np.int8)
    seen = 0  # usable variants streamed so far
    for g in blocks:
        g = np.asarray(g)
        if g.ndim != 2 or g.shape[0] != n:
            raise ValueError(f"block of shape {g.shape} does not have {n} subject rows")
        n_obs, alt_freq, missing_rate = allele_stats(g)
        maf = np.minimum(alt_freq, 1.0 - alt_freq)
        usable = np.flatnonzero((missing_rate <= max_missing) & (np.nan_to_num(maf) >= max(maf_min, 1e-12)))
        seen = _reservoir_add(reservoir, seen, g[:, usable], rng)
    m = min(seen, max_variants)
    k = min(n_pcs, n - 1, m)
    if k < 1:
        raise ValueError(f"cannot compute PCs from {n} subjects and {m} usable variants")
    x = standardize(reservoir[:, :m])
    u, _, _ = randomized_svd(x, n_components=k, n_iter=7, random_state=seed, flip_sign=False)
    # deterministic sign, independent of the SVD's internals
    signs = np.sign(u[np.abs(u).argmax(axis=0), np.arange(k)])
    u = u * np.where(signs == 0, 1.0, signs)
    out = pd.DataFrame(u.astype(np.float64), columns=[f"PC{i}" for i in range(1, k + 1)])
    out.insert(0, "subject_id", subject_ids)
    return out


def _reservoir_add(reservoir: np.ndarray, seen: int, cols: np.ndarray, rng: np.random.Generator) -> int:
    """Algorithm R over columns: every streamed variant kept with equal chance."""
    cap = reservoir.shape[1]
    m = cols.shape[1]
    if m == 0:
        return seen
    t = seen + np.arange(m)  # global index of each incoming column
    fill = t < cap
    reservoir[:, t[fill]] = cols[:, fill]
    rest = np.flatnonzero(~fill)
    if rest.size:
        slots = rng.integers(0, t[rest] + 1)
        hit = slots < cap
        # sequential semantics: when several columns draw one slot, the last wins
        chosen_slots, chosen_cols = slots[hit], rest[hit]
        last = {int(s): int(c) for s, c in zip(chosen_slots, chosen_cols)}
        if last:
            reservoir[:, list(last.keys())] = cols[:, list(last.values())]
    return seen + m
