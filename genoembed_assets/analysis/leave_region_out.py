"""Leave-region-out re-clustering: drop a region's blocks, which block leads next?

Method (default ``method="split"``: valid by construction)
---------------------------------------------------------
1. Drop every block overlapping the region(s) (default: the MHC). When the
   MHC is named, the *extended* MHC (the long-range LD region chr6:25.5-33.5
   Mb of hg19, from ``high_ld_regions_<build>.bed``) goes with it: blocks just
   outside the classical MHC share its haplotypes through LD and would
   otherwise carry the MHC's structure into the "rest of the genome".
2. Features: the remaining blocks' PC1 (as given, normally ancestry-adjusted
   like the main clustering), standardised so each block weighs the same.
3. Re-cluster without looking at the old clusters (they were fitted on every
   block, the remaining ones included, so testing the remaining blocks
   against them is partly circular). The reference is the dropped region's
   own structure instead: k-means of the dropped blocks' features gives
   region labels, which are a function of the dropped blocks only. Then
   sample splitting (cross-fitting): subjects are split at random into halves
   A and B; on A each remaining block gets its eta squared with the region
   labels, and k-means on the remaining blocks weighted by it gives the new
   clusters (B's subjects assigned to A's centroids); each block's eta squared
   and one-way ANOVA p-value are then computed on B alone; then the roles
   swap. A block's ``eta2`` is the mean over the two test halves and its ``p``
   the larger of the two (the maximum of two valid p-values is valid). Under
   the null (a block independent of the region) the p-values are uniform,
   whatever the selection did on the other half. ``structure_remains``: the
   leading block's BH q (over the remaining blocks) is below ``fdr``. The
   question answered: which block of the rest of the genome carries the
   structure the region carried? When the cohort has no block in the region,
   there is no reference and the re-clustering is unsupervised sparse
   k-means (``summary["reference"] = "none"``).
Other methods: ``"guided"`` weights blocks by how well they explain the OLD
clusters (circular: the old clusters were fitted on the same subjects, so it
is kept only for comparison with earlier results); ``"sparse"``: sparse
k-means on all subjects, eta squared on the same subjects; ``"kmeans"``:
plain k-means on the top 10 principal components.

Reported either way: eta squared of the new clusters by each remaining block
(the leading block), eta squared of the OLD clusters by the same block, and
the ARI between old and new clusters.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

from .association import bh_fdr
from .clusters import cluster_features, relabel_by_size
from .drivers import rank_by_eta
from .features import SUBJECT_ID, AnalysisResult, align_subjects, eta_squared, feature_columns, standardize
from ..genotypes.pcs import read_high_ld_regions
from .regions import Region, blocks_in_regions, resolve_region
from .sparse_kmeans import SparseKMeans

__all__ = ["DEFAULT_REGIONS", "leave_region_out"]

# "MHC" resolves through asthma_loci.tsv to the GRC MHC of the cohort's build
DEFAULT_REGIONS = ("MHC",)
METHODS = ("split", "guided", "sparse", "kmeans")


def leave_region_out(
    block_features: pd.DataFrame,
    blocks: pd.DataFrame,
    labels: pd.DataFrame,
    regions: str | Sequence[str] = DEFAULT_REGIONS,
    *,
    build: str = "hg19",
    n_clusters: int | None = None,
    method: Literal["split", "guided", "sparse", "kmeans"] = "split",
    expand_mhc: bool = True,
    fdr: float = 0.05,
    cluster_column: str = "cluster",
    random_state: int = 0,
) -> AnalysisResult:
    """Re-cluster subjects without the blocks of the given region(s).

    Parameters
    ----------
    block_features : DataFrame
        ``subject_id, <block_id>...`` block PC1 features (ancestry-adjusted).
    blocks : DataFrame
        ``block_id, chrom, start, end`` coordinates (in ``build``).
    labels : DataFrame
        ``subject_id, cluster``: the original clusters.
    regions : str or sequence of str
        Regions dropped together: ``chrom:start-end``, a locus name from
        ``asthma_loci.tsv`` (``MHC``, ``17q21``) or a gene symbol.
    n_clusters : int, optional
        Default: the number of original clusters.
    method : {"split", "guided", "sparse", "kmeans"}
        See the module docstring.
    expand_mhc : bool
        When a region is the MHC, also drop the extended MHC (default True).
    fdr : float
        BH level for a block to guide the ``"guided"`` re-clustering.
    random_state : int

    Returns
    -------
    AnalysisResult
        ``table``: ``feature, eta2 (new clusters), eta2_old, weight, rank``
        over the remaining blocks (weight: the block's weight in the
        guided or sparse re-clustering, NaN for plain k-means). ``tables["labels"]``: ``subject_id, cluster_old,
        cluster_new``. ``summary``: ``regions``, ``dropped_blocks``,
        ``n_dropped``, ``n_remaining``, ``k``, ``leading_block``,
        ``leading_eta2``, ``leading_p``, ``leading_q``, ``leading_block_old``
        (top remaining block by old clusters), ``ari_old_new``, ``method``,
        ``structure_remains``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    specs = [regions] if isinstance(regions, str) else list(regions)
    resolved = [resolve_region(spec, build) for spec in specs]
    if expand_mhc and any(_is_mhc(r, build) for r in resolved):
        resolved.append(extended_mhc(build))
    dropped = set(blocks_in_regions(blocks, [_coords(r) for r in resolved], build))
    labels, block_features = align_subjects(labels[[SUBJECT_ID, cluster_column]], block_features)
    all_blocks = feature_columns(block_features)
    remaining = [b for b in all_blocks if b not in dropped]
    if len(remaining) < 2:
        raise ValueError(f"leaving out {specs} keeps {len(remaining)} block(s); at least 2 are needed to re-cluster")
    old = labels[cluster_column].to_numpy()
    k = int(n_clusters or max(2, len(np.unique(old[old >= 0]))))
    x = standardize(block_features[remaining].to_numpy(dtype=float))
    eta_old = eta_squared(x, old) if len(np.unique(old)) > 1 else np.full(len(remaining), np.nan)
    p_values = np.full(len(remaining), np.nan)
    structure_remains = None
    region_blocks = [b for b in all_blocks if b in dropped]
    reference = "dropped region" if region_blocks else "none"
    if method == "split":
        if region_blocks:
            ref = _region_labels(standardize(block_features[region_blocks].to_numpy(dtype=float)), k, random_state)
        else:
            ref = SparseKMeans(n_clusters=k, random_state=random_state).fit(x).labels_
        new, eta_new, p_values, weights = _cross_fit(x, ref, k, random_state)
        structure_remains = bool(np.nanmin(bh_fdr(np.nan_to_num(p_values, nan=1.0))) < fdr)
    else:
        guide = _guide_weights(eta_old, old, fdr) if method == "guided" else None
        if method == "guided" and guide is not None and bool((guide > 0).any()):
            structure_remains = True
            with threadpool_limits(limits=1):
                new = relabel_by_size(KMeans(k, n_init=10, random_state=random_state).fit_predict(x * np.sqrt(guide)))
            weights = guide / np.linalg.norm(guide)
        elif method in ("guided", "sparse"):
            structure_remains = False if method == "guided" else None
            model = SparseKMeans(n_clusters=k, random_state=random_state).fit(x)
            new, weights = model.labels_, model.weights_
        else:
            reduced = cluster_features(x, None, n_components=10, random_state=random_state)
            with threadpool_limits(limits=1):
                new = relabel_by_size(KMeans(k, n_init=10, random_state=random_state).fit_predict(reduced))
            weights = np.full(len(remaining), np.nan)
        eta_new = eta_squared(x, new)
    q_values = bh_fdr(np.nan_to_num(p_values, nan=1.0)) if method == "split" else np.full(len(remaining), np.nan)
    table = rank_by_eta(pd.DataFrame({"feature": remaining, "eta2": eta_new, "eta2_old": eta_old, "weight": weights,
                                      "p": p_values, "q": q_values}))
    lead = table.iloc[0]
    summary = {
        "regions": [str(r) for r in resolved],
        "dropped_blocks": sorted(dropped & set(all_blocks)),
        "n_dropped": len(dropped & set(all_blocks)),
        "n_remaining": len(remaining),
        "k": k,
        "leading_block": str(lead["feature"]),
        "leading_eta2": float(lead["eta2"]),
        "leading_p": float(lead["p"]),
        "leading_q": float(lead["q"]),
        "leading_block_old": str(table.loc[table["eta2_old"].idxmax(), "feature"]) if table["eta2_old"].notna().any() else None,
        "ari_old_new": float(adjusted_rand_score(old, new)),
        "method": method,
        "reference": reference if method == "split" else "old clusters" if method == "guided" else "none",
        "structure_remains": structure_remains,
    }
    frame = pd.DataFrame({SUBJECT_ID: labels[SUBJECT_ID].to_numpy(), "cluster_old": old, "cluster_new": new})
    return AnalysisResult(table=table, summary=summary, tables={"labels": frame})


