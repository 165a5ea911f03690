"""A cohort's ancestry covariates: its ``.eigenvec`` or PCs computed the field's way, then diagnosed.

:func:`load_or_compute_pcs` returns the PCs (given or computed, see
:mod:`.pcs`); :func:`ancestry_covariates` adds the per-PC diagnosis of
:mod:`.pc_diagnosis` and the subset of PCs that the analyses adjust for:
every genome-wide PC; PCs carried by one region or by a few blocks are left out
unless the user keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from .layout import find_eigenvec, read_eigenvec
from .pc_diagnosis import block_local_axes, diagnose_pcs, local_axes
from .pcs import cohort_pcs
from .sources import open_source

__all__ = ["AncestryCovariates", "ancestry_covariates", "load_or_compute_pcs"]


def load_or_compute_pcs(
    folder: str | Path,
    *,
    n_pcs: int = 10,
    seed: int = 0,
    maf_min: float = 0.01,
    max_variants: int = 20_000,
    max_variants_per_block: int = 2000,
    ld_r2: float = 0.2,
    exclude_high_ld: bool = True,
    on_block: Callable[[pd.Series, np.ndarray], None] | None = None,
) -> pd.DataFrame:
    """Ancestry PCs of a cohort: its ``.eigenvec`` if it has one, else computed.

    Parameters
    ----------
    folder
        A cohort folder in any format, typically the ingested ``input/`` folder.
    n_pcs, seed, maf_min, max_variants, ld_r2, exclude_high_ld
        Passed to :func:`.pcs.cohort_pcs` when computing; a given eigenvec
        keeps its first ``n_pcs`` columns.
    on_block
        Called with ``(block row, genotypes)`` for each block streamed while computing
        (not called when an eigenvec is given: no genotypes are read then).

    Returns
    -------
    pandas.DataFrame
        ``subject_id, PC1..PCk`` in the cohort's subject order (k <= n_pcs);
        ``attrs['source']`` is ``'eigenvec'`` or ``'computed'``;
        ``attrs['report']`` the computation's counts (computed PCs only).
    """
    folder = Path(folder)
    src = open_source(folder, max_variants_per_block)
    ids = list(src.subjects["subject_id"])
    eig_path = find_eigenvec(folder)
    if eig_path is not None:
        pcs = read_eigenvec(eig_path, ids)
        pcs = pcs[["subject_id"] + [c for c in pcs.columns if c != "subject_id"][:n_pcs]]
        pcs.attrs["source"] = "eigenvec"
        pcs.attrs["path"] = str(eig_path)
        return pcs
    blocks = src.iter_blocks(mmap=True)
    if on_block is not None:
        blocks = _tap(blocks, on_block)
    pcs, report = cohort_pcs(blocks, ids, build=src.build, n_pcs=n_pcs, seed=seed, maf_min=maf_min,
                             max_variants=max_variants, ld_r2=ld_r2, exclude_high_ld=exclude_high_ld)
    pcs.attrs["source"] = "computed"
    pcs.attrs["report"] = report
    return pcs


def _tap(blocks, on_block):
    for row, g, var in blocks:
        on_block(row, g)
        yield row, g, var


@dataclass
class AncestryCovariates:
    """PCs, their diagnosis and the ones the analyses adjust for.

    ``all_pcs``: every PC; ``pcs``: ``subject_id`` + the PCs used for
    adjustment; ``diagnosis``: :func:`.pc_diagnosis.diagnose_pcs` plus a
    ``used`` column; ``dropped``: PCs left out, with why.
    """

    all_pcs: pd.DataFrame
    pcs: pd.DataFrame
    diagnosis: pd.DataFrame
    source: str
    dropped: list[dict] = field(default_factory=list)
    report: dict = field(default_factory=dict)


def ancestry_covariates(
    folder: str | Path,
    *,
    n_pcs: int = 10,
    seed: int = 0,
    ld_r2: float = 0.2,
    exclude_high_ld: bool = True,
    drop_regional: bool = True,
    keep: Sequence[str] = (),
    max_variants_per_block: int = 2000,
) -> AncestryCovariates:
    """PCs (given or computed), diagnosed; those that are not genome-wide (regional or carried by a few
    blocks) are dropped unless ``drop_regional=False`` or named in ``keep``; at least one PC stays."""
    folder = Path(folder)
    local: list = []  # local axes recorded while computed PCs stream the blocks: the genotypes are read once
    pcs = load_or_compute_pcs(folder, n_pcs=n_pcs, seed=seed, ld_r2=ld_r2, exclude_high_ld=exclude_high_ld,
                              max_variants_per_block=max_variants_per_block,
                              on_block=lambda row, g: local.append((row, local_axes(np.asarray(g)))))
    src = open_source(folder, max_variants_per_block)
    if pcs.attrs.get("source") == "eigenvec":  # nothing was streamed
        local = block_local_axes(src.iter_blocks(mmap=True))
    diagnosis = diagnose_pcs(pcs, local=local, build=src.build)
    keep = {str(k) for k in keep}
    names = [c for c in pcs.columns if c != "subject_id"]
    unknown = keep - set(names)
    if unknown:
        raise ValueError(f"keep names PCs the table does not have: {sorted(unknown)}; it has {names}")
    not_ancestry = set(diagnosis.loc[~diagnosis["genome_wide"].astype(bool), "pc"]) if len(diagnosis) else set()
    left_out = not_ancestry - keep if drop_regional else set()
    if left_out and left_out >= set(names):
        # adjust for something: the PC the genome explains most broadly
        broadest = diagnosis.sort_values(["region_share", "top_blocks_share"]).iloc[0]["pc"]
        left_out = left_out - {broadest}
    if len(diagnosis):
        diagnosis["used"] = ~diagnosis["pc"].isin(left_out)
    used = [c for c in names if c not in left_out]
    dropped = [{"pc": r["pc"], "why": _why(r), "region_r2": round(float(r["region_r2"]), 3),
                "top_blocks_share": round(float(r["top_blocks_share"]), 3)}
               for _, r in diagnosis.iterrows() if r["pc"] in left_out]
    table = pcs[["subject_id", *used]].copy()
    return AncestryCovariates(pcs, table, diagnosis, pcs.attrs.get("source", "unknown"), dropped, pcs.attrs.get("report", {}))


def _why(row) -> str:
    """Why a PC is not an ancestry axis, in words (the diagnosis rule of :mod:`.pc_diagnosis`)."""
    if row["regional"]:
        return f"carried by {row['region']} (R2 {row['region_r2']:.2f} there, {row['region_share']:.0%} of the genome's)"
    blocks = str(row["top_blocks"]).split(",")
    return f"carried by a few blocks ({', '.join(blocks[:3])}: {row['top_blocks_share']:.0%} of the genome's R2)"
