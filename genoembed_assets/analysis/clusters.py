"""Subject clustering: k chosen by stability and silhouette, HDBSCAN second opinion.

Default: ancestry adjusted
--------------------------
``cluster_subjects(..., adjust_for_ancestry=True)`` regresses genotype PCs 1-10
out of the subject embedding before clustering. A learned embedding's largest
axis is usually ancestry (every block carries it); unadjusted k-means then
rediscovers the populations that the PCs already show. Adjusting removes that
linear ancestry signal, so clusters reflect structure *beyond* ancestry, which
is the question these analyses ask. Pass ``adjust_for_ancestry=False`` to
cluster the raw embedding (for example to show that ancestry dominates it).

k choice: against a null
------------------------
For each k in ``k_range`` (default 2..8) k-means is refitted with
``n_seeds`` (default 10) seeds, each on a random 80 % subsample, and labels for
all subjects are predicted; stability is the mean pairwise adjusted Rand index
(ARI) of these labelings (1 = the same partition every time).

Stability alone cannot tell clusters from a blob: a 2-way split of a
featureless Gaussian is perfectly stable. So each k's silhouette is compared
with its null: ``n_null`` (default 10) reference data sets of each of two
families with the data's mean and covariance but no discrete structure, a
Gaussian (a blob) and a uniform box along the data's principal axes (a
continuous gradient, such as an admixture cline, is flatter than a Gaussian),
each clustered the same way. ``silhouette_z`` is the data's silhouette minus
a family's mean, in units of its spread, for the family closer to the data. A k is
eligible when it is stable (``stability_min``, default 0.8), its silhouette
exceeds every reference's, and ``silhouette_z >= z_min`` (default 3); the
chosen k is the eligible one furthest above its null (largest silhouette
minus null mean). When no k is eligible the result is **no discrete
clusters**: ``k = 1``, every subject in cluster 0, and the summary says so.
The continuous axes (PCA of the clustered features: variance shares) are
reported either way.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.utils import check_array, check_random_state
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from .features import (
    SUBJECT_ID,
    AnalysisResult,
    align_subjects,
    ancestry_matrix,
    feature_columns,
    residualize,
)

__all__ = [
    "DEFAULT_K_RANGE",
    "StabilityKMeans",
    "cluster_features",
    "cluster_subjects",
    "hdbscan_labels",
    "relabel_by_size",
]

DEFAULT_K_RANGE = tuple(range(2, 9))


def relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters 0.. from largest to smallest (noise -1 stays -1)."""
    labels = np.asarray(labels)
    kept = labels[labels >= 0]
    if kept.size == 0:
        return labels.copy()
    values, counts = np.unique(kept, return_counts=True)
    order = values[np.lexsort((values, -counts))]
    mapping = {old: new for new, old in enumerate(order)}
    return np.array([mapping.get(v, -1) for v in labels], dtype=int)