def extended_mhc(build: str = "hg19") -> Region:
    """The extended MHC as the long-range LD list of the build has it (Price et al. 2008)."""
    regions = read_high_ld_regions(build)
    rows = regions[(regions["chrom"] == "6") & (regions["region"].str.startswith("chr6:25"))]
    return Region("extended MHC", "6", int(rows["start"].min()), int(rows["end"].max()))


def _is_mhc(region: Region, build: str) -> bool:
    mhc = resolve_region("MHC", build)
    return region.name.upper() in ("MHC", "XMHC", "EXTENDED MHC") or (
        region.chrom == mhc.chrom and region.start <= mhc.end and region.end >= mhc.start
        and (min(region.end, mhc.end) - max(region.start, mhc.start)) >= 0.5 * (mhc.end - mhc.start))


def _coords(region: Region) -> str:
    return f"chr{region.chrom}:{region.start}-{region.end}"


def _region_labels(region: np.ndarray, k: int, random_state: int) -> np.ndarray:
    """k-means labels of the dropped region's block features (the reference structure)."""
    reduced = cluster_features(region, None, n_components=min(10, region.shape[1]), random_state=random_state)
    with threadpool_limits(limits=1):
        return relabel_by_size(KMeans(k, n_init=10, random_state=random_state).fit_predict(reduced))


