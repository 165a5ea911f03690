"""Block assignment of PLINK/pgen/VCF sites: LD block map -> (sub-)blocks.

``assign_sites`` maps each usable site to its block of the build's LD block
map (splitting blocks with too many variants into contiguous sub-blocks, see
:func:`.blockmap.assign_blocks`) and counts what it skips by policy:
multiallelic and ALT-less records, contigs that map to no modelled chromosome
(per contig name), and variants outside every block. When nothing is left it
raises a :class:`CohortInputError` naming the file and the first record.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .blockmap import assign_blocks, chrom_sort_key, normalize_chrom
from .errors import CohortInputError

__all__ = ["assign_sites", "block_table"]


def assign_sites(sites: pd.DataFrame, block_map: pd.DataFrame, max_variants: int, path: Path, unit: str = "line"):
    """Map sites to blocks; return (variants in genomic order, blocks, skipped counts).

    ``unit`` says what ``sites['line']`` counts ('line' or, for BCF, 'record').
    """
    skipped: dict = {}
    for status in ("multiallelic", "no_alt"):
        n_status = int((sites["status"] == status).sum())
        if n_status:
            skipped[status] = n_status
    ok = sites["status"].to_numpy() == "ok"
    raw = sites["chrom"].astype(str)
    mapping = {c: normalize_chrom(c) for c in raw.unique()}
    chrom = raw.map(mapping)
    unknown = ok & chrom.isna().to_numpy()
    if unknown.any():
        skipped["unknown_contig"] = {str(k): int(v) for k, v in raw[unknown].value_counts().items()}
    usable = ok & ~unknown
    if not usable.any():
        first = sites.iloc[int(np.flatnonzero(ok)[0])] if ok.any() else sites.iloc[0] if len(sites) else None
        if first is None:
            raise CohortInputError(path, "no variant records found")
        if not ok.any():
            raise CohortInputError(path, f"no usable variant: all {len(sites)} records skipped {skipped}",
                                   where=f"{unit} {first['line']}")
        raise CohortInputError(path, f"no variant on a chromosome we can map: contig {first['chrom']!r} "
                               "(expected 1-22 or X, with or without 'chr'; PLINK codes 23/25 for X)",
                               where=f"{unit} {first['line']} (variant {first['id'] or first['pos']})")
    idx = np.flatnonzero(usable)
    c = chrom.to_numpy()[idx].astype(str)
    pos = sites["pos"].to_numpy()[idx]
    order = np.lexsort((pos, np.array([chrom_sort_key(x) for x in c])))
    idx, c, pos = idx[order], c[order], pos[order]
    ids = assign_blocks(c, pos, block_map, max_variants=max_variants)
    inside = ids != ""
    if (~inside).any():
        skipped["outside_blocks"] = int((~inside).sum())
    if not inside.any():
        unmapped = sorted(set(c) - set(block_map["chrom"]), key=chrom_sort_key)
        why = (f": the map has no block on chromosome {', '.join(unmapped)}; the pipeline models the map's blocks "
               "only (`genoembed impute` takes any chromosome)" if unmapped else " (is the genome build right?)")
        raise CohortInputError(path, f"none of the {len(idx)} usable variants falls inside a block of the LD block "
                               f"map{why}", where=f"{unit} {sites['line'].iloc[idx[0]]}")
    sel = idx[inside]
    variants = pd.DataFrame({
        "block_id": ids[inside].astype(str), "chrom": c[inside], "pos": pos[inside],
        "id": sites["id"].to_numpy()[sel], "ref": sites["ref"].to_numpy()[sel],
        "alt": sites["alt"].to_numpy()[sel], "source_index": sel,
    })
    variants["_col"] = variants.groupby("block_id", sort=False).cumcount()
    return variants, block_table(variants, block_map), skipped


def block_table(variants: pd.DataFrame, block_map: pd.DataFrame) -> pd.DataFrame:
    """One row per (sub-)block; sub-blocks tile their parent block contiguously."""
    spans = block_map.set_index("block_id")
    rows = []
    grouped = list(variants.groupby("block_id", sort=False))
    for i, (b, v) in enumerate(grouped):
        parent, _, sub = b.partition("_s")
        start, end = int(spans.at[parent, "start"]), int(spans.at[parent, "end"])
        if sub:
            if sub != "1":
                start = int(v["pos"].iloc[0])
            nxt = grouped[i + 1] if i + 1 < len(grouped) else None
            if nxt is not None and nxt[0].partition("_s")[0] == parent:
                end = int(nxt[1]["pos"].iloc[0])
        rows.append((b, v["chrom"].iloc[0], start, end, len(v)))
    return pd.DataFrame(rows, columns=["block_id", "chrom", "start", "end", "n_snps"])