class StabilityKMeans(ClusterMixin, BaseEstimator):
    """k-means with k chosen by subsample stability and silhouette.

    Parameters
    ----------
    k_range : sequence of int
        Candidate numbers of clusters (each >= 2).
    n_seeds : int
        Refits per k for the stability ARI (at least 2; 10 or more advised).
    subsample : float
        Fraction of subjects each stability refit sees.
    stability_min : float
        Smallest mean pairwise ARI for a k to be eligible.
    silhouette_sample : int
        Silhouette is computed on at most this many subjects (it is quadratic).
    n_init : int
        k-means restarts for the final fit of each k.
    n_null : int
        Reference data sets per family and k (0 disables the null: the old
        stability + silhouette rule, which always returns some k >= 2).
    z_min : float
        Smallest silhouette z-score against the null for a k to be eligible.
    random_state : int, RandomState or None

    Attributes
    ----------
    scan_ : DataFrame
        Per k: ``k, silhouette, stability_ari, inertia, min_cluster_size,
        null_gaussian_mean, null_uniform_mean, null_silhouette_mean (the
        larger), null_silhouette_max, silhouette_z, eligible, chosen``.
    k_ : int
        1 when no k beats its null (no discrete clusters).
    discrete_ : bool
    labels_ : ndarray of shape (n_samples,)
        Labels for the chosen k, numbered from the largest cluster (all 0 for k = 1).
    model_ : KMeans or None
        The fitted k-means of the chosen k (None for k = 1).
    """

    def __init__(
        self,
        k_range: Sequence[int] = DEFAULT_K_RANGE,
        n_seeds: int = 10,
        subsample: float = 0.8,
        stability_min: float = 0.8,
        silhouette_sample: int = 2000,
        n_init: int = 4,
        n_null: int = 10,
        z_min: float = 3.0,
        random_state=None,
    ):
        self.k_range = k_range
        self.n_seeds = n_seeds
        self.subsample = subsample
        self.stability_min = stability_min
        self.silhouette_sample = silhouette_sample
        self.n_init = n_init
        self.n_null = n_null
        self.z_min = z_min
        self.random_state = random_state

    def fit(self, X, y=None):
        X = check_array(X, dtype=float)
        n = X.shape[0]
        ks = sorted({int(k) for k in self.k_range})
        if not ks or ks[0] < 2 or ks[-1] >= n:
            raise ValueError(f"k_range must hold integers in [2, n_samples - 1 = {n - 1}], got {list(self.k_range)}")
        if self.n_seeds < 2:
            raise ValueError(f"n_seeds must be >= 2 to measure stability, got {self.n_seeds}")
        if not 0 < self.subsample <= 1:
            raise ValueError(f"subsample must be in (0, 1], got {self.subsample}")
        rng = check_random_state(self.random_state)
        m = max(max(ks) + 1, int(round(self.subsample * n)))
        rows, models = [], {}
        # many small fits: OpenMP threads cost more than they save (and starve
        # a shared machine), so run them single-threaded
        with threadpool_limits(limits=1):
            for k in ks:
                labelings = []
                for _ in range(self.n_seeds):
                    idx = rng.choice(n, size=m, replace=False)
                    km = KMeans(k, n_init=1, random_state=rng.randint(2**31 - 1)).fit(X[idx])
                    labelings.append(km.predict(X))
                stability = float(np.mean([adjusted_rand_score(a, b) for a, b in itertools.combinations(labelings, 2)]))
                model = KMeans(k, n_init=self.n_init, random_state=rng.randint(2**31 - 1)).fit(X)
                sample = min(n, self.silhouette_sample)
                silhouette = float(silhouette_score(X, model.labels_, sample_size=sample, random_state=rng.randint(2**31 - 1)))
                models[k] = model
                rows.append(
                    {
                        "k": k,
                        "silhouette": silhouette,
                        "stability_ari": stability,
                        "inertia": float(model.inertia_),
                        "min_cluster_size": int(np.bincount(model.labels_).min()),
                    }
                )
        scan = pd.DataFrame(rows)
        if self.n_null > 0:
            null = self._null_silhouettes(X, ks, rng)
            # z against each reference family; the weaker claim (smaller z) counts
            z = {}
            for family, values in null.items():
                mean = np.array([np.mean(values[k]) for k in ks])
                sd = np.maximum(np.array([np.std(values[k], ddof=1) if len(values[k]) > 1 else 0.0 for k in ks]), 1e-3)
                scan[f"null_{family}_mean"] = mean
                z[family] = (scan["silhouette"].to_numpy() - mean) / sd
            scan["null_silhouette_mean"] = np.max([scan[f"null_{f}_mean"] for f in null], axis=0)
            scan["null_silhouette_max"] = [max(max(v[k]) for v in null.values()) for k in ks]
            scan["silhouette_z"] = np.min(list(z.values()), axis=0)
            scan["eligible"] = ((scan["stability_ari"] >= self.stability_min) & (scan["silhouette"] > scan["null_silhouette_max"])
                                & (scan["silhouette_z"] >= self.z_min))
            eligible = scan[scan["eligible"]]
            best = eligible.loc[(eligible["silhouette"] - eligible["null_silhouette_mean"]).idxmax()] if len(eligible) else None
        else:
            scan["eligible"] = scan["stability_ari"] >= self.stability_min
            eligible = scan[scan["eligible"]]
            best = eligible.loc[eligible["silhouette"].idxmax()] if len(eligible) else scan.loc[scan["stability_ari"].idxmax()]
        self.k_ = 1 if best is None else int(best["k"])
        self.discrete_ = best is not None
        scan["chosen"] = scan["k"] == self.k_
        self.scan_ = scan
        self.model_ = models.get(self.k_)
        self.labels_ = relabel_by_size(self.model_.labels_) if self.model_ is not None else np.zeros(n, dtype=int)
        return self

    def _null_silhouettes(self, X: np.ndarray, ks: list[int], rng) -> dict[str, dict[int, list[float]]]:
        """Silhouettes of k-means on references without clusters, with X's mean and covariance.

        Two families, ``n_null`` data sets each, along X's principal axes with
        its variances: Gaussian (a blob) and uniform (a box: a continuous
        gradient such as an admixture cline is flatter than a Gaussian, and a
        2-way cut of it beats the Gaussian's silhouette without being a
        cluster).
        """
        n = X.shape[0]
        centred = X - X.mean(axis=0)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        scale = s / np.sqrt(max(n - 1, 1))  # per-axis standard deviations
        sample = min(n, self.silhouette_sample)
        draws = {
            "gaussian": lambda: rng.standard_normal((n, len(scale))),
            "uniform": lambda: rng.uniform(-np.sqrt(3), np.sqrt(3), size=(n, len(scale))),  # unit variance
        }
        out: dict[str, dict[int, list[float]]] = {family: {k: [] for k in ks} for family in draws}
        with threadpool_limits(limits=1):
            for family, draw in draws.items():
                for _ in range(self.n_null):
                    ref = (draw() * scale) @ vt + X.mean(axis=0)
                    for k in ks:
                        labels = KMeans(k, n_init=2, random_state=rng.randint(2**31 - 1)).fit_predict(ref)
                        out[family][k].append(float(silhouette_score(ref, labels, sample_size=sample, random_state=rng.randint(2**31 - 1))))
        return out

    def predict(self, X):
        check_is_fitted(self, "labels_")
        X = check_array(X, dtype=float)
        if self.model_ is None:
            return np.zeros(X.shape[0], dtype=int)
        raw = self.model_.predict(X)
        # map the model's raw labels onto the size-ordered numbering of labels_
        mapping = dict(zip(self.model_.labels_, self.labels_))
        return np.array([mapping[v] for v in raw], dtype=int)


