"""The cohort's ``pcs.eigenvec``: from an unlinked panel, from its own genotypes, or none.

* ``"panel"`` (the demo): PCs of an unlinked panel drawn per SNP from the
  blocks' haplotype pools (like genome-wide LD-pruned SNPs), so they are
  ancestry, not the haplotype axes of single blocks.
* ``"own"``: PCs computed the naive way from the written genotypes, every
  block including the planted ones, no LD pruning (like ``plink --pca`` on
  everything): they can absorb the planted strata, as real PCs can.
* ``"none"``: nothing is written and genoembed computes the PCs itself.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .haplotypes import Block
from .pca import genotype_pcs

__all__ = ["EIGENVEC", "N_PCS", "cohort_eigenvec"]

N_PCS = 10
EIGENVEC = "pcs.eigenvec"  # the name layout.write_cohort gives it


def cohort_eigenvec(source: str, subject_ids: Sequence[str], blocks: Sequence[Block]) -> pd.DataFrame | None:
    """``subject_id, PC1..PC10`` (eigenvectors rounded to 8 decimals), or None for ``"none"``."""
    if source == "none":
        return None
    if source == "panel":
        pcs = genotype_pcs([blk.panel for blk in blocks], N_PCS)
    elif source == "own":
        pcs = genotype_pcs([blk.genotypes for blk in blocks], N_PCS)
    else:
        raise ValueError(f"eigenvec source must be one of ['panel', 'own', 'none'], got {source!r}")
    eigenvec = pd.DataFrame(np.round(pcs, 8), columns=[f"PC{i + 1}" for i in range(pcs.shape[1])])
    eigenvec.insert(0, "subject_id", subject_ids)
    return eigenvec
