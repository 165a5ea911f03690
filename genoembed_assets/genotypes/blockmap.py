"""LD block maps: reading BED files and assigning variants to blocks.

Block identifiers are stable across cohorts that use the same map, so cohorts
share one key space of block partitions: ``chr{chrom}_b{index:04d}`` where
``index`` counts the map's blocks on that chromosome from 0 in genomic order.
Blocks holding more variants than allowed are split into contiguous sub-blocks
``chr{chrom}_b{index:04d}_s{k}`` (k from 1).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import CohortInputError

__all__ = [
    "CHROMOSOMES",
    "assign_blocks",
    "block_id",
    "chrom_sort_key",
    "normalize_chrom",
    "read_block_map",
    "with_gaps",
]

CHROMOSOMES = [str(i) for i in range(1, 23)] + ["X"]
_PLINK_CODES = {"23": "X", "25": "X"}  # PLINK numeric codes for X and its PAR
_CHROM_RE = re.compile(r"^(?:chr)?([0-9]{1,2}|X|x)$")


def normalize_chrom(name: object) -> str | None:
    """``'chr6'``, ``'6'``, ``6`` -> ``'6'``; ``'chrX'``/``'23'`` -> ``'X'``; else None."""
    text = str(name).strip()
    match = _CHROM_RE.match(text)
    if not match:
        return None
    value = match.group(1).upper().lstrip("0") or "0"
    value = _PLINK_CODES.get(value, value)
    return value if value in CHROMOSOMES else None


def chrom_sort_key(chrom: str) -> int:
    return CHROMOSOMES.index(chrom)


#: End of the gap after a chromosome's last block: VCF's largest position (2^31 - 1), exclusive.
_CHROM_END = 2**31


def block_id(chrom: str, index: int, sub: int | None = None) -> str:
    base = f"chr{chrom}_b{index:04d}"
    return base if sub is None else f"{base}_s{sub}"


def read_block_map(path: str | Path) -> pd.DataFrame:
    """Read an LD block BED file (LDetect or LDblocks_GRCh38 style).

    Returns columns ``block_id, chrom, start, end`` (half-open, the file's
    build), sorted in genomic order. Tolerates spaces around tabs and a header.
    """
    path = Path(path)
    rows = []
    with open(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            fields = re.split(r"[ \t]+", line.strip())
            if not fields or not fields[0] or fields[0].startswith("#"):
                continue
            if line_no == 1 and len(fields) > 1 and not fields[1].isdigit():
                continue  # header line such as "chr start end"
            if len(fields) < 3:
                raise CohortInputError(path, f"expected 3 columns chrom/start/end, got {len(fields)}", where=f"line {line_no}")
            chrom = normalize_chrom(fields[0])
            if chrom is None:
                continue  # maps may carry contigs we do not model
            try:
                start, end = int(fields[1]), int(fields[2])
            except ValueError:
                raise CohortInputError(path, f"start/end must be integers, got {fields[1]!r}, {fields[2]!r}", where=f"line {line_no}") from None
            if end <= start:
                raise CohortInputError(path, f"block end {end} <= start {start}", where=f"line {line_no}")
            rows.append((chrom, start, end))
    if not rows:
        raise CohortInputError(path, "no LD blocks found (expected BED lines: chrom start end)")
    frame = pd.DataFrame(rows, columns=["chrom", "start", "end"])
    frame["_order"] = frame["chrom"].map(chrom_sort_key)
    frame = frame.sort_values(["_order", "start"]).drop(columns="_order").reset_index(drop=True)
    frame["index"] = frame.groupby("chrom").cumcount()
    frame.insert(0, "block_id", [block_id(c, i) for c, i in zip(frame["chrom"], frame["index"])])
    return frame.drop(columns="index")


def assign_blocks(
    chroms: np.ndarray,
    positions: np.ndarray,
    block_map: pd.DataFrame,
    max_variants: int = 2000,
) -> np.ndarray:
    """Assign each variant to a block id ('' when it falls outside every block).

    ``chroms`` must already be normalised (see :func:`normalize_chrom`) and
    variants sorted by position within a chromosome. Blocks with more than
    ``max_variants`` variants are split into contiguous sub-blocks of near-equal
    size, each at most ``max_variants``.
    """
    if max_variants < 1:
        raise ValueError(f"max_variants must be >= 1, got {max_variants}")
    chroms = np.asarray(chroms, dtype=object)
    positions = np.asarray(positions, dtype=np.int64)
    out = np.full(len(positions), "", dtype=object)
    for chrom, blocks in block_map.groupby("chrom", sort=False):
        sel = np.flatnonzero(chroms == chrom)
        if sel.size == 0:
            continue
        pos = positions[sel]
        starts = blocks["start"].to_numpy()
        ends = blocks["end"].to_numpy()
        # half-open [start, end): the block whose start is the last <= pos
        idx = np.searchsorted(starts, pos, side="right") - 1
        inside = (idx >= 0) & (pos < ends[np.clip(idx, 0, None)])
        ids = blocks["block_id"].to_numpy()
        for b in np.unique(idx[inside]):
            members = sel[inside & (idx == b)]
            n = members.size
            if n <= max_variants:
                out[members] = ids[b]
                continue
            n_sub = int(np.ceil(n / max_variants))
            for k, part in enumerate(np.array_split(members, n_sub), start=1):
                out[part] = f"{ids[b]}_s{k}"
    return out


def with_gaps(block_map: pd.DataFrame) -> pd.DataFrame:
    """``block_map`` plus a gap block for every stretch of every chromosome that no block covers.

    LD block maps leave stretches out (before a chromosome's first block, between
    blocks, after its last) and some chromosomes entirely (none of the maps in
    ``data/reference`` has X). The pipeline models LD blocks only, so it skips variants there; an
    imputation must return every variant it was given, so ``genoembed impute``
    assigns them to these gaps. A gap's id is ``chr{chrom}_g{index:04d}``, where
    ``index`` is that of the map block after it (the number of the chromosome's
    blocks for the last gap; ``g0000`` spans a chromosome the map lacks), so the
    map's own block ids are unchanged. Gaps touch their neighbours (a gap's
    ``start`` is the previous block's ``end``), so a chromosome's blocks and gaps
    tile it from 0 to 2^31.
    """
    rows = []
    for chrom in CHROMOSOMES:
        blocks = block_map[block_map["chrom"] == chrom].sort_values("start")
        edge = 0
        for index, (start, end) in enumerate(zip(blocks["start"], blocks["end"])):
            if start > edge:
                rows.append((f"chr{chrom}_g{index:04d}", chrom, edge, int(start)))
            edge = max(edge, int(end))
        if edge < _CHROM_END:
            rows.append((f"chr{chrom}_g{len(blocks):04d}", chrom, edge, _CHROM_END))
    gaps = pd.DataFrame(rows, columns=["block_id", "chrom", "start", "end"])
    frame = pd.concat([block_map, gaps], ignore_index=True)
    frame["_order"] = frame["chrom"].map(chrom_sort_key)
    return frame.sort_values(["_order", "start"]).drop(columns="_order").reset_index(drop=True)
