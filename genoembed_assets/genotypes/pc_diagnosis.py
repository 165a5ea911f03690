"""Is an ancestry PC genome-wide, or carried by one region?

A PC computed without LD pruning and region exclusion (``plink --pca`` on every
variant, as many cohorts ship their ``.eigenvec``) can be the haplotype axis
of one region: HLA class II lineages, an inversion. Regressing such a PC out
removes exactly the structure genoembed looks for. The rule, per PC:

1. each block gets ``n_local`` local PCs (top axes of its own standardized
   genotypes);
2. candidate regions are each long-range LD region of the build (the blocks
   overlapping it) and each block's window of +-``window_mb`` Mb;
3. ``region_r2``: adjusted R^2 of the PC on the local PCs of the best
   candidate region; ``block_r2``: the same per block; ``region_share``: the
   region's part of the summed per-block R^2 (blocks under ``min_block_r2``
   count 0, so thousands of noise blocks do not dilute it);
4. the PC is **regional** when ``region_r2 >= region_r2_min`` (default 0.5)
   and ``region_share >= region_share_min`` (default 0.5): one region
   explains most of the PC, and most of the genome's explanatory weight sits
   there. An ancestry PC is explained by every block a little, so its share
   in any one region is small and it stays. A structure shared by a few
   regions (a planted stratum in the HLA blocks and, weakly, one more block)
   is still regional: it is not ancestry.

5. the PC is **concentrated** when the top ``max(3, 10 %)`` blocks hold
   ``>= top_share_max`` (default 0.5) of the summed per-block R^2: a mixture of
   a few blocks' haplotype axes, the usual content of the trailing PCs of a
   cohort with little ancestry structure (PCs 5-10 of a 3-population cohort).
   Such a PC is not ancestry either, and adjusting for it is harmful:
   conditioning on a sum of a few blocks' axes makes those blocks' neighbours
   in the sum look associated with any trait one of them affects (measured on
   a simulated cohort with a naive eigenvec: 5 % of null-block tests at
   q < 0.05 with PCs 5-10 kept, 0 % without, every planted effect found
   either way).

``genome_wide`` = neither regional nor concentrated: the PCs the analyses
adjust for. A candidate region that holds more than half of the cohort's
blocks is not a region (a cohort of one small region has no "elsewhere"),
and a cohort with fewer than 6 blocks is not diagnosed. ``rest_r2``
(adjusted R^2 on the local PCs of every block farther than ``window_mb``
from the region, reduced to at most ``max_rest_axes`` axes) is reported
beside it.

Regional PCs are left out of the ancestry adjustment by default; the
``ancestry_pcs`` asset says so in a WARN check naming the PC and the region.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from .pcs import read_high_ld_regions, standardize

__all__ = ["COLUMNS", "block_local_axes", "diagnose_pcs", "local_axes"]

COLUMNS = ["pc", "region", "region_blocks", "region_r2", "region_share", "rest_r2", "top_block", "top_block_r2",
           "top_blocks", "top_blocks_share", "regional", "concentrated", "genome_wide"]


def local_axes(genotypes: np.ndarray, n_local: int = 3) -> np.ndarray:
    """Top ``n_local`` left singular vectors of a block's standardized genotypes (n x <= n_local)."""
    x = standardize(genotypes).astype(np.float64)
    x = x[:, np.abs(x).sum(axis=0) > 0]
    if x.shape[1] == 0:
        return np.zeros((x.shape[0], 0))
    u, s, _ = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    k = int(min(n_local, (s > 1e-8 * max(s[0], 1e-12)).sum()))
    return u[:, :k]


def _adjusted_r2(y: np.ndarray, x: np.ndarray) -> float:
    n = len(y)
    if x.shape[1] == 0 or n <= x.shape[1] + 2:
        return 0.0
    design = np.column_stack([np.ones(n), x])
    q, _ = np.linalg.qr(design)
    resid = y - q @ (q.T @ y)
    total = ((y - y.mean()) ** 2).sum()
    if total <= 0:
        return 0.0
    r2 = 1 - (resid**2).sum() / total
    return float(1 - (1 - r2) * (n - 1) / (n - x.shape[1] - 1))


def block_local_axes(blocks: Iterable[tuple[pd.Series, np.ndarray, object]], n_local: int = 3) -> list[tuple[pd.Series, np.ndarray]]:
    """``(block row, local axes)`` per block: what :func:`diagnose_pcs` needs from the genotypes."""
    return [(row, local_axes(np.asarray(g), n_local)) for row, g, _ in blocks]


