"""PC1 of each block's Phase 1 embedding: the per-block feature every analysis reads (pure, no Dagster).

Blocks are read one at a time from a block source (see ``block_source.py``),
so only one block's latent matrix is in memory besides the growing feature
table (one float per subject and block).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from .block_source import BlockSource, as_block_source, rows_of
from .features import SUBJECT_ID, align_subjects, ancestry_matrix, pc1_scores, residualize, standardize

__all__ = ["block_pc1_features"]


@threadpool_limits.wrap(limits=1)  # many small SVDs: threads only contend
def block_pc1_features(
    block_embeddings: Mapping[str, np.ndarray | pd.DataFrame] | BlockSource,
    subject_ids: Sequence[str] | None = None,
    covariates: pd.DataFrame | None = None,
    n_pcs: int = 10,
) -> pd.DataFrame:
    """PC1 of each block's Phase 1 embedding, one column per block.

    Parameters
    ----------
    block_embeddings : block source, or mapping of block_id to array or DataFrame
        Per block a (subjects, latent) matrix. A source (e.g. a
        ``BlockEmbeddingStore``) is streamed one block at a time; a mapping
        holds DataFrames ``subject_id, z0..`` or arrays whose rows follow
        ``subject_ids``.
    subject_ids : sequence of str, optional
        Row order of array values of a mapping (required when any is an array).
    covariates : DataFrame, optional
        Genotype PCs (``subject_id, PC1..``). When given, each block's latent
        matrix is first residualised on the first ``n_pcs`` PCs, so PC1 is the
        block's main axis *within* ancestry; without it PC1 of a block is often
        just the ancestry gradient every block shares.
    n_pcs : int
        Number of genotype PCs used from ``covariates``.

    Returns
    -------
    DataFrame
        ``subject_id`` then one column per block (in the source's order):
        sign-fixed PC1 scores scaled to unit variance (a block with no variance
        gives a column of zeros). Rows: subjects present in every input, in
        the source's row order.
    """
    source = as_block_source(block_embeddings, subject_ids)
    ids = pd.Series(np.asarray(source.subject_ids).astype(str))
    cov = None
    if covariates is not None:
        (cov_frame,) = align_subjects(covariates)
        cov_frame = cov_frame.set_index(SUBJECT_ID)
        ids = ids[ids.isin(set(cov_frame.index))]
        cov = ancestry_matrix(cov_frame.loc[ids.to_numpy()].reset_index(), n_pcs)
    if len(ids) == 0:
        raise ValueError("the block embeddings (and covariates) share no subject_id")
    order = ids.to_numpy()
    rows = rows_of(source, order)
    out = {SUBJECT_ID: order}
    for block, matrix in source.iter_blocks():
        values = np.asarray(matrix[rows], dtype=float)  # fancy indexing: a copy, the block itself is not kept
        out[block] = standardize(pc1_scores(residualize(values, cov))[:, None])[:, 0]
    if len(out) == 1:
        raise ValueError("no block embeddings given")
    return pd.DataFrame(out)
