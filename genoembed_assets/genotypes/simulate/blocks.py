"""Which LD blocks a simulated cohort holds: locus blocks, background, LD partners (hg19)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ... import paths
from ..blockmap import read_block_map
from .config import WHOLE_MAP

__all__ = ["LOCUS_KEYS", "XMHC_HG19", "ld_partner_blocks", "select_cohort_blocks", "select_demo_blocks"]

LOCUS_KEYS = ("HLA_DRDQ", "HLA_DP", "PDE4D_1", "PDE4D_2", "17q21", "IL33", "TSLP", "IL1RL1")
# The extended MHC (hg19), as in the long-range LD regions of Price et al. 2008.
XMHC_HG19 = ("6", 25_500_000, 33_500_000)


def _read_loci(path) -> pd.DataFrame:
    loci = pd.read_csv(path, sep="\t", dtype={"chrom": str})
    return loci.astype({"start_hg19": np.int64, "end_hg19": np.int64})


def _defaults(block_map: pd.DataFrame | None, loci: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    if block_map is None:
        block_map = read_block_map(paths.block_map_path("hg19"))
    if loci is None:
        loci = _read_loci(paths.reference_dir() / "asthma_loci.tsv")
    return block_map.reset_index(drop=True), loci


def _best_block(block_map: pd.DataFrame, chrom: str, start: int, end: int) -> int:
    """Row index of the block overlapping [start, end) the most."""
    on_chrom = block_map[block_map["chrom"] == chrom]
    overlap = np.minimum(on_chrom["end"], end) - np.maximum(on_chrom["start"], start)
    if not (overlap > 0).any():
        raise ValueError(f"no LD block overlaps chr{chrom}:{start}-{end}")
    return int(overlap.idxmax())


def _locus_rows(block_map: pd.DataFrame, loci: pd.DataFrame) -> dict[str, int]:
    """Locus key -> row of ``block_map`` (reset index)."""
    genes = loci.set_index("gene")

    def gene_block(name: str) -> int:
        g = genes.loc[name]
        return _best_block(block_map, str(g["chrom"]), int(g["start_hg19"]), int(g["end_hg19"]))

    chosen: dict[str, int] = {}
    drdq = {gene_block(g) for g in ("HLA-DRB1", "HLA-DQA1", "HLA-DQB1")}
    if len(drdq) != 1:
        raise ValueError(f"HLA-DRB1/DQA1/DQB1 fall in different blocks {sorted(drdq)}; expected one")
    chosen["HLA_DRDQ"] = drdq.pop()
    chosen["HLA_DP"] = chosen["HLA_DRDQ"] + 1  # the map's next block holds DPA1/DPB1
    if block_map.at[chosen["HLA_DP"], "chrom"] != "6":
        raise ValueError("the block after HLA DR/DQ is not on chromosome 6")
    pde = genes.loc["PDE4D"]
    pde_rows = block_map.index[
        (block_map["chrom"] == str(pde["chrom"]))
        & (block_map["end"] > int(pde["start_hg19"]))
        & (block_map["start"] < int(pde["end_hg19"]))
    ]
    if len(pde_rows) != 2:
        raise ValueError(f"PDE4D overlaps {len(pde_rows)} blocks; expected 2")
    chosen["PDE4D_1"], chosen["PDE4D_2"] = (int(i) for i in pde_rows)
    q21 = {gene_block(g) for g in ("ORMDL3", "GSDMB", "IKZF3")}
    if len(q21) != 1:
        raise ValueError(f"ORMDL3/GSDMB/IKZF3 fall in different blocks {sorted(q21)}; expected one")
    chosen["17q21"] = q21.pop()
    for name in ("IL33", "TSLP", "IL1RL1"):
        chosen[name] = gene_block(name)
    return chosen


def _background_rows(block_map: pd.DataFrame, loci: pd.DataFrame, chosen: dict[str, int], n_background: int) -> list[int]:
    if n_background == WHOLE_MAP:
        # The whole map: every other block, the MHC and locus-gene neighbours included
        # (simulated independently, they are null blocks like any other).
        taken = set(chosen.values())
        return [i for i in range(len(block_map)) if i not in taken]
    # Background: autosomal, not overlapping any locus row (genes and MHC).
    eligible = block_map["chrom"] != "X"
    for _, row in loci.iterrows():
        eligible &= ~(
            (block_map["chrom"] == str(row["chrom"]))
            & (block_map["end"] > int(row["start_hg19"]))
            & (block_map["start"] < int(row["end_hg19"]))
        )
    eligible.loc[list(chosen.values())] = False
    candidates = np.flatnonzero(eligible.to_numpy())
    if not 0 <= n_background <= len(candidates):
        raise ValueError(f"n_background must be in [0, {len(candidates)}] or {WHOLE_MAP} (every block of the map), "
                         f"got {n_background}")
    if not n_background:
        return []
    return [int(i) for i in candidates[np.round(np.linspace(0, len(candidates) - 1, n_background)).astype(int)]]


def _partner_rows(block_map: pd.DataFrame, chosen: dict[str, int], per_side: int) -> list[int]:
    """Up to ``per_side`` blocks left of HLA DR/DQ and right of HLA DP, inside the extended MHC."""
    chrom, start, end = XMHC_HG19
    rows = [chosen["HLA_DRDQ"] - k for k in range(1, per_side + 1)] + [chosen["HLA_DP"] + k for k in range(1, per_side + 1)]
    return sorted(
        i for i in rows
        if 0 <= i < len(block_map) and block_map.at[i, "chrom"] == chrom
        and block_map.at[i, "end"] > start and block_map.at[i, "start"] < end
    )


def select_demo_blocks(
    n_background: int,
    *,
    block_map: pd.DataFrame | None = None,
    loci: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The 8 asthma locus blocks plus evenly spread background blocks (hg19).

    Parameters
    ----------
    n_background : int
        Number of background blocks. They are spread evenly, in genomic order,
        over the autosomal blocks that overlap no locus gene and not the MHC,
        so the choice does not depend on the seed and cohorts share block keys.
        ``-1`` (:data:`~.config.WHOLE_MAP`): every block of the map that is not
        a locus block, the MHC and the locus genes' neighbours included.
    block_map : DataFrame, optional
        Output of :func:`read_block_map`; default the shipped LDetect EUR hg19 map.
    loci : DataFrame, optional
        ``asthma_loci.tsv``; default the shipped file.

    Returns
    -------
    DataFrame
        ``block_id, chrom, start, end, locus`` in genomic order; ``locus`` is one
        of :data:`LOCUS_KEYS` or ``""`` for background blocks.
    """
    out = select_cohort_blocks(n_background, 0, block_map=block_map, loci=loci)
    return out.drop(columns="role")


