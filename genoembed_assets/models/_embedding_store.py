"""Streaming access to Phase 1 block embeddings (pure, no Dagster).

Phase 2 needs, for a mini-batch of subjects, every block's embedding at once.
Holding subjects x blocks x k in memory does not scale (UK Biobank: 500k x
1,700 blocks), so each block's ``embedding.npy`` is memory-mapped and only the
rows of the current batch are read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from ..genotypes.blockmap import CHROMOSOMES, normalize_chrom
from ..genotypes.errors import CohortInputError

__all__ = ["BlockEmbeddingStore", "InMemoryEmbeddingStore", "synthetic_block_embeddings"]

_META_COLUMNS = ("block_id", "chrom", "start", "end")


def _resolve_embedding_path(path: str | os.PathLike) -> Path:
    """A Phase 1 block folder or an ``.npy`` file -> the ``.npy`` file."""
    path = Path(path)
    return path / "embedding.npy" if path.is_dir() or path.suffix != ".npy" else path


class BlockEmbeddingStore:
    """Memory-mapped Phase 1 embeddings of one cohort, one file per block.

    Parameters
    ----------
    paths
        One entry per block, in ``block_meta`` order: a Phase 1 block folder
        (holding ``embedding.npy``) or the ``.npy`` file itself.
    block_meta
        Columns ``block_id, chrom, start, end`` (extra columns are kept).
    subject_ids
        Subject IDs in the row order of every file. When None they are read
        from ``embedding.parquet`` beside the first block's file, else
        ``s0, s1, ...``.

    Raises
    ------
    CohortInputError
        Naming the block when its file is missing, unreadable, not a 2-D
        float array, or has a different number of rows than the others.

    Notes
    -----
    Blocks may have different latent sizes ``k``; batches are padded to
    ``k_max`` with zeros and ``dims`` gives each block's true size.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        block_meta: pd.DataFrame,
        subject_ids: Sequence[str] | None = None,
    ):
        meta = _check_meta(block_meta)
        if len(paths) != len(meta):
            raise ValueError(f"got {len(paths)} embedding paths for {len(meta)} blocks in block_meta")
        self.block_meta = meta
        self.paths = [_resolve_embedding_path(p) for p in paths]
        expected = None if subject_ids is None else len(subject_ids)
        self._arrays: list[np.ndarray] = []
        for block, path in zip(meta["block_id"], self.paths):
            array = _open_block(block, path)
            if expected is None:
                expected = array.shape[0]
            elif array.shape[0] != expected:
                raise CohortInputError(
                    path,
                    f"has {array.shape[0]} rows, expected {expected} (one per subject, subjects.tsv order)",
                    where=f"block {block}",
                )
            self._arrays.append(array)
        self.n_subjects = int(expected)
        self.subject_ids = self._subject_ids(subject_ids)
        self.dims = np.array([a.shape[1] for a in self._arrays], dtype=np.int64)

    @classmethod
    def from_phase1_dir(
        cls,
        phase1_dir: str | os.PathLike,
        block_meta: pd.DataFrame,
        subject_ids: Sequence[str] | None = None,
    ) -> "BlockEmbeddingStore":
        """Open ``<phase1_dir>/<block_id>/embedding.npy`` for every block of ``block_meta``."""
        phase1_dir = Path(phase1_dir)
        paths = [phase1_dir / str(b) / "embedding.npy" for b in block_meta["block_id"]]
        return cls(paths, block_meta, subject_ids)

    def _subject_ids(self, subject_ids: Sequence[str] | None) -> np.ndarray:
        if subject_ids is not None:
            return np.asarray([str(s) for s in subject_ids], dtype=object)
        parquet = self.paths[0].with_suffix(".parquet")
        if parquet.exists():
            ids = pd.read_parquet(parquet, columns=["subject_id"])["subject_id"].astype(str)
            if len(ids) == self.n_subjects:
                return ids.to_numpy(dtype=object)
        return np.asarray([f"s{i}" for i in range(self.n_subjects)], dtype=object)

    # ------------------------------------------------------------------ access
    @property
    def n_blocks(self) -> int:
        return len(self._arrays)

    @property
    def k_max(self) -> int:
        return int(self.dims.max())

    @property
    def block_ids(self) -> list[str]:
        return self.block_meta["block_id"].tolist()

    def chrom_index(self) -> np.ndarray:
        """Integer chromosome code per block (``CHROMOSOMES`` order; unknown -> len)."""
        codes = []
        for chrom in self.block_meta["chrom"]:
            norm = normalize_chrom(chrom)
            codes.append(CHROMOSOMES.index(norm) if norm is not None else len(CHROMOSOMES))
        return np.asarray(codes, dtype=np.int64)

    def position_mb(self) -> np.ndarray:
        """Block midpoint in megabases, for the sinusoidal position encoding."""
        return ((self.block_meta["start"].to_numpy(float) + self.block_meta["end"].to_numpy(float)) / 2e6).astype(np.float32)

    def get(self, index: Sequence[int] | np.ndarray) -> np.ndarray:
        """Rows ``index`` of every block as float32 ``(len(index), n_blocks, k_max)``."""
        index = np.asarray(index, dtype=np.int64)
        # Reading sorted rows keeps memory-mapped access sequential; restore order after.
        order = np.argsort(index, kind="stable")
        sorted_index = index[order]
        out = np.zeros((index.size, self.n_blocks, self.k_max), dtype=np.float32)
        for b, array in enumerate(self._arrays):
            out[order, b, : array.shape[1]] = array[sorted_index]
        return out

    def iter_blocks(self) -> Iterator[tuple[str, np.ndarray]]:
        """Yield ``(block_id, embedding)`` one block at a time, in ``block_meta`` order.

        Each embedding is the block's memory-mapped ``(n_subjects, k)`` array
        (rows in ``subject_ids`` order, true ``k``, no padding): analyses that
        need whole blocks read one at a time instead of every block at once.
        """
        for block, array in zip(self.block_ids, self._arrays):
            yield block, array

    def iter_batches(self, index: Sequence[int] | np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(subject_index, batch)`` pairs over ``index`` in chunks of ``batch_size``."""
        index = np.asarray(index, dtype=np.int64)
        for start in range(0, index.size, batch_size):
            chunk = index[start : start + batch_size]
            yield chunk, self.get(chunk)

    def block_stats(self, index: Sequence[int] | np.ndarray | None = None, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """Per block and dimension mean and standard deviation over ``index`` (all subjects if None).

        Streams the subjects (float64 sums) and names a block holding
        non-finite values.
        """
        index = np.arange(self.n_subjects) if index is None else np.sort(np.asarray(index, dtype=np.int64))
        total = np.zeros((self.n_blocks, self.k_max))
        total_sq = np.zeros((self.n_blocks, self.k_max))
        for _, batch in self.iter_batches(index, batch_size):
            if not np.isfinite(batch).all():
                bad = int(np.flatnonzero(~np.isfinite(batch).all(axis=(0, 2)))[0])
                raise CohortInputError(self.paths[bad], "holds NaN or infinite values", where=f"block {self.block_ids[bad]}")
            batch = batch.astype(np.float64)
            total += batch.sum(axis=0)
            total_sq += (batch**2).sum(axis=0)
        mean = total / max(index.size, 1)
        var = np.maximum(total_sq / max(index.size, 1) - mean**2, 0.0)
        return mean, np.sqrt(var)


class InMemoryEmbeddingStore(BlockEmbeddingStore):
    """The same interface over one materialized ``(subjects, blocks, k)`` array.

    Used by tests and as the benchmark's peer (everything held in memory).
    """

    def __init__(self, data: np.ndarray, block_meta: pd.DataFrame, subject_ids: Sequence[str] | None = None):
        data = np.asarray(data, dtype=np.float32)
        meta = _check_meta(block_meta)
        if data.ndim != 3 or data.shape[1] != len(meta):
            raise ValueError(f"data must be (subjects, {len(meta)} blocks, k), got shape {data.shape}")
        self.block_meta = meta
        self.paths = [Path(f"<memory:{b}>") for b in meta["block_id"]]
        self._data = data
        self._arrays = [data[:, b, :] for b in range(data.shape[1])]
        self.n_subjects = data.shape[0]
        self.subject_ids = (
            np.asarray([f"s{i}" for i in range(self.n_subjects)], dtype=object)
            if subject_ids is None
            else np.asarray([str(s) for s in subject_ids], dtype=object)
        )
        self.dims = np.full(data.shape[1], data.shape[2], dtype=np.int64)

    def get(self, index: Sequence[int] | np.ndarray) -> np.ndarray:
        return self._data[np.asarray(index, dtype=np.int64)]


def _check_meta(block_meta: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in _META_COLUMNS if c not in block_meta.columns]
    if missing:
        raise ValueError(f"block_meta lacks columns {missing}; expected {list(_META_COLUMNS)}")
    if block_meta["block_id"].duplicated().any():
        dup = block_meta.loc[block_meta["block_id"].duplicated(), "block_id"].iloc[0]
        raise ValueError(f"block_meta lists block {dup!r} twice")
    meta = block_meta.reset_index(drop=True).copy()
    meta["block_id"] = meta["block_id"].astype(str)
    meta["chrom"] = meta["chrom"].astype(str)
    return meta


def _open_block(block: str, path: Path) -> np.ndarray:
    if not path.exists():
        raise CohortInputError(path, "Phase 1 embedding file is missing (was the block trained?)", where=f"block {block}")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # any read failure: truncated header, not an .npy, permissions
        raise CohortInputError(path, f"cannot read Phase 1 embedding ({type(exc).__name__}: {exc})", where=f"block {block}") from None
    if array.ndim != 2 or array.shape[1] < 1 or not np.issubdtype(array.dtype, np.floating):
        raise CohortInputError(
            path,
            f"expected a float (subjects, k) array, got dtype {array.dtype} shape {array.shape}",
            where=f"block {block}",
        )
    return array


def synthetic_block_embeddings(
    n_subjects: int = 600,
    n_blocks: int = 30,
    k: int = 4,
    *,
    strong_blocks: Sequence[int] = (3, 4, 17),
    weak_blocks: Sequence[int] = (),
    strong_effect: float = 1.5,
    weak_effect: float = 0.5,
    ancestry_effect: float = 0.7,
    n_strata: int = 3,
    seed: int = 0,
) -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
    """Phase-1-like block embeddings with planted cross-block structure (for tests and benchmarks).

    Every block carries a shared continuous "ancestry" factor (2-D) plus noise;
    ``strong_blocks`` and ``weak_blocks`` also carry a hidden ``n_strata``-level
    subject stratum, with per-block random stratum means scaled by
    ``strong_effect`` / ``weak_effect``.

    Returns
    -------
    data
        float32 ``(n_subjects, n_blocks, k)``.
    block_meta
        ``block_id, chrom, start, end`` (blocks spread over chromosomes 1-22).
    stratum
        int ``(n_subjects,)`` hidden stratum labels.
    """
    rng = np.random.default_rng(seed)
    # Ancestry as in the demo: three population centroids and admixed mixtures of them.
    centroids = np.array([[1.5, 0.0], [-0.75, 1.3], [-0.75, -1.3]])
    mixture = rng.dirichlet(np.full(3, 0.3), size=n_subjects)
    ancestry = mixture @ centroids + 0.2 * rng.normal(size=(n_subjects, 2))
    stratum = rng.integers(0, n_strata, size=n_subjects)
    data = rng.normal(size=(n_subjects, n_blocks, k))
    loadings = rng.normal(size=(n_blocks, 2, k)) * ancestry_effect / np.sqrt(2)
    data += np.einsum("na,bak->nbk", ancestry, loadings)
    for blocks, effect in ((strong_blocks, strong_effect), (weak_blocks, weak_effect)):
        for b in blocks:
            means = rng.normal(size=(n_strata, k))
            means /= np.linalg.norm(means, axis=1, keepdims=True)
            data[:, b, :] += effect * means[stratum]
    chrom = [str(1 + (b * 22) // n_blocks) for b in range(n_blocks)]
    start = [1_000_000 + 3_000_000 * b for b in range(n_blocks)]
    meta = pd.DataFrame({
        "block_id": [f"chr{c}_b{b:04d}" for b, c in enumerate(chrom)],
        "chrom": chrom,
        "start": start,
        "end": [s + 1_500_000 for s in start],
    })
    return data.astype(np.float32), meta, stratum
