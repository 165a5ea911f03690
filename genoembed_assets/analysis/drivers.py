"""Which features drive the subject clusters: LD blocks or ancestry?

For every block (PC1 of its Phase 1 embedding) and every genotype PC 1-10 we
report eta squared (share of the feature's variance explained by cluster
membership) and its correlation with the main embedding axis (PC1 of the
subject embedding, usually ancestry). A block that leads with genotype PCs far
behind is structure beyond ancestry.

When the clustering found no discrete clusters (k = 1), there is no membership
to explain: features are then ranked by ``r2_axis1``, their squared
correlation with the first axis of the clustered (ancestry-adjusted) features,
i.e. what drives the continuous structure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .features import (
    SUBJECT_ID,
    AnalysisResult,
    align_subjects,
    ancestry_matrix,
    eta_squared,
    feature_columns,
    pc1_scores,
)

__all__ = ["block_drivers", "rank_by_eta"]


def rank_by_eta(table: pd.DataFrame, column: str = "eta2") -> pd.DataFrame:
    """Sort by ``column`` (descending, NaN last) and add ``rank`` from 1."""
    out = table.sort_values(column, ascending=False, na_position="last", kind="mergesort").reset_index(drop=True)
    out["rank"] = np.arange(1, len(out) + 1)
    return out


def _correlations(values: np.ndarray, axis: np.ndarray) -> np.ndarray:
    centred = values - values.mean(axis=0)
    a = axis - axis.mean()
    denom = np.sqrt((centred**2).sum(axis=0) * (a**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, centred.T @ a / denom, np.nan)


def block_drivers(
    labels: pd.DataFrame,
    block_features: pd.DataFrame,
    pcs: pd.DataFrame,
    embedding: pd.DataFrame,
    n_pcs: int = 10,
    cluster_column: str = "cluster",
) -> AnalysisResult:
    """Eta squared of cluster membership by each block PC1 and each genotype PC.

    Parameters
    ----------
    labels : DataFrame
        ``subject_id`` and ``cluster_column`` (e.g. the table of
        :func:`~genoembed_assets.analysis.clusters.cluster_subjects`).
    block_features : DataFrame
        ``subject_id, <block_id>...`` from
        :func:`~genoembed_assets.analysis.features.block_pc1_features`.
    pcs : DataFrame
        Genotype PCs ``subject_id, PC1..``.
    embedding : DataFrame
        Subject embedding ``subject_id, e0..``; its PC1 is the main axis.
    n_pcs : int
        Genotype PCs compared (default 10).

    Returns
    -------
    AnalysisResult
        ``table``: ``feature, kind (block|genotype_pc), eta2, corr_main_axis,
        rank`` sorted by eta2. ``summary``: ``leading_feature``,
        ``leading_kind``, ``leading_eta2``, ``leading_block``,
        ``leading_block_eta2``, ``top_genotype_pc``, ``top_genotype_pc_eta2``,
        ``block_leads`` (a block ranks first), ``n_subjects``.
    """
    keep = [SUBJECT_ID, cluster_column] + [c for c in ("pc1",) if c in labels.columns]
    labels, block_features, pcs, embedding = align_subjects(labels[keep], block_features, pcs, embedding)
    clusters = labels[cluster_column].to_numpy()
    blocks = feature_columns(block_features)
    pc_values = ancestry_matrix(pcs, n_pcs)
    # the PCs ancestry_matrix chose (regional PCs may be missing from the table)
    named = [f"PC{i}" for i in range(1, n_pcs + 1) if f"PC{i}" in pcs.columns]
    pc_names = named if len(named) == pc_values.shape[1] else [f"PC{i}" for i in range(1, pc_values.shape[1] + 1)]
    values = np.column_stack([block_features[blocks].to_numpy(dtype=float), pc_values])
    main_axis = pc1_scores(embedding[feature_columns(embedding)].to_numpy(dtype=float))
    table = pd.DataFrame(
        {
            "feature": blocks + pc_names,
            "kind": ["block"] * len(blocks) + ["genotype_pc"] * len(pc_names),
            "eta2": eta_squared(values, clusters),
            "corr_main_axis": _correlations(values, main_axis),
        }
    )
    discrete = len(np.unique(clusters)) > 1
    if "pc1" in labels.columns or not discrete:
        axis = labels["pc1"].to_numpy(dtype=float) if "pc1" in labels.columns else main_axis
        table["r2_axis1"] = _correlations(values, axis) ** 2
    if not discrete:
        table["eta2"] = np.nan
    table = rank_by_eta(table, "eta2" if discrete else "r2_axis1")
    lead = table.iloc[0]
    block_rows = table[table["kind"] == "block"]
    pc_rows = table[table["kind"] == "genotype_pc"]
    score = "eta2" if discrete else "r2_axis1"
    summary = {
        "explains": "cluster membership" if discrete else "continuous axis 1 (no discrete clusters)",
        "leading_feature": str(lead["feature"]),
        "leading_kind": str(lead["kind"]),
        "leading_eta2": float(lead[score]),
        "leading_block": str(block_rows.iloc[0]["feature"]) if len(block_rows) else None,
        "leading_block_eta2": float(block_rows.iloc[0][score]) if len(block_rows) else float("nan"),
        "top_genotype_pc": str(pc_rows.iloc[0]["feature"]) if len(pc_rows) else None,
        "top_genotype_pc_eta2": float(pc_rows.iloc[0][score]) if len(pc_rows) else float("nan"),
        "block_leads": bool(lead["kind"] == "block"),
        "n_subjects": int(len(clusters)),
    }
    return AnalysisResult(table=table, summary=summary)