def ld_partner_blocks(per_side: int = 1, *, block_map: pd.DataFrame | None = None,
                      loci: pd.DataFrame | None = None) -> list[str]:
    """Block ids beside the HLA class II blocks inside the extended MHC (hg19 chr6:25.5-33.5 Mb).

    With the shipped map: ``per_side=1`` gives chr6_b0024 (left of DR/DQ) and
    chr6_b0027 (right of DP); ``per_side=2`` adds chr6_b0023 (the second block
    right of DP starts beyond the extended MHC).
    """
    block_map, loci = _defaults(block_map, loci)
    return block_map.loc[_partner_rows(block_map, _locus_rows(block_map, loci), per_side), "block_id"].tolist()


def select_cohort_blocks(
    n_background: int,
    ld_partners_per_side: int = 0,
    *,
    block_map: pd.DataFrame | None = None,
    loci: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """:func:`select_demo_blocks` plus the LD partner blocks, with a ``role`` column.

    ``role`` is ``"locus"``, ``"background"`` or ``"ld_partner"``; partner
    blocks have ``locus`` ``""``. ``ld_partners_per_side=0`` adds none. With
    ``n_background=-1`` the partner blocks keep their role and every other
    non-locus block of the map is background.
    """
    block_map, loci = _defaults(block_map, loci)
    chosen = _locus_rows(block_map, loci)
    role = {i: "background" for i in _background_rows(block_map, loci, chosen, n_background)}
    if ld_partners_per_side:
        role.update({i: "ld_partner" for i in _partner_rows(block_map, chosen, ld_partners_per_side)})
    role.update({i: "locus" for i in chosen.values()})
    out = block_map.loc[sorted(role), ["block_id", "chrom", "start", "end"]]
    locus_of = {idx: key for key, idx in chosen.items()}
    out = out.assign(locus=[locus_of.get(i, "") for i in out.index], role=[role[i] for i in out.index])
    return out.reset_index(drop=True)
