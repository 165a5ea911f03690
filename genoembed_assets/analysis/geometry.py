"""Phase 1 vs Phase 2 geometry, and how much of each embedding axis is ancestry.

* Distance agreement: on a seeded subsample of subjects, Euclidean pairwise
  distances in the Phase 1 space (all blocks' latent means side by side) and in
  the Phase 2 subject embedding; Pearson and Spearman correlation of the two.
* Confounding: correlation of each embedding axis with each genotype PC, and
  the R^2 of each axis on PCs 1-10 jointly.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits
from scipy import stats
from scipy.spatial.distance import pdist

from .block_source import BlockSource, as_block_source, rows_of
from .features import SUBJECT_ID, AnalysisResult, align_subjects, ancestry_matrix, feature_columns, residualize

__all__ = ["embedding_geometry"]


@threadpool_limits.wrap(limits=1)  # small matrices: BLAS threads only contend on shared cores
def embedding_geometry(
    block_embeddings: Mapping[str, np.ndarray | pd.DataFrame] | BlockSource,
    embedding: pd.DataFrame,
    pcs: pd.DataFrame,
    *,
    subject_ids: Sequence[str] | None = None,
    n_sample: int = 500,
    n_pcs: int = 10,
    max_pairs_kept: int = 5000,
    random_state: int = 0,
) -> AnalysisResult:
    """Distance correlation of Phase 1 vs Phase 2, and embedding axes vs genotype PCs.

    Parameters
    ----------
    block_embeddings : block source, or mapping of block_id to array or DataFrame
        Phase 1 latent means (a mapping's arrays follow ``subject_ids``). A
        source is streamed: only the sampled subjects' rows of each block are kept.
    embedding : DataFrame
        Phase 2 ``subject_id, e0..``.
    pcs : DataFrame
        Genotype PCs ``subject_id, PC1..``.
    n_sample : int
        Subjects in the distance subsample (distances are quadratic).
    max_pairs_kept : int
        Pairs of distances kept in ``tables["distances"]`` for the figure.
    random_state : int

    Returns
    -------
    AnalysisResult
        ``table``: ``axis, pc, corr`` (every axis x PC). ``tables["axis_r2"]``:
        ``axis, r2_pcs``. ``tables["distances"]``: ``phase1, phase2`` pairs.
        ``summary``: ``distance_pearson``, ``distance_spearman``, ``n_sample``,
        ``max_abs_corr``, ``max_corr_axis``, ``max_corr_pc``, ``mean_r2_pcs``,
        ``max_r2_pcs``.
    """
    embedding, pcs = align_subjects(embedding, pcs)
    axes = feature_columns(embedding)
    e = embedding[axes].to_numpy(dtype=float)
    anc = ancestry_matrix(pcs, n_pcs)
    pc_names = [f"PC{i}" for i in range(1, anc.shape[1] + 1)]
    ec, ac = e - e.mean(axis=0), anc - anc.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (ec.T @ ac) / np.outer(np.sqrt((ec**2).sum(axis=0)), np.sqrt((ac**2).sum(axis=0)))
        r2 = 1 - (residualize(e, anc) ** 2).sum(axis=0) / (ec**2).sum(axis=0)
    table = pd.DataFrame({"axis": np.repeat(axes, len(pc_names)), "pc": np.tile(pc_names, len(axes)), "corr": corr.ravel()})
    axis_r2 = pd.DataFrame({"axis": axes, "r2_pcs": r2})

    # Phase 1 space on a subsample only: hundreds of blocks x all subjects would not fit
    rng = np.random.default_rng(random_state)
    ids = embedding[SUBJECT_ID].to_numpy()
    source = as_block_source(block_embeddings, subject_ids)
    in_blocks = set(np.asarray(source.subject_ids).astype(str))
    common = [s for s in ids if s in in_blocks]
    if len(common) < 3:
        raise ValueError("fewer than 3 subjects shared by the block embeddings and the subject embedding")
    sample = rng.choice(np.array(common), size=min(n_sample, len(common)), replace=False)
    rows = rows_of(source, sample)
    phase1 = np.column_stack([np.asarray(matrix[rows], dtype=float) for _, matrix in source.iter_blocks()])
    phase2 = embedding.set_index(SUBJECT_ID).loc[sample, axes].to_numpy(dtype=float)
    d1, d2 = pdist(phase1), pdist(phase2)
    keep = rng.choice(len(d1), size=min(max_pairs_kept, len(d1)), replace=False)
    distances = pd.DataFrame({"phase1": d1[keep], "phase2": d2[keep]})
    abs_corr = np.abs(corr)
    i, j = np.unravel_index(np.nanargmax(abs_corr), abs_corr.shape)
    summary = {
        "distance_pearson": float(stats.pearsonr(d1, d2)[0]),
        "distance_spearman": float(stats.spearmanr(d1, d2)[0]),
        "n_sample": int(len(sample)),
        "max_abs_corr": float(abs_corr[i, j]),
        "max_corr_axis": str(axes[i]),
        "max_corr_pc": pc_names[j],
        "mean_r2_pcs": float(np.nanmean(r2)),
        "max_r2_pcs": float(np.nanmax(r2)),
    }
    return AnalysisResult(table=table, summary=summary, tables={"axis_r2": axis_r2, "distances": distances})
