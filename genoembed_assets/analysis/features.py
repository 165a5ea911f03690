"""Subject-level feature helpers shared by every analysis (pure, no Dagster).

Every table here is keyed by a string ``subject_id`` column. Analyses combine
tables from different layers (Phase 1 blocks, Phase 2 embedding, genotype PCs,
phenotypes), so the first step is always :func:`align_subjects`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "SUBJECT_ID",
    "AnalysisResult",
    "align_subjects",
    "ancestry_matrix",
    "block_matrix",
    "eta_squared",
    "feature_columns",
    "is_skipped",
    "pc1_scores",
    "residualize",
    "skipped_result",
    "standardize",
]

SUBJECT_ID = "subject_id"


@dataclass(frozen=True)
class AnalysisResult:
    """What every analysis returns.

    Attributes
    ----------
    table : pandas.DataFrame
        The main table (what the Dagster asset writes as Parquet).
    summary : dict
        Headline figures, JSON-serialisable (numbers, strings, lists).
    tables : dict of str to pandas.DataFrame
        Secondary tables (per-k scan, subject labels, ...), possibly empty.
    """

    table: pd.DataFrame
    summary: dict
    tables: dict = field(default_factory=dict)


def skipped_result(reason: str) -> AnalysisResult:
    """An analysis that could not apply to this cohort (``reason`` says why): a one-row status table.

    ``summary`` is ``{"status": "skipped", "skipped": reason}``, which :func:`is_skipped`
    recognises after a round trip through the written files.
    """
    return AnalysisResult(table=pd.DataFrame({"status": ["skipped"], "reason": [reason]}),
                          summary={"status": "skipped", "skipped": reason})


def is_skipped(result: AnalysisResult | None) -> bool:
    """Whether ``result`` records a skipped analysis (see :func:`skipped_result`)."""
    return result is not None and result.summary.get("status") == "skipped"


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """All numeric columns except ``subject_id``, in table order."""
    return [c for c in frame.columns if c != SUBJECT_ID and pd.api.types.is_numeric_dtype(frame[c])]


def align_subjects(*frames: pd.DataFrame) -> list[pd.DataFrame]:
    """Restrict tables to their common subjects, in the first table's row order.

    Raises
    ------
    ValueError
        If a table lacks ``subject_id``, repeats an ID, or no subject is shared.
    """
    keyed = []
    for i, frame in enumerate(frames):
        if SUBJECT_ID not in frame.columns:
            raise ValueError(f"table {i} has no {SUBJECT_ID!r} column (columns: {list(frame.columns)[:8]})")
        ids = frame[SUBJECT_ID].astype(str)
        if ids.duplicated().any():
            raise ValueError(f"table {i} repeats subject IDs, e.g. {ids[ids.duplicated()].iloc[0]!r}")
        keyed.append(frame.assign(**{SUBJECT_ID: ids}).set_index(SUBJECT_ID))
    common = keyed[0].index
    for frame in keyed[1:]:
        common = common.intersection(frame.index, sort=False)
    if len(common) == 0:
        raise ValueError("the tables share no subject_id")
    return [frame.loc[common].reset_index() for frame in keyed]


def ancestry_matrix(pcs: pd.DataFrame, n_pcs: int = 10) -> np.ndarray:
    """The first ``n_pcs`` genotype PC columns (``PC1``.. by name, else table order)."""
    named = [f"PC{i}" for i in range(1, n_pcs + 1)]
    cols = [c for c in named if c in pcs.columns] or feature_columns(pcs)[:n_pcs]
    if not cols:
        raise ValueError("the genotype PC table has no numeric PC columns")
    return pcs[cols].to_numpy(dtype=float)


def residualize(values: np.ndarray, covariates: np.ndarray | None) -> np.ndarray:
    """Residuals of each column of ``values`` after least squares on covariates + intercept.

    With ``covariates=None`` the columns are only centred. Used to remove
    ancestry (genotype PCs) so that what remains is structure beyond ancestry.
    """
    values = np.asarray(values, dtype=float)
    centred = values - values.mean(axis=0)
    if covariates is None:
        return centred
    cov = np.asarray(covariates, dtype=float)
    if cov.ndim == 1:
        cov = cov[:, None]
    if not np.isfinite(cov).all():
        raise ValueError("covariates contain missing or non-finite values")
    design = np.column_stack([np.ones(len(cov)), cov])
    # an orthonormal basis of the design keeps this stable with collinear PCs
    q, _ = np.linalg.qr(design)
    return values - q @ (q.T @ values)


def standardize(values: np.ndarray) -> np.ndarray:
    """Centre and scale columns to unit variance; constant columns become 0."""
    values = np.asarray(values, dtype=float)
    sd = values.std(axis=0)
    return (values - values.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def eta_squared(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Share of each column's variance explained by group membership (one-way ANOVA).

    Parameters
    ----------
    values : array of shape (n,) or (n, p)
    labels : array of shape (n,)
        Group labels (any hashable); every label, including a noise label such
        as -1, counts as its own group.

    Returns
    -------
    numpy.ndarray of shape (p,) (a float for 1-D input); NaN for constant columns.
    """
    values = np.asarray(values, dtype=float)
    one_d = values.ndim == 1
    x = values[:, None] if one_d else values
    _, codes = np.unique(np.asarray(labels), return_inverse=True)
    onehot = np.zeros((len(codes), codes.max() + 1))
    onehot[np.arange(len(codes)), codes] = 1.0
    counts = onehot.sum(axis=0)
    centred = x - x.mean(axis=0)
    group_means = (onehot.T @ centred) / counts[:, None]
    between = (counts[:, None] * group_means**2).sum(axis=0)
    total = (centred**2).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        eta = np.where(total > 0, between / total, np.nan)
    return float(eta[0]) if one_d else eta


def pc1_scores(values: np.ndarray) -> np.ndarray:
    """Scores on the first principal component, with a deterministic sign.

    The sign makes the loading with the largest magnitude positive (the
    convention of ``sklearn.utils.extmath.svd_flip``), so re-running on the same
    data never flips a feature.
    """
    centred = np.asarray(values, dtype=float) - np.mean(values, axis=0)
    if centred.shape[1] == 1:
        return centred[:, 0]
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    loading = vt[0]
    sign = np.sign(loading[np.argmax(np.abs(loading))]) or 1.0
    return centred @ loading * sign


def block_matrix(value: np.ndarray | pd.DataFrame, subject_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """One block's embedding as ``subject_id, z0..`` (arrays need ``subject_ids``)."""
    if isinstance(value, pd.DataFrame):
        if SUBJECT_ID not in value.columns:
            raise ValueError(f"block embedding table has no {SUBJECT_ID!r} column")
        return value[[SUBJECT_ID] + feature_columns(value)].assign(**{SUBJECT_ID: value[SUBJECT_ID].astype(str)})
    array = np.asarray(value, dtype=float)
    if array.ndim != 2:
        raise ValueError(f"block embedding must be 2-D (subjects, latent), got shape {array.shape}")
    if subject_ids is None or len(subject_ids) != len(array):
        raise ValueError("a block embedding given as an array needs subject_ids of the same length")
    frame = pd.DataFrame(array, columns=[f"z{i}" for i in range(array.shape[1])])
    frame.insert(0, SUBJECT_ID, [str(s) for s in subject_ids])
    return frame
