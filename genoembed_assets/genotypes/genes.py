"""Gene annotation of LD blocks from the shipped gene lists (pure, no Dagster).

The lists in ``data/reference`` are whitespace-separated ``chrom start end
name`` lines (PLINK ``glist`` style). The hg19 list names genes by symbol; the
hg38 list carries Ensembl gene IDs, which are used as they are.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from .. import paths
from .blockmap import normalize_chrom
from .errors import CohortInputError

__all__ = ["annotate_blocks_with_genes", "read_gene_list"]


@functools.lru_cache(maxsize=4)
def _read_gene_list_cached(path: str) -> pd.DataFrame:
    rows = []
    with open(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) < 4:
                raise CohortInputError(path, f"expected 4 fields chrom start end name, got {len(fields)}", where=f"line {line_no}")
            chrom = normalize_chrom(fields[0])
            if chrom is None:
                continue  # Y, MT and unplaced contigs: no blocks there
            try:
                start, end = int(fields[1]), int(fields[2])
            except ValueError:
                raise CohortInputError(path, f"start/end must be integers, got {fields[1]!r}, {fields[2]!r}", where=f"line {line_no}") from None
            rows.append((chrom, start, end, fields[3]))
    frame = pd.DataFrame(rows, columns=["chrom", "start", "end", "name"])
    return frame.sort_values(["chrom", "start", "end"], kind="stable").reset_index(drop=True)


def read_gene_list(build: str) -> pd.DataFrame:
    """Genes of ``build`` as ``chrom, start, end, name`` (chromosomes normalized, sorted)."""
    return _read_gene_list_cached(str(Path(paths.gene_list_path(build)))).copy()


def annotate_blocks_with_genes(blocks: pd.DataFrame, build: str) -> pd.Series:
    """Comma-joined names of the genes overlapping each block.

    Parameters
    ----------
    blocks
        Columns ``block_id, chrom, start, end`` (half-open block spans).
    build
        ``"hg19"`` (gene symbols) or ``"hg38"`` (Ensembl IDs).

    Returns
    -------
    pandas.Series
        Named ``genes``, aligned with ``blocks.index``; genes in order of
        start position, each named once; ``""`` for a block without genes.
    """
    missing = [c for c in ("chrom", "start", "end") if c not in blocks.columns]
    if missing:
        raise ValueError(f"blocks lacks columns {missing}; expected block_id, chrom, start, end")
    genes = _read_gene_list_cached(str(Path(paths.gene_list_path(build))))
    by_chrom = {chrom: frame for chrom, frame in genes.groupby("chrom", sort=False)}
    out = []
    for chrom, start, end in zip(blocks["chrom"], blocks["start"], blocks["end"]):
        frame = by_chrom.get(normalize_chrom(chrom))
        if frame is None:
            out.append("")
            continue
        hit = (frame["start"].to_numpy() < int(end)) & (frame["end"].to_numpy() > int(start))
        names = frame["name"].to_numpy()[hit]
        out.append(",".join(dict.fromkeys(names.tolist())) if np.any(hit) else "")
    return pd.Series(out, index=blocks.index, name="genes", dtype=object)