def diagnose_pcs(
    pcs: pd.DataFrame,
    blocks: Iterable[tuple[pd.Series, np.ndarray, object]] | None = None,
    *,
    local: list[tuple[pd.Series, np.ndarray]] | None = None,
    build: str = "hg19",
    n_local: int = 3,
    window_mb: float = 2.5,
    region_r2_min: float = 0.5,
    region_share_min: float = 0.5,
    min_block_r2: float = 0.02,
    top_share_max: float = 0.5,
    min_blocks: int = 6,
    max_rest_axes: int = 100,
) -> pd.DataFrame:
    """One row per PC: where its variance lives and whether it is regional (module docstring).

    Parameters
    ----------
    pcs
        ``subject_id, PC1..`` in the same subject order as the block rows.
    blocks
        ``(block row with block_id/chrom/start/end, int8 genotypes, ...)``.
    local
        Instead of ``blocks``: :func:`block_local_axes` already computed (e.g. while the
        PCs streamed the same blocks, so the genotypes are read once).

    Returns
    -------
    DataFrame
        ``pc, region, region_blocks, region_r2, region_share, rest_r2, top_block,
        top_block_r2, top_blocks, top_blocks_share, regional, concentrated, genome_wide``.
    """
    cols = [c for c in pcs.columns if c != "subject_id"]
    meta, axes = [], []
    for row, a in (local if local is not None else block_local_axes(blocks, n_local)):
        if a.shape[1]:
            meta.append({"block_id": str(row["block_id"]), "chrom": str(row["chrom"]).removeprefix("chr"),
                         "start": int(row["start"]), "end": int(row["end"])})
            axes.append(a)
    meta = pd.DataFrame(meta, columns=["block_id", "chrom", "start", "end"])
    if meta.empty:
        return pd.DataFrame(columns=COLUMNS)
    candidates = [c for c in _candidate_regions(meta, build, window_mb) if len(c[1]) <= len(meta) / 2]
    if len(meta) < min_blocks or not candidates:
        return pd.DataFrame([{"pc": pc, "region": "", "region_blocks": "", "region_r2": np.nan, "region_share": np.nan,
                              "rest_r2": np.nan, "top_block": "", "top_block_r2": np.nan, "top_blocks": "",
                              "top_blocks_share": np.nan, "regional": False, "concentrated": False, "genome_wide": True}
                             for pc in cols], columns=COLUMNS)
    n_top = max(3, int(np.ceil(0.1 * len(meta))))
    width = window_mb * 1e6
    rows = []
    for pc in cols:
        y = pcs[pc].to_numpy(dtype=float)
        block_r2 = np.array([_adjusted_r2(y, a) for a in axes])
        best = max(candidates, key=lambda c: _adjusted_r2(y, np.hstack([axes[i] for i in c[1]])))
        name, members = best
        region_r2 = _adjusted_r2(y, np.hstack([axes[i] for i in members]))
        chrom = meta.loc[members[0], "chrom"]
        lo, hi = meta.loc[members, "start"].min() - width, meta.loc[members, "end"].max() + width
        far = [i for i in range(len(meta)) if not (meta.loc[i, "chrom"] == chrom and meta.loc[i, "end"] > lo and meta.loc[i, "start"] < hi)]
        rest_r2 = _adjusted_r2(y, _reduce(np.hstack([axes[i] for i in far]), max_rest_axes)) if far else 0.0
        top = int(np.argmax(block_r2))
        weight = np.where(block_r2 >= min_block_r2, block_r2, 0.0)
        share = float(weight[members].sum() / weight.sum()) if weight.sum() > 0 else 0.0
        top_idx = np.argsort(-weight)[:n_top]
        top_share = float(weight[top_idx].sum() / weight.sum()) if weight.sum() > 0 else 0.0
        regional = bool(region_r2 >= region_r2_min and share >= region_share_min)
        concentrated = bool(not regional and top_share >= top_share_max)
        rows.append({
            "pc": pc, "region": name, "region_blocks": ",".join(meta.loc[members, "block_id"]),
            "region_r2": region_r2, "region_share": share, "rest_r2": rest_r2,
            "top_block": meta.loc[top, "block_id"], "top_block_r2": float(block_r2[top]),
            "top_blocks": ",".join(meta.loc[top_idx, "block_id"]), "top_blocks_share": top_share,
            "regional": regional, "concentrated": concentrated, "genome_wide": not (regional or concentrated),
        })
    return pd.DataFrame(rows)


def _reduce(x: np.ndarray, k: int) -> np.ndarray:
    if x.shape[1] <= k:
        return x
    u, _, _ = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    return u[:, :k]


def _candidate_regions(meta: pd.DataFrame, build: str, window_mb: float) -> list[tuple[str, list[int]]]:
    """(name, block indices): each long-range LD region with blocks, then each block's window."""
    out = []
    try:
        regions = read_high_ld_regions(build)
    except (ValueError, FileNotFoundError):
        regions = pd.DataFrame(columns=["chrom", "start", "end", "region"])
    for name, rows in regions.groupby("region", sort=False):
        hit = [i for i in range(len(meta)) if ((rows["chrom"] == meta.loc[i, "chrom"]) & (rows["start"] < meta.loc[i, "end"])
                                             & (rows["end"] > meta.loc[i, "start"])).any()]
        if hit:
            out.append((f"long-range LD region {name}", hit))
    width = window_mb * 1e6
    for i in range(len(meta)):
        chrom, mid = meta.loc[i, "chrom"], (meta.loc[i, "start"] + meta.loc[i, "end"]) / 2
        hit = [j for j in range(len(meta)) if meta.loc[j, "chrom"] == chrom and meta.loc[j, "end"] > mid - width and meta.loc[j, "start"] < mid + width]
        lo, hi = meta.loc[hit, "start"].min(), meta.loc[hit, "end"].max()
        out.append((f"chr{chrom}:{lo:,}-{hi:,}", hit))
    return out
