"""Phase 1 block embeddings, one block at a time (pure, no Dagster).

A genome-wide cohort has ~1,700 blocks; at 500k subjects all blocks' latent
means together do not fit in memory. The analyses that read whole blocks
(block features, joint association tests, geometry) therefore take a *block
source*: anything with ``subject_ids`` (row order of every block), ``block_ids``
and ``iter_blocks()`` yielding ``(block_id, (n_subjects, k) array)`` one block
at a time. :class:`~genoembed_assets.models.BlockEmbeddingStore` (memory-mapped
``embedding.npy`` files) is one; :func:`as_block_source` wraps the in-memory
mapping ``{block_id: DataFrame or array}`` the analyses used to take, so small
cohorts, notebooks and tests keep working unchanged.
"""

from __future__ import annotations

from typing import Iterator, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
import pandas as pd

from .features import SUBJECT_ID, block_matrix

__all__ = ["BlockSource", "MappingBlockSource", "as_block_source", "rows_of"]


@runtime_checkable
class BlockSource(Protocol):
    """What the streaming analyses read: one block's ``(n_subjects, k)`` matrix at a time."""

    subject_ids: Sequence[str]

    @property
    def block_ids(self) -> list[str]: ...

    def iter_blocks(self) -> Iterator[tuple[str, np.ndarray]]: ...


class MappingBlockSource:
    """A block source over an in-memory mapping ``{block_id: DataFrame or array}``.

    Rows are the subjects present in every block, in the first block's order
    (what the mapping-based analyses did); array values follow ``subject_ids``.
    """

    def __init__(self, blocks: Mapping[str, np.ndarray | pd.DataFrame], subject_ids: Sequence[str] | None = None):
        if not blocks:
            raise ValueError("no block embeddings given")
        self._frames = {str(b): block_matrix(v, subject_ids).set_index(SUBJECT_ID) for b, v in blocks.items()}
        ids = None
        for frame in self._frames.values():
            ids = frame.index if ids is None else ids[ids.isin(frame.index)]
        self.subject_ids = np.asarray(ids, dtype=object)

    @property
    def block_ids(self) -> list[str]:
        return list(self._frames)

    def iter_blocks(self) -> Iterator[tuple[str, np.ndarray]]:
        for block, frame in self._frames.items():
            yield block, frame.loc[self.subject_ids].to_numpy(dtype=float)


def as_block_source(blocks, subject_ids: Sequence[str] | None = None) -> BlockSource:
    """``blocks`` as a :class:`BlockSource`: a source is returned as it is, a mapping is wrapped."""
    if isinstance(blocks, Mapping):
        return MappingBlockSource(blocks, subject_ids)
    if isinstance(blocks, BlockSource):
        return blocks
    raise TypeError(f"expected a mapping of block_id to embedding or a block source with iter_blocks(), got {type(blocks).__name__}")


def rows_of(source: BlockSource, wanted: Sequence[str]) -> np.ndarray:
    """Row positions in ``source`` of the subject IDs ``wanted`` (all must be present)."""
    position = pd.Index(np.asarray(source.subject_ids).astype(str))
    rows = position.get_indexer(pd.Index(np.asarray(wanted).astype(str)))
    if (rows < 0).any():
        raise ValueError(f"subject {np.asarray(wanted)[rows < 0][0]!r} has no row in the block embeddings")
    return rows