def _cross_fit(x: np.ndarray, reference: np.ndarray, k: int, random_state: int):
    """Weights and clusters fitted on one half, blocks tested on the other, both ways (module docstring)."""
    rng = np.random.default_rng(random_state)
    n = len(x)
    order = rng.permutation(n)
    halves = [np.sort(order[: n // 2]), np.sort(order[n // 2:])]
    labels = np.zeros(n, dtype=int)
    etas, ps, weights = [], [], []
    for fit, test in (halves, halves[::-1]):
        mean, sd = x[fit].mean(axis=0), x[fit].std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        z_fit, z_test = (x[fit] - mean) / sd, (x[test] - mean) / sd
        w = np.nan_to_num(eta_squared(z_fit, reference[fit]))
        w = w / w.sum() if w.sum() > 0 else np.full(len(w), 1 / len(w))
        with threadpool_limits(limits=1):
            km = KMeans(k, n_init=10, random_state=int(rng.integers(2**31 - 1))).fit(z_fit * np.sqrt(w))
        labels[test] = km.predict(z_test * np.sqrt(w))
        etas.append(eta_squared(x[test], reference[test]))
        ps.append(_anova_p(x[test], reference[test]))
        weights.append(w)
    return relabel_by_size(labels), np.mean(etas, axis=0), np.max(ps, axis=0), np.mean(weights, axis=0)


def _anova_p(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """One-way ANOVA p-value of each column by the labels (1 where there is one group)."""
    groups = np.unique(labels)
    n, k = len(labels), len(groups)
    if k < 2:
        return np.ones(values.shape[1])
    eta = np.nan_to_num(eta_squared(values, labels))
    with np.errstate(divide="ignore", invalid="ignore"):
        f = (eta / (k - 1)) / ((1 - eta) / (n - k))
    return stats.f.sf(f, k - 1, n - k)


def _guide_weights(eta: np.ndarray, labels: np.ndarray, fdr: float) -> np.ndarray:
    """Eta squared of blocks that significantly explain ``labels`` (one-way ANOVA F), else 0."""
    n, k = len(labels), len(np.unique(labels))
    eta = np.nan_to_num(eta)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = (eta / (k - 1)) / ((1 - eta) / (n - k))
    p = stats.f.sf(f, k - 1, n - k)
    return np.where(bh_fdr(p) < fdr, eta, 0.0)
