"""Which blocks engine ``hap`` phases together (pure: no Dagster).

The LD blocks are the Phase 1 model's units, not the phasing's. Phased block by
block, a haplotype near a block's edge is copied with context on one side only:
on the chr20 panels (13 blocks, most of them cut from two long LD blocks), the
hidden calls within 50 markers of an inner block edge scored 0.9841 against
0.9901 more than 400 markers in, where Beagle, which phases the chromosome
whole, scored 0.9882 and 0.9897. The copying model's windows already tile any
number of markers at a cost linear in them, so blocks that touch on one
chromosome are phased as one segment, up to ``max_genotypes`` subjects x
markers (memory); a longer run is cut at block edges into segments that each
read ``flank`` markers of their neighbours as context. On chr20 the edge calls
then scored 0.9889 and the whole panel 0.9907 (from 0.9901; Beagle 0.9903),
once the junction passes kept the missing calls' guesses with their phase
(``_haplotype_copying._swap_missing``; without that, one long segment lost
0.0004 instead). A genoembed simulation draws each block from its own genealogy,
so its touching blocks share nothing across their edge; ``imputation`` phases
its blocks one by one (``join=False``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["SEGMENT_GENOTYPES", "HapSegment", "hap_segments"]

#: Subjects x markers phased at once. Phasing holds about 70 bytes per genotype (haplotypes,
#: observed alleles, probabilities of both haplotypes, the averaged GP), so about 1.1 GB at
#: this size: chr20's 503 x 24,990 panels are one segment.
SEGMENT_GENOTYPES = 16_000_000


@dataclass(frozen=True)
class HapSegment:
    """Blocks phased together, with the context read on either side.

    Attributes
    ----------
    first, stop
        The blocks (manifest order) whose calls this segment fills: ``first`` to ``stop - 1``.
    lo_block, hi_block
        The blocks loaded for it: the core and the flanks' blocks.
    lo, hi
        The markers phased, as a slice of the loaded blocks' columns side by side.
    cores
        Per core block, its (start, stop) columns in the phased markers.
    """

    first: int
    stop: int
    lo_block: int
    hi_block: int
    lo: int
    hi: int
    cores: tuple[tuple[int, int], ...]


def _joins(before: pd.DataFrame, after: pd.DataFrame, span_before, span_after) -> bool:
    """Whether block ``after`` continues ``before``: one chromosome, touching spans, positions not going back."""
    if not len(before) or not len(after) or span_before[1] < span_after[0]:
        return False
    chroms = set(before["chrom"].astype(str)) | set(after["chrom"].astype(str))
    return len(chroms) == 1 and int(after["pos"].iloc[0]) >= int(before["pos"].iloc[-1])


def hap_segments(sites: Sequence[pd.DataFrame], spans: Sequence[tuple[int, int]], n_subjects: int, *,
                 flank: int, max_genotypes: int = SEGMENT_GENOTYPES, join: bool = True) -> list[HapSegment]:
    """Cut the blocks (their site tables and manifest spans, in manifest order) into segments phased at once.

    Consecutive blocks join while each starts where the one before ends (the
    manifest's ``start`` and ``end``) on one chromosome; blocks with a gap
    between them (the separate regions of a targeted panel, say) stay apart. A run of
    joined blocks longer than ``max_genotypes // n_subjects`` markers is cut at
    block edges (a single longer block stays whole), and each piece reads up
    to ``flank`` markers of the run on either side as context. ``join=False``:
    every block on its own, no context.
    """
    sizes = [len(s) for s in sites]
    runs: list[list[int]] = []
    for i in range(len(sites)):
        if join and runs and _joins(sites[i - 1], sites[i], spans[i - 1], spans[i]):
            runs[-1].append(i)
        else:
            runs.append([i])
    max_markers = max(max_genotypes // max(n_subjects, 1), 1)
    segments = []
    for run in runs:
        offsets = np.concatenate([[0], np.cumsum([sizes[i] for i in run])]).astype(int)
        a = 0
        while a < len(run):
            b = a + 1
            while b < len(run) and offsets[b + 1] - offsets[a] <= max_markers:
                b += 1
            lo, hi = max(offsets[a] - flank, 0), min(offsets[b] + flank, offsets[-1])
            lo_block = min(int(np.searchsorted(offsets, lo, side="right")) - 1, a)
            hi_block = max(int(np.searchsorted(offsets, hi, side="left")), b)
            base = offsets[lo_block]
            segments.append(HapSegment(
                first=run[a], stop=run[b - 1] + 1, lo_block=run[lo_block], hi_block=run[hi_block - 1] + 1,
                lo=int(lo - base), hi=int(hi - base),
                cores=tuple((int(offsets[j] - lo), int(offsets[j + 1] - lo)) for j in range(a, b))))
            a = b
    return segments
