"""Imputation baselines and the scores that compare them with a block model (pure numpy/sklearn).

A block model is only worth its name if it predicts hidden genotypes better
than what costs nothing to fit: the most frequent genotype per variant, a
rank-k reconstruction of the block's genotypes (PCA with k = the latent size,
fitted by iterative SVD so that missing entries are not dosage 0), and the
k nearest subjects. Every baseline takes int8 genotypes with the entries to
predict set to -1 and returns an expected dosage (float32, [0, 2]) for every
entry; the genotype call is the nearest class.

Scores are computed on a set of hidden calls only: concordance (share of
calls predicted exactly) and the squared correlation of the true and the
predicted dosage, pooled over the calls of each minor-allele-frequency bin.
Dosages are counted in minor alleles before pooling: pooled over variants
whose ALT is sometimes the major allele, an ALT-dosage r² rewards merely
knowing which allele is common (the mode baseline then scores 0.8).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ._keys import GENOTYPE_CLASSES
from ._ld_neighbours import ld_neighbour_probs

__all__ = [
    "BASELINES",
    "MAF_BINS",
    "MAX_BASELINE_SUBJECTS",
    "compare_with_baselines",
    "knn_dosage",
    "minor_allele_frequency",
    "mode_dosage",
    "pca_dosage",
    "score_calls",
]

#: Minor-allele-frequency bins of the imputation scores: [low, high).
MAF_BINS: tuple[tuple[float, float], ...] = ((0.0, 0.01), (0.01, 0.05), (0.05, 0.2), (0.2, 0.5000001))
_SVD_ITERATIONS = 15
_KNN_NEIGHBOURS = 10


def _observed_mean(genotypes: np.ndarray) -> np.ndarray:
    observed = genotypes >= 0
    counts = observed.sum(axis=0)
    sums = np.where(observed, genotypes, 0).sum(axis=0, dtype=np.float64)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)


def minor_allele_frequency(genotypes: np.ndarray) -> np.ndarray:
    """Per-variant MAF over observed calls (0 where none is observed)."""
    p = _observed_mean(genotypes) / 2.0
    return np.minimum(p, 1.0 - p)


def _rows(values: np.ndarray, query: np.ndarray | None) -> np.ndarray:
    return values if query is None else values[query]


def mode_dosage(genotypes: np.ndarray, *, rank: int | None = None, seed: int = 0,
                query: np.ndarray | None = None) -> np.ndarray:
    """The most frequent observed genotype of each variant, everywhere (ties pick the lower class)."""
    counts = np.stack([(genotypes == c).sum(axis=0) for c in range(GENOTYPE_CLASSES)])
    mode = counts.argmax(axis=0).astype(np.float32)
    return _rows(np.broadcast_to(mode, genotypes.shape), query).copy()


def _rank_k(centred: np.ndarray, k: int) -> np.ndarray:
    """Best rank-k approximation (as a truncated SVD), from the eigenvectors of the smaller Gram matrix."""
    n, v = centred.shape
    if v <= n:
        top = np.linalg.eigh(centred.T @ centred)[1][:, -k:]
        return (centred @ top) @ top.T
    top = np.linalg.eigh(centred @ centred.T)[1][:, -k:]
    return top @ (top.T @ centred)


def pca_dosage(genotypes: np.ndarray, *, rank: int, seed: int = 0, n_iter: int = _SVD_ITERATIONS,
               query: np.ndarray | None = None) -> np.ndarray:
    """Rank-``rank`` reconstruction by iterative (hard-impute) SVD.

    Missing entries start at the variant's observed mean dosage; each round
    refits a truncated SVD of the centred matrix and replaces only the missing
    entries by the reconstruction, so observed calls are never changed and
    missingness is never read as dosage 0.
    """
    observed = genotypes >= 0
    mean = _observed_mean(genotypes)
    filled = np.where(observed, genotypes, mean).astype(np.float64)
    k = max(1, min(rank, min(filled.shape) - 1))
    reconstruction = filled
    for _ in range(n_iter if (~observed).any() else 1):
        centre = filled.mean(axis=0)
        reconstruction = _rank_k(filled - centre, k) + centre
        filled = np.where(observed, genotypes, reconstruction)
    return _rows(np.clip(reconstruction, 0.0, 2.0), query).astype(np.float32)


def knn_dosage(genotypes: np.ndarray, *, rank: int | None = None, seed: int = 0,
               n_neighbors: int = _KNN_NEIGHBOURS, query: np.ndarray | None = None) -> np.ndarray:
    """Mean dosage of the ``n_neighbors`` nearest subjects that observed the call (sklearn's KNNImputer).

    Distance is the NaN-aware Euclidean distance over the calls both subjects
    observed; a variant no subject observed stays at 0 (it has no information).
    With ``query`` only those rows are imputed (the cost is rows x subjects x variants).
    """
    from sklearn.impute import KNNImputer

    x = np.where(genotypes >= 0, genotypes, np.nan).astype(np.float64)
    imputer = KNNImputer(n_neighbors=n_neighbors, keep_empty_features=True).fit(x)
    return np.clip(imputer.transform(_rows(x, query)), 0.0, 2.0).astype(np.float32)


#: name -> f(genotypes with hidden entries as -1, rank=, seed=, query=rows) -> dosage of those rows.
BASELINES: dict[str, Callable[..., np.ndarray]] = {"mode": mode_dosage, "pca": pca_dosage, "knn": knn_dosage}


def _pooled_r2(truth: np.ndarray, dosage: np.ndarray) -> float:
    if truth.size < 2 or truth.std() == 0 or dosage.std() == 0:
        return float("nan")
    return float(np.corrcoef(truth, dosage)[0, 1] ** 2)


def score_calls(truth: np.ndarray, dosage: np.ndarray, maf: np.ndarray, *,
                calls: np.ndarray | None = None, minor_is_ref: np.ndarray | None = None) -> dict[str, float | int]:
    """Concordance and dosage r² of predicted calls, overall and per MAF bin.

    Parameters
    ----------
    truth
        int8 true genotypes of the scored calls (1-D).
    dosage
        Predicted expected dosage of the same calls (1-D).
    maf
        The MAF of each scored call's variant (1-D).
    calls
        Predicted genotype classes; default: the dosage rounded.
    minor_is_ref
        Per scored call, True where the variant's ALT allele is the major one:
        r² then counts the other allele (concordance is unaffected).

    Returns
    -------
    dict
        ``concordance``, ``r2``, ``n`` and per bin ``concordance_maf_<lo>_<hi>``,
        ``r2_maf_<lo>_<hi>``, ``n_maf_<lo>_<hi>`` (bounds in percent).
    """
    truth = np.asarray(truth, dtype=np.float64)
    dosage = np.asarray(dosage, dtype=np.float64)
    calls = np.rint(dosage) if calls is None else np.asarray(calls)
    if minor_is_ref is not None:
        calls = np.where(minor_is_ref, 2 - calls, calls)
        truth, dosage = np.where(minor_is_ref, 2 - truth, truth), np.where(minor_is_ref, 2 - dosage, dosage)
    out: dict[str, float | int] = {
        "n": int(truth.size),
        "concordance": float((calls == truth).mean()) if truth.size else float("nan"),
        "r2": _pooled_r2(truth, dosage),
    }
    for low, high in MAF_BINS:
        tag = f"maf_{round(low * 100)}_{round(high * 100)}"
        inside = (maf >= low) & (maf < high)
        out[f"n_{tag}"] = int(inside.sum())
        out[f"concordance_{tag}"] = float((calls[inside] == truth[inside]).mean()) if inside.any() else float("nan")
        out[f"r2_{tag}"] = _pooled_r2(truth[inside], dosage[inside])
    return out


#: Subjects the baselines are fitted on at most (kNN costs subjects² x variants).
MAX_BASELINE_SUBJECTS = 2000


def compare_with_baselines(
    genotypes: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray, held: np.ndarray, model_probs: np.ndarray,
    *, rank: int, seed: int = 0,
) -> dict[str, float | int]:
    """Held-out scores of a block model beside the mode, rank-k PCA and kNN baselines.

    The baselines see what the model saw: training subjects' observed calls and
    validation subjects' calls outside ``held`` (at most
    ``MAX_BASELINE_SUBJECTS`` training subjects, drawn with ``seed``).

    Parameters
    ----------
    genotypes
        int8 (subjects, variants) of the block, all subjects.
    train_idx, val_idx
        Subject indices of the split.
    held
        bool (len(val_idx), variants): the held-out calls of validation subjects.
    model_probs
        float (len(val_idx), 3, variants) the model's genotype probabilities (class-major).
    rank
        Rank of the PCA baseline (the latent size).

    Returns
    -------
    dict
        ``<name>_baseline_accuracy`` and ``<name>_baseline_r2`` for ``pca`` and ``knn``, and
        the model's and each baseline's concordance and dosage r² per MAF bin
        (``<who>_<score>_maf_<lo>_<hi>``, ``who`` = ``model`` or a baseline), and
        ``ld_imputer_accuracy`` / ``ld_imputer_r2``: the LD-neighbour rule that
        imputation blends with the model (:mod:`._ld_neighbours`), on the same calls.
    """
    rng = np.random.default_rng(seed)
    if len(train_idx) > MAX_BASELINE_SUBJECTS:
        train_idx = np.sort(rng.choice(train_idx, MAX_BASELINE_SUBJECTS, replace=False))
    val = np.where(held, -1, genotypes[val_idx]).astype(np.int8)
    seen = np.concatenate([genotypes[train_idx], val])
    truth = genotypes[val_idx][held]
    alt = _observed_mean(genotypes[train_idx]) / 2.0
    maf = np.broadcast_to(np.minimum(alt, 1.0 - alt), held.shape)[held]
    flip = np.broadcast_to(alt > 0.5, held.shape)[held]
    probs = np.asarray(model_probs, dtype=np.float64)
    dosage = probs[:, 1] + 2.0 * probs[:, 2]
    out: dict[str, float | int] = {}
    model = score_calls(truth, dosage[held], maf, calls=probs.argmax(1)[held], minor_is_ref=flip)
    out["heldout_r2"] = model["r2"]
    out.update({f"model_{k}": v for k, v in model.items() if "maf" in k and not k.startswith("n_")})
    out.update({k: v for k, v in model.items() if k.startswith("n_maf")})
    for name, fill in BASELINES.items():
        if name == "mode":  # the trainer scores it already, from training subjects only (as it always has)
            continue
        predicted = fill(seen, rank=rank, seed=seed, query=np.arange(len(train_idx), len(seen)))
        scores = score_calls(truth, predicted[held], maf, minor_is_ref=flip)
        out[f"{name}_baseline_accuracy"] = scores["concordance"]
        out[f"{name}_baseline_r2"] = scores["r2"]
        out.update({f"{name}_{k}": v for k, v in scores.items() if "maf" in k and not k.startswith("n_")})
    ld = ld_neighbour_probs(seen)[len(train_idx):]
    scores = score_calls(truth, (ld[..., 1] + 2.0 * ld[..., 2])[held], maf, calls=ld.argmax(-1)[held], minor_is_ref=flip)
    out["ld_imputer_accuracy"], out["ld_imputer_r2"] = scores["concordance"], scores["r2"]
    out.update({f"ld_imputer_{k}": v for k, v in scores.items() if "maf" in k and not k.startswith("n_")})
    return out
