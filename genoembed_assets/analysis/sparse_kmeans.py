"""Sparse k-means (Witten & Tibshirani 2010, JASA 105:713) with a permutation gap.

Clustering many block features of which only a few carry structure: plain
k-means spreads its attention over every feature and the noise of hundreds of
blocks hides a single structured one. Sparse k-means weights the features
(weights ``w >= 0``, ``||w||_2 = 1``, ``||w||_1 <= s``) to maximise the weighted
between-cluster sum of squares, so a few informative features can carry the
partition. The bound ``s`` is chosen by the gap statistic against
column-permuted data, as in the reference R package ``sparcl``.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import KMeans
from sklearn.utils import check_array, check_random_state
from threadpoolctl import threadpool_limits

from .clusters import relabel_by_size
from .features import standardize

__all__ = ["SparseKMeans", "between_ss"]


def between_ss(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-column between-cluster sum of squares."""
    centred = values - values.mean(axis=0)
    total = np.zeros(values.shape[1])
    for lab in np.unique(labels):
        part = centred[labels == lab]
        total += len(part) * part.mean(axis=0) ** 2
    return total


def _soft_weights(a: np.ndarray, bound: float) -> np.ndarray:
    """argmax_w w.a subject to ||w||_2 <= 1, ||w||_1 <= bound, w >= 0 (binary search)."""
    a = np.maximum(a, 0)
    w = a / (np.linalg.norm(a) or 1.0)
    if w.sum() <= bound:
        return w
    lo, hi = 0.0, float(a.max())
    for _ in range(60):
        delta = (lo + hi) / 2
        s = np.maximum(a - delta, 0)
        w = s / (np.linalg.norm(s) or 1.0)
        lo, hi = (delta, hi) if w.sum() > bound else (lo, delta)
    s = np.maximum(a - hi, 0)
    return s / (np.linalg.norm(s) or 1.0)


def _fit_once(x, k, bound, n_init, max_iter, rng, w0=None):
    p = x.shape[1]
    w = np.full(p, 1 / np.sqrt(p)) if w0 is None else w0
    labels = None
    for _ in range(max_iter):
        km = KMeans(k, n_init=n_init, random_state=rng.randint(2**31 - 1)).fit(x * np.sqrt(w))
        new_w = _soft_weights(between_ss(x, km.labels_), bound)
        converged = np.abs(new_w - w).sum() / np.abs(w).sum() < 1e-4
        w, labels = new_w, km.labels_
        if converged:
            break
    return labels, w, float(w @ between_ss(x, labels))


def _screen(x: np.ndarray, k: int, rng) -> np.ndarray:
    """Each feature's own 1-D k-means between-SS share, minus the median share (a univariate screen).

    From uniform weights, the first partition of many noise features plus one
    structured feature follows the noise, and the weights then reinforce that
    partition (a local optimum); a feature whose own 1-D k-means explains the
    most is where a real partition shows first.
    """
    share = np.zeros(x.shape[1])
    for j in range(x.shape[1]):
        col = x[:, j:j + 1]
        labels = KMeans(k, n_init=2, random_state=rng.randint(2**31 - 1)).fit_predict(col)
        total = ((col - col.mean()) ** 2).sum()
        share[j] = between_ss(col, labels)[0] / total if total > 0 else 0.0
    return np.maximum(share - np.median(share), 0) + 1e-9


def _best_fit(x, k, bound, n_init, max_iter, rng, screen):
    """The better (higher weighted between-SS) of a uniform start and one from the screen."""
    starts = [None, _soft_weights(screen, bound)]
    return max((_fit_once(x, k, bound, n_init, max_iter, rng, w0) for w0 in starts), key=lambda fit: fit[2])


class SparseKMeans(ClusterMixin, BaseEstimator):
    """Sparse k-means with the L1 bound chosen by a permutation gap statistic.

    Parameters
    ----------
    n_clusters : int
    l1_bound : float or None
        Bound ``s`` on ``||w||_1`` in ``[1, sqrt(p)]``; None chooses it from
        ``n_bounds`` values by the gap statistic (one standard error rule
        towards sparser solutions is not applied; the largest gap wins).
    n_bounds : int
        Grid size for the bound (log-spaced from 1.1 to sqrt(p)).
    n_permutations : int
        Column-permuted copies for the gap statistic.
    n_init, max_iter : int
        k-means restarts per step; weight/partition alternations.
    random_state : int, RandomState or None

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
    weights_ : ndarray of shape (n_features,)
        Feature weights (zero: unused feature).
    l1_bound_ : float
    gaps_ : dict of float to float
        Gap statistic per bound tried (empty when ``l1_bound`` is given).
    """

    def __init__(
        self,
        n_clusters: int = 3,
        l1_bound: float | None = None,
        n_bounds: int = 6,
        n_permutations: int = 5,
        n_init: int = 3,
        max_iter: int = 8,
        random_state=None,
    ):
        self.n_clusters = n_clusters
        self.l1_bound = l1_bound
        self.n_bounds = n_bounds
        self.n_permutations = n_permutations
        self.n_init = n_init
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X, y=None):
        x = standardize(check_array(X, dtype=float))
        n, p = x.shape
        if not 2 <= self.n_clusters < n:
            raise ValueError(f"n_clusters must be in [2, n_samples - 1], got {self.n_clusters}")
        rng = check_random_state(self.random_state)
        with threadpool_limits(limits=1):  # many small k-means fits
            if self.l1_bound is not None:
                bounds = [float(np.clip(self.l1_bound, 1.0, np.sqrt(p)))]
            else:
                bounds = list(np.geomspace(1.1, max(1.1, np.sqrt(p)), self.n_bounds))
            self.gaps_ = {}
            screen = _screen(x, self.n_clusters, rng)
            if len(bounds) > 1:
                permuted = [np.column_stack([rng.permutation(col) for col in x.T]) for _ in range(self.n_permutations)]
                screens = [_screen(xp, self.n_clusters, rng) for xp in permuted]
                for b in bounds:
                    observed = _best_fit(x, self.n_clusters, b, self.n_init, self.max_iter, rng, screen)[2]
                    null = [_best_fit(xp, self.n_clusters, b, self.n_init, self.max_iter, rng, sc)[2] for xp, sc in zip(permuted, screens)]
                    self.gaps_[float(b)] = float(np.log(observed) - np.mean(np.log(null)))
                bounds = [max(self.gaps_, key=self.gaps_.get)]
            self.l1_bound_ = float(bounds[0])
            labels, self.weights_, _ = _best_fit(x, self.n_clusters, self.l1_bound_, self.n_init * 3, self.max_iter, rng, screen)
        self.labels_ = relabel_by_size(labels)
        return self