def cluster_features(
    values: np.ndarray,
    ancestry: np.ndarray | None = None,
    n_components: int | None = 10,
    random_state=0,
) -> np.ndarray:
    """The matrix subjects are clustered on: ancestry-residualised, then PCA-reduced.

    Columns are not rescaled: axes of a learned embedding that carry little
    variance (collapsed units) would otherwise be blown up into noise. PCA to
    ``n_components`` keeps the main axes and drops the noisy tail.
    """
    adjusted = residualize(values, ancestry)
    if n_components is None or n_components >= min(adjusted.shape):
        return adjusted
    return PCA(n_components=n_components, random_state=random_state).fit_transform(adjusted)


def hdbscan_labels(values: np.ndarray, min_cluster_size: int | None = None) -> np.ndarray:
    """HDBSCAN labels (-1 = noise); ``hdbscan`` package, else scikit-learn's."""
    n = len(values)
    size = min_cluster_size or max(10, n // 50)
    try:
        import hdbscan

        model = hdbscan.HDBSCAN(min_cluster_size=size)
    except ImportError:  # scikit-learn >= 1.3 ships an implementation
        from sklearn.cluster import HDBSCAN

        model = HDBSCAN(min_cluster_size=size)
    return relabel_by_size(model.fit_predict(np.asarray(values, dtype=float)))


def cluster_subjects(
    embedding: pd.DataFrame,
    pcs: pd.DataFrame | None = None,
    *,
    adjust_for_ancestry: bool = True,
    n_pcs: int = 10,
    n_components: int | None = 10,
    k_range: Sequence[int] = DEFAULT_K_RANGE,
    n_seeds: int = 10,
    stability_min: float = 0.8,
    n_null: int = 10,
    z_min: float = 3.0,
    hdbscan_min_cluster_size: int | None = None,
    random_state: int = 0,
) -> AnalysisResult:
    """Cluster subjects on their embedding (see the module docstring for defaults).

    Parameters
    ----------
    embedding : DataFrame
        ``subject_id, e0..`` (Phase 2) or any numeric subject features.
    pcs : DataFrame, optional
        Genotype PCs ``subject_id, PC1..``; required when ``adjust_for_ancestry``.
    adjust_for_ancestry : bool
        Regress the first ``n_pcs`` PCs out before clustering (default True).
    n_components : int or None
        PCA dimensions clustered on (None keeps all).
    k_range, n_seeds, stability_min, n_null, z_min
        See :class:`StabilityKMeans` (the null decides whether there are clusters at all).
    hdbscan_min_cluster_size : int, optional
        Default ``max(10, n // 50)``.
    random_state : int

    Returns
    -------
    AnalysisResult
        ``table``: ``subject_id, cluster, hdbscan_cluster, pc1, pc2`` (pc1/pc2:
        the first two axes of the clustered features, for the scatter).
        ``tables["k_scan"]``: the per-k scan. ``summary``: ``k`` (1: no
        discrete clusters), ``discrete_clusters``, ``verdict`` (one sentence),
        ``best_k_tested`` and its ``silhouette_z``, ``continuous_axes``
        (variance share of the first 3 axes), ``silhouette``, ``stability_ari``, ``cluster_sizes``,
        ``hdbscan_n_clusters``, ``hdbscan_noise_fraction``,
        ``hdbscan_ari_vs_kmeans`` (on subjects HDBSCAN does not call noise),
        ``adjusted_for_ancestry``, ``n_subjects``.
    """
    if adjust_for_ancestry:
        if pcs is None:
            raise ValueError("adjust_for_ancestry=True needs the genotype PC table (pcs); pass adjust_for_ancestry=False to skip")
        embedding, pcs = align_subjects(embedding, pcs)
        ancestry = ancestry_matrix(pcs, n_pcs)
    else:
        (embedding,) = align_subjects(embedding)
        ancestry = None
    cols = feature_columns(embedding)
    values = embedding[cols].to_numpy(dtype=float)
    if not np.isfinite(values).all():
        raise ValueError("the embedding contains missing or non-finite values")
    features = cluster_features(values, ancestry, n_components, random_state)
    model = StabilityKMeans(k_range=k_range, n_seeds=n_seeds, stability_min=stability_min, n_null=n_null, z_min=z_min,
                            random_state=random_state).fit(features)
    labels = model.labels_
    density = hdbscan_labels(features, hdbscan_min_cluster_size)
    dense = density >= 0
    ari = float(adjusted_rand_score(labels[dense], density[dense])) if dense.sum() > 1 else float("nan")
    coords = PCA(n_components=2, random_state=random_state).fit_transform(features) if features.shape[1] > 2 else features
    table = pd.DataFrame(
        {
            SUBJECT_ID: embedding[SUBJECT_ID].to_numpy(),
            "cluster": labels,
            "hdbscan_cluster": density,
            "pc1": coords[:, 0],
            "pc2": coords[:, 1] if coords.shape[1] > 1 else 0.0,
        }
    )
    scan = model.scan_
    margin = scan["silhouette"] - scan.get("null_silhouette_mean", 0.0)
    tested = scan.loc[margin.idxmax()]
    chosen = scan.loc[scan["chosen"]].iloc[0] if model.discrete_ else tested
    centred = features - features.mean(axis=0)
    spectrum = np.linalg.svd(centred, compute_uv=False) ** 2
    shares = (spectrum / spectrum.sum())[:3] if spectrum.sum() > 0 else np.zeros(0)
    z = float(tested.get("silhouette_z", float("nan")))
    if model.discrete_:
        verdict = f"{model.k_} discrete clusters (silhouette {chosen['silhouette']:.3f}, z {z:.1f} above the Gaussian and uniform nulls)"
    else:
        verdict = (f"no discrete clusters: the best split (k={int(tested['k'])}, silhouette {tested['silhouette']:.3f}, "
                   f"stability {tested['stability_ari']:.2f}) is not above Gaussian and uniform nulls of the same covariance (z {z:.1f}); "
                   f"structure is continuous, leading axes carry {', '.join(f'{v:.0%}' for v in shares)} of the variance")
    summary = {
        "k": model.k_,
        "discrete_clusters": bool(model.discrete_),
        "verdict": verdict,
        "best_k_tested": int(tested["k"]),
        "silhouette_z": z,
        "continuous_axes": [round(float(v), 4) for v in shares],
        "silhouette": float(chosen["silhouette"]),
        "stability_ari": float(chosen["stability_ari"]),
        "cluster_sizes": np.bincount(labels).tolist(),
        "hdbscan_n_clusters": int(density.max() + 1),
        "hdbscan_noise_fraction": float(1 - dense.mean()),
        "hdbscan_ari_vs_kmeans": ari,
        "adjusted_for_ancestry": bool(adjust_for_ancestry),
        "n_subjects": int(len(table)),
    }
    return AnalysisResult(table=table, summary=summary, tables={"k_scan": model.scan_})
