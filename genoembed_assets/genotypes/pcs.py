"""Ancestry PCs as the field computes them: LD-pruned, long-range LD regions out, missing-aware.

Used when a cohort ships no ``.eigenvec``. The recipe follows Price et al.
2008 and Anderson et al. 2010 (the ``plink --indep-pairwise`` + exclusion-list
practice):

1. variants below ``maf_min`` or above ``max_missing`` are not used;
2. variants inside the long-range / high-LD regions of the build
   (``data/reference/high_ld_regions_<build>.bed``: the extended MHC, the 8p23
   inversion, the chr2 LCT region and 17 others) are dropped; when a block's
   variant positions are unknown (an ``.npy`` layout without a variant table)
   the whole block is dropped if it overlaps a region;
3. the rest is LD-pruned within each block (greedy, in position order: a
   variant is kept when its r^2 with every kept variant among the previous
   ``ld_window`` kept ones is below ``ld_r2``; r^2 from missing-aware
   standardized genotypes);
4. each variant is standardised with the allele frequency of its observed
   calls (``(g - 2p) / sqrt(2p(1-p))``) and a missing call becomes 0, the
   variant's mean after centring, so missingness adds no signal of its own;
5. at most ``max_variants`` variants are kept (uniform reservoir sample over
   the stream of blocks, int8), then a randomized SVD gives the components.

Without steps 2 and 3, a region of strong local structure (HLA haplotypes, an
inversion) takes over leading PCs; every analysis that regresses the PCs out
then removes the very structure it looks for (issue 9). PCs that still look
local are caught by :mod:`.pc_diagnosis`.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from sklearn.utils.extmath import randomized_svd

from .. import paths
from .qc import allele_stats

__all__ = ["HIGH_LD_REGIONS", "cohort_pcs", "genotype_pcs", "ld_prune", "read_high_ld_regions", "standardize"]

HIGH_LD_REGIONS = {"hg19": "high_ld_regions_hg19.bed", "hg38": "high_ld_regions_hg38.bed"}


def read_high_ld_regions(build: str = "hg19") -> pd.DataFrame:
    """Long-range LD regions of a build: ``chrom, start, end, region`` (chrom without ``chr``).

    The hg38 file is lifted from hg19, so one region may have several rows;
    liftOver fragments that land on another chromosome than the region's own
    (a few bases each, named by the region) are dropped: they are artefacts,
    not long-range LD.
    """
    if build not in HIGH_LD_REGIONS:
        raise ValueError(f"unknown genome build {build!r}: expected one of {sorted(HIGH_LD_REGIONS)}")
    path = paths.reference_dir() / HIGH_LD_REGIONS[build]
    table = pd.read_csv(path, sep=r"\s+", header=None, names=["chrom", "start", "end", "region", "index"], comment="#")
    table["chrom"] = table["chrom"].astype(str).str.removeprefix("chr")
    own = table["region"].str.split(":").str[0].str.removeprefix("chr")
    table = table[table["chrom"] == own]
    return table[["chrom", "start", "end", "region"]].reset_index(drop=True)


def _in_regions(chrom: str, positions: np.ndarray, regions: pd.DataFrame) -> np.ndarray:
    hit = np.zeros(len(positions), dtype=bool)
    for _, r in regions[regions["chrom"] == str(chrom).removeprefix("chr")].iterrows():
        hit |= (positions >= r["start"]) & (positions < r["end"])
    return hit


def _overlaps(chrom: str, start: int, end: int, regions: pd.DataFrame) -> bool:
    same = regions[regions["chrom"] == str(chrom).removeprefix("chr")]
    return bool(((same["start"] < end) & (same["end"] > start)).any())


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


def ld_prune(genotypes: np.ndarray, r2_max: float = 0.2, window: int = 50) -> np.ndarray:
    """Indices of variants kept by greedy LD pruning in column (position) order.

    A variant is kept when its squared correlation with each of the last
    ``window`` kept variants is below ``r2_max`` (as ``plink --indep-pairwise``
    with a window of kept variants). Correlations come from missing-aware
    standardized genotypes, so a missing call counts as the mean.
    """
    g = np.asarray(genotypes)
    m = g.shape[1]
    if m == 0:
        return np.zeros(0, dtype=int)
    x = standardize(g).astype(np.float64)
    norms = np.sqrt((x**2).sum(axis=0))
    x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    kept: list[int] = []
    for j in range(m):
        if norms[j] == 0:
            continue
        recent = kept[-window:]
        if recent and float(np.max((x[:, recent].T @ x[:, j]) ** 2)) >= r2_max:
            continue
        kept.append(j)
    return np.asarray(kept, dtype=int)


def genotype_pcs(
    blocks: np.ndarray | Iterable[np.ndarray],
    subject_ids: Sequence[str],
    n_pcs: int = 10,
    seed: int = 0,
    *,
    maf_min: float = 0.01,
    max_missing: float = 0.2,
    max_variants: int = 20_000,
    ld_r2: float | None = None,
    ld_window: int = 50,
) -> pd.DataFrame:
    """Leading genotype PCs of a cohort from block matrices (no region exclusion).

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
    ld_r2, ld_window
        LD-prune each block first (see :func:`ld_prune`); None: no pruning.

    Returns
    -------
    pandas.DataFrame
        ``subject_id, PC1..PCk``: unit-length eigenvectors as PLINK writes them,
        each signed so its largest-magnitude entry is positive.
    """
    if isinstance(blocks, np.ndarray):
        blocks = [blocks]
    pcs, _ = _pcs_from_stream(((g, None) for g in blocks), subject_ids, n_pcs, seed, maf_min, max_missing,
                              max_variants, ld_r2, ld_window)
    return pcs


def cohort_pcs(
    blocks: Iterable[tuple[pd.Series, np.ndarray, pd.DataFrame | None]],
    subject_ids: Sequence[str],
    *,
    build: str = "hg19",
    n_pcs: int = 10,
    seed: int = 0,
    maf_min: float = 0.01,
    max_missing: float = 0.2,
    max_variants: int = 20_000,
    ld_r2: float = 0.2,
    ld_window: int = 50,
    exclude_high_ld: bool = True,
) -> tuple[pd.DataFrame, dict]:
    """Ancestry PCs the field's way (module docstring): region exclusion, LD pruning, SVD.

    Parameters
    ----------
    blocks
        ``(block row with chrom/start/end, int8 genotypes, variants with pos)``
        as :meth:`.sources.Source.iter_blocks` yields them.
    build
        Genome build of the coordinates (selects the high-LD region list).

    Returns
    -------
    pcs : DataFrame
        ``subject_id, PC1..PCk``.
    report : dict
        ``n_variants_seen``, ``n_excluded_high_ld``, ``blocks_excluded_high_ld``,
        ``n_pruned``, ``n_used``, ``ld_r2``, ``ld_window``, ``regions_excluded``.
    """
    regions = read_high_ld_regions(build) if exclude_high_ld else None
    report = {"n_variants_seen": 0, "n_excluded_high_ld": 0, "blocks_excluded_high_ld": [], "regions_excluded": []}

    def usable():
        for row, g, var in blocks:
            g = np.asarray(g)
            report["n_variants_seen"] += g.shape[1]
            if regions is not None:
                pos = None if var is None or "pos" not in var else pd.to_numeric(var["pos"], errors="coerce").to_numpy(dtype=float)
                if pos is not None and len(pos) == g.shape[1] and np.isfinite(pos).all():
                    out = _in_regions(row["chrom"], pos, regions)
                elif _overlaps(row["chrom"], int(row["start"]), int(row["end"]), regions):
                    out = np.ones(g.shape[1], dtype=bool)
                    report["blocks_excluded_high_ld"].append(str(row["block_id"]))
                else:
                    out = np.zeros(g.shape[1], dtype=bool)
                if out.any():
                    report["n_excluded_high_ld"] += int(out.sum())
                    g = g[:, ~out]
            yield g, row

    pcs, counts = _pcs_from_stream(usable(), subject_ids, n_pcs, seed, maf_min, max_missing, max_variants, ld_r2, ld_window)
    if regions is not None:
        report["regions_excluded"] = sorted(set(regions["region"]))
    report.update(counts, ld_r2=ld_r2, ld_window=ld_window)
    return pcs, report


def _pcs_from_stream(stream, subject_ids, n_pcs, seed, maf_min, max_missing, max_variants, ld_r2, ld_window):
    subject_ids = [str(s) for s in subject_ids]
    n = len(subject_ids)
    if n_pcs < 1:
        raise ValueError(f"n_pcs must be >= 1, got {n_pcs}")
    if max_variants < 1:
        raise ValueError(f"max_variants must be >= 1, got {max_variants}")
    rng = np.random.default_rng(seed)
    reservoir = np.empty((n, max_variants), dtype=np.int8)
    seen = pruned = 0  # usable variants streamed so far; removed by LD pruning
    for g, _ in stream:
        g = np.asarray(g)
        if g.ndim != 2 or g.shape[0] != n:
            raise ValueError(f"block of shape {g.shape} does not have {n} subject rows")
        n_obs, alt_freq, missing_rate = allele_stats(g)
        maf = np.minimum(alt_freq, 1.0 - alt_freq)
        usable = np.flatnonzero((missing_rate <= max_missing) & (np.nan_to_num(maf) >= max(maf_min, 1e-12)))
        cols = g[:, usable]
        if ld_r2 is not None and cols.shape[1] > 1:
            keep = ld_prune(cols, ld_r2, ld_window)
            pruned += cols.shape[1] - keep.size
            cols = cols[:, keep]
        seen = _reservoir_add(reservoir, seen, cols, rng)
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
    return out, {"n_pruned": int(pruned), "n_used": int(m), "n_after_pruning": int(seen)}


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
