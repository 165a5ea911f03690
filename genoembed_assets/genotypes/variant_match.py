"""Match a new cohort's variants to a reference cohort's block variants (pure, no Dagster).

Projection encodes a new cohort with the reference's frozen block models, so
every reference block needs a genotype matrix with the reference's variants,
in the reference's order, coded as the reference codes them (ALT dosage).
Variants are matched by chromosome (``chr`` prefix ignored), position and
alleles; for each reference variant the first rule that applies wins:

``exact``
    same REF and ALT: taken as is.
``swapped``
    REF and ALT exchanged: recoded ``2 - g`` (missing stays -1).
``strand_flipped`` / ``strand_flipped_swapped``
    the alleles are the complement (A<->T, C<->G) of the reference's, as
    given or exchanged: taken as is / recoded ``2 - g``. Only for SNPs whose
    alleles are single bases.
``ambiguous_dropped``
    an A/T or C/G SNP whose alleles are exchanged: a swap and a strand flip
    look the same, so the variant is left missing. Ambiguous SNPs are kept
    only when their alleles match exactly as given (counted as ``exact``, and
    also in ``n_ambiguous_kept``).
``allele_mismatch``
    a variant at the position with other alleles (e.g. another ALT): missing.
``absent``
    the new cohort has nothing at the position: missing.

Missing entries are -1, which the masked block models already handle.

Cohorts in the original ``.npy`` layout carry no positions unless a
``variants.parquet`` came with them. When neither side has positions for a
block, its variants are matched by order within the same block id
(``by_order``), and only when the variant counts agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from .blockmap import normalize_chrom
from .errors import CohortInputError

__all__ = ["STATUSES", "VariantMatch", "gather_block", "match_variants"]

_COMPLEMENT = str.maketrans("ACGT", "TGCA")
_BASES = set("ACGT")
# Priority of each way a candidate at the same position can match (lower wins).
STATUSES = ("exact", "swapped", "strand_flipped", "strand_flipped_swapped", "by_order",
            "ambiguous_dropped", "allele_mismatch", "absent")
_RECODED = {"swapped", "strand_flipped_swapped"}
_USED = {"exact", "swapped", "strand_flipped", "strand_flipped_swapped", "by_order"}


@dataclass(frozen=True)
class VariantMatch:
    """Where each reference variant comes from in the new cohort.

    Attributes
    ----------
    reference
        The reference variants (``block_id, chrom, pos, ref, alt``), reset index.
    source
        int64 per reference variant: row of the new cohort's variant table, -1 when not used.
    status
        One of :data:`STATUSES` per reference variant.
    ambiguous
        bool per reference variant: an A/T or C/G SNP.
    """

    reference: pd.DataFrame
    source: np.ndarray
    status: np.ndarray
    ambiguous: np.ndarray

    @property
    def used(self) -> np.ndarray:
        return np.isin(self.status, list(_USED))

    @property
    def recode(self) -> np.ndarray:
        """bool per reference variant: genotypes are recoded ``2 - g``."""
        return np.isin(self.status, list(_RECODED))

    def counts(self, block_id: str | None = None) -> dict[str, int | float]:
        """Counts per status, ``n_reference``, ``n_matched``, ``matched_fraction`` and ``n_ambiguous_kept``."""
        rows = slice(None) if block_id is None else (self.reference["block_id"] == block_id).to_numpy()
        status, used, ambiguous = self.status[rows], self.used[rows], self.ambiguous[rows]
        out: dict[str, int | float] = {s: int((status == s).sum()) for s in STATUSES}
        n = int(status.size)
        out.update(n_reference=n, n_matched=int(used.sum()), matched_fraction=float(used.mean()) if n else 0.0,
                   n_ambiguous_kept=int((ambiguous & used).sum()))
        return out

    def block_table(self) -> pd.DataFrame:
        """One row per reference block: its counts (reference block order)."""
        blocks = pd.unique(self.reference["block_id"])
        return pd.DataFrame([{"block_id": b, **self.counts(b)} for b in blocks])


def _alleles(series: pd.Series) -> pd.Series:
    return series.fillna("").astype(str).str.upper()


def _prepare(table: pd.DataFrame, what: str) -> pd.DataFrame:
    missing = [c for c in ("block_id", "chrom", "pos", "ref", "alt") if c not in table.columns]
    if missing:
        raise ValueError(f"{what} variant table lacks columns {missing}")
    out = table[["block_id", "chrom", "pos", "ref", "alt"]].reset_index(drop=True).copy()
    out["block_id"] = out["block_id"].astype(str)
    out["chrom"] = [normalize_chrom(c) or str(c) for c in out["chrom"].astype(str)]
    out["pos"] = pd.array(out["pos"], dtype="Int64")
    out["ref"], out["alt"] = _alleles(out["ref"]), _alleles(out["alt"])
    return out


def _is_snp(ref: pd.Series, alt: pd.Series) -> np.ndarray:
    return ((ref.str.len() == 1) & (alt.str.len() == 1) & ref.isin(_BASES) & alt.isin(_BASES)).to_numpy()


def match_variants(reference: pd.DataFrame, target: pd.DataFrame) -> VariantMatch:
    """Match every reference variant to the new cohort's variants (see the module docstring).

    Parameters
    ----------
    reference, target
        Variant tables with ``block_id, chrom, pos, ref, alt`` (as in an
        ingested cohort's ``variants.parquet``); ``target`` rows are what
        :attr:`VariantMatch.source` indexes.

    Raises
    ------
    ValueError
        When a table lacks a column.
    """
    ref, tgt = _prepare(reference, "reference"), _prepare(target, "new cohort's")
    n = len(ref)
    ambiguous = _is_snp(ref["ref"], ref["alt"]) & (
        ref["ref"].str.cat(ref["alt"]).isin(["AT", "TA", "CG", "GC"])).to_numpy()
    source = np.full(n, -1, dtype=np.int64)
    status = np.full(n, "absent", dtype=object)

    ref_pos, tgt_pos = ref["pos"].notna().to_numpy(), tgt["pos"].notna().to_numpy()
    pairs = ref[ref_pos].reset_index().merge(tgt[tgt_pos].reset_index(), on=["chrom", "pos"], suffixes=("_r", "_t"))
    if len(pairs):
        same = ((pairs["ref_r"] == pairs["ref_t"]) & (pairs["alt_r"] == pairs["alt_t"])).to_numpy()
        swap = ((pairs["ref_r"] == pairs["alt_t"]) & (pairs["alt_r"] == pairs["ref_t"])).to_numpy()
        snp = _is_snp(pairs["ref_r"], pairs["alt_r"]) & _is_snp(pairs["ref_t"], pairs["alt_t"])
        comp_ref = pairs["ref_t"].str.translate(_COMPLEMENT)
        comp_alt = pairs["alt_t"].str.translate(_COMPLEMENT)
        flip = snp & ((pairs["ref_r"] == comp_ref) & (pairs["alt_r"] == comp_alt)).to_numpy()
        flip_swap = snp & ((pairs["ref_r"] == comp_alt) & (pairs["alt_r"] == comp_ref)).to_numpy()
        amb = ambiguous[pairs["index_r"].to_numpy()]
        # An ambiguous SNP's complement equals its swap: only an exact match is trusted.
        kind = np.select(
            [same, swap & amb, swap, flip & ~amb, flip_swap & ~amb],
            ["exact", "ambiguous_dropped", "swapped", "strand_flipped", "strand_flipped_swapped"],
            default="allele_mismatch",
        )
        pairs = pairs.assign(kind=kind, rank=[STATUSES.index(k) for k in kind])
        best = pairs.sort_values(["index_r", "rank", "index_t"]).drop_duplicates("index_r")
        rows = best["index_r"].to_numpy()
        status[rows] = best["kind"].to_numpy()
        use = np.isin(best["kind"].to_numpy(), list(_USED))
        source[rows[use]] = best["index_t"].to_numpy()[use]

    _match_by_order(ref, tgt, ref_pos, tgt_pos, source, status)
    return VariantMatch(reference=ref, source=source, status=status, ambiguous=ambiguous)


def _match_by_order(ref, tgt, ref_pos, tgt_pos, source, status) -> None:
    """Blocks where neither side has positions: same block id and variant count -> by order."""
    unplaced = ref.index[~ref_pos]
    if not len(unplaced):
        return
    tgt_blocks = dict(tgt[~tgt_pos].groupby("block_id").groups)
    for block, idx in ref.loc[unplaced].groupby("block_id").groups.items():
        target_rows = tgt_blocks.get(block)
        if target_rows is not None and len(target_rows) == len(idx):
            source[np.asarray(idx)] = np.asarray(target_rows)
            status[np.asarray(idx)] = "by_order"


def gather_block(
    match: VariantMatch,
    block_id: str,
    target_columns: pd.DataFrame,
    load: Callable[[str], np.ndarray],
    n_subjects: int,
) -> np.ndarray:
    """The new cohort's int8 genotypes for one reference block, in the reference's variant order.

    Parameters
    ----------
    match
        From :func:`match_variants`.
    block_id
        A reference block.
    target_columns
        Per row of the new cohort's variant table: ``block_id`` (its block in
        the new cohort) and ``column`` (its column in that block's matrix).
    load
        Block id of the new cohort -> its (subjects, variants) int8 matrix.
    n_subjects
        Rows of the new cohort.

    Returns
    -------
    numpy.ndarray
        int8 (n_subjects, reference variants of the block); unmatched
        variants -1, swapped ones recoded ``2 - g``.
    """
    rows = np.flatnonzero((match.reference["block_id"] == block_id).to_numpy())
    if not rows.size:
        raise ValueError(f"block {block_id!r} has no variant in the reference")
    out = np.full((n_subjects, rows.size), -1, dtype=np.int8)
    src = match.source[rows]
    recode = match.recode[rows]
    used = np.flatnonzero(src >= 0)
    blocks = target_columns["block_id"].astype(str).to_numpy()[src[used]]
    columns = target_columns["column"].to_numpy()[src[used]]
    for tblock in pd.unique(blocks):
        genotypes = load(tblock)
        here = blocks == tblock
        if columns[here].max() >= genotypes.shape[1]:
            raise CohortInputError("variants.parquet", f"lists column {int(columns[here].max())} but the block "
                                   f"has {genotypes.shape[1]} variants", where=f"block {tblock}")
        out[:, used[here]] = genotypes[:, columns[here]]
    flip = used[recode[used]]
    if flip.size:
        block = out[:, flip]
        out[:, flip] = np.where(block >= 0, 2 - block, block)
    return out
