"""Genomic regions named by a user: coordinates, locus names or gene names.

A region is resolved against the shipped reference tables
(``data/reference/asthma_loci.tsv`` and the gene lists ``glist-<build>.txt``)
and then matched to LD blocks by overlap of their coordinates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .. import paths
from ..genotypes.blockmap import normalize_chrom

__all__ = [
    "MHC_HG19",
    "Region",
    "block_genes",
    "blocks_in_regions",
    "read_gene_list",
    "read_loci",
    "resolve_region",
    "short_gene_label",
]

#: The MHC as defined by the GRC (hg19), the default region left out.
MHC_HG19 = "chr6:28,477,797-33,448,354"

_COORD_RE = re.compile(r"^(?:chr)?([0-9]{1,2}|X|x)\s*:\s*([0-9,]+)\s*-\s*([0-9,]+)$")


@dataclass(frozen=True)
class Region:
    """A closed genomic interval with the name it was asked for by."""

    name: str
    chrom: str
    start: int
    end: int

    def __str__(self) -> str:
        span = f"chr{self.chrom}:{self.start:,}-{self.end:,}"
        return span if _COORD_RE.match(self.name) else f"{self.name} ({span})"


@lru_cache(maxsize=4)
def read_loci(path: str | None = None) -> pd.DataFrame:
    """The named asthma loci table (locus, gene, role, chrom, start/end per build)."""
    frame = pd.read_csv(path or paths.reference_dir() / "asthma_loci.tsv", sep="\t", dtype={"chrom": str})
    frame["chrom"] = frame["chrom"].map(normalize_chrom)
    return frame


@lru_cache(maxsize=4)
def read_gene_list(build: str = "hg19", path: str | None = None) -> pd.DataFrame:
    """A gene list (``chrom start end gene``, whitespace separated) as a DataFrame."""
    source = Path(path) if path else paths.gene_list_path(build)
    frame = pd.read_csv(source, sep=r"\s+", header=None, names=["chrom", "start", "end", "gene"], dtype={"chrom": str})
    frame["chrom"] = frame["chrom"].map(normalize_chrom)
    return frame.dropna(subset=["chrom"]).reset_index(drop=True)


def resolve_region(spec: str, build: str = "hg19") -> Region:
    """Turn ``chrom:start-end``, a locus name or a gene name into a :class:`Region`.

    Order of lookup: coordinates (``chr6:28,477,797-33,448,354``), a locus name
    from ``asthma_loci.tsv`` (``MHC``, ``17q21``, ``PDE4D``; all rows of a locus
    are merged into one span), then a gene symbol from the build's gene list
    (case-insensitive). Raises ``ValueError`` naming what was tried.
    """
    text = str(spec).strip()
    match = _COORD_RE.match(text)
    if match:
        chrom = normalize_chrom(match.group(1))
        start, end = (int(g.replace(",", "")) for g in match.group(2, 3))
        if end < start:
            raise ValueError(f"region {spec!r}: end {end} is before start {start}")
        return Region(text, chrom, start, end)
    if build not in ("hg19", "hg38"):
        raise ValueError(f"unknown genome build {build!r}: expected 'hg19' or 'hg38'")
    loci = read_loci()
    rows = loci[loci["locus"].str.upper() == text.upper()]
    if rows.empty:
        rows = loci[loci["gene"].str.upper() == text.upper()]
    if not rows.empty:
        if rows["chrom"].nunique() > 1:
            raise ValueError(f"locus {spec!r} spans several chromosomes")
        return Region(text, rows["chrom"].iloc[0], int(rows[f"start_{build}"].min()), int(rows[f"end_{build}"].max()))
    genes = read_gene_list(build)
    rows = genes[genes["gene"].str.upper() == text.upper()]
    if rows.empty:
        raise ValueError(
            f"region {spec!r} is neither chrom:start-end coordinates, a locus in asthma_loci.tsv "
            f"({', '.join(sorted(loci['locus'].unique()))}) nor a gene in the {build} gene list"
        )
    rows = rows[rows["chrom"] == rows["chrom"].iloc[0]]
    return Region(text, rows["chrom"].iloc[0], int(rows["start"].min()), int(rows["end"].max()))


def blocks_in_regions(blocks: pd.DataFrame, regions: str | Sequence[str], build: str = "hg19") -> list[str]:
    """IDs of the blocks (``block_id, chrom, start, end``) overlapping any region."""
    specs = [regions] if isinstance(regions, str) else list(regions)
    chroms = blocks["chrom"].map(normalize_chrom).to_numpy()
    starts, ends = blocks["start"].to_numpy(), blocks["end"].to_numpy()
    hit = np.zeros(len(blocks), dtype=bool)
    for spec in specs:
        region = resolve_region(spec, build)
        # block coordinates are half-open [start, end), regions closed
        hit |= (chroms == region.chrom) & (starts <= region.end) & (ends > region.start)
    return blocks.loc[hit, "block_id"].astype(str).tolist()


def short_gene_label(genes: Sequence[str] | str, max_genes: int = 4) -> str:
    """Up to ``max_genes`` names for a figure label, genes named in ``asthma_loci.tsv`` first.

    ``genes`` is a list or a comma-separated string (as Phase 2's importance table
    stores it); the rest are counted as ``+k``. A block of the MHC class II region
    thus reads ``HLA-DRA, HLA-DRB1, ... +70`` instead of its first genes by position.
    """
    names = [g.strip() for g in (genes.split(",") if isinstance(genes, str) else genes) if g and g.strip()]
    names = list(dict.fromkeys(names))
    known = set(read_loci()["gene"].astype(str))
    ordered = [g for g in names if g in known] + [g for g in names if g not in known]
    shown = ordered[:max_genes]
    more = len(ordered) - len(shown)
    return ", ".join(shown) + (f" +{more}" if more > 0 else "")


def block_genes(blocks: pd.DataFrame, build: str = "hg19", max_genes: int = 4) -> dict[str, str]:
    """Block ID -> a short label of the genes it overlaps (see :func:`short_gene_label`)."""
    genes = read_gene_list(build)
    out = {}
    by_chrom = {c: g for c, g in genes.groupby("chrom")}
    for row in blocks.itertuples(index=False):
        g = by_chrom.get(normalize_chrom(row.chrom))
        if g is None:
            out[str(row.block_id)] = ""
            continue
        inside = g[(g["start"] < row.end) & (g["end"] > row.start)]["gene"]
        out[str(row.block_id)] = short_gene_label(inside.tolist(), max_genes)
    return out
