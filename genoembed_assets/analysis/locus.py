"""Locus validation: does a named locus (default 17q21) beat matched background blocks?

The locus's blocks are taken from the association table (tested as in
:func:`~genoembed_assets.analysis.association.associate_phenotypes`). Its
statistic is the smallest p-value over its blocks (per phenotype, and over all
phenotypes). The background is ``n_background`` random sets of as many blocks,
drawn from other chromosomes and matched on variant count (``n_snps``
quintile) when the block table has it. Empirical p =
(1 + #sets with min p <= the locus's) / (1 + n_background), seeded.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .features import AnalysisResult
from .regions import blocks_in_regions, resolve_region

__all__ = ["RegionNotInCohort", "validate_locus"]


class RegionNotInCohort(ValueError):
    """The cohort has no tested block in the requested locus: the validation does not apply."""


def _matched_pool(blocks: pd.DataFrame, locus_blocks: list[str], chrom: str, tested: set[str]) -> dict[str, list[str]]:
    """Per locus block, the background blocks it may be swapped for."""
    others = blocks[(blocks["chrom"].astype(str).str.removeprefix("chr") != chrom) & blocks["block_id"].isin(tested)]
    if "n_snps" not in blocks.columns or len(others) < 10:
        pool = others["block_id"].tolist()
        return {b: pool for b in locus_blocks}
    bins = pd.qcut(blocks["n_snps"].rank(method="first"), 5, labels=False)
    bin_of = dict(zip(blocks["block_id"], bins))
    out = {}
    for b in locus_blocks:
        same = others[others["block_id"].map(bin_of) == bin_of[b]]["block_id"].tolist()
        out[b] = same if len(same) >= 5 else others["block_id"].tolist()
    return out


def validate_locus(
    association: pd.DataFrame,
    blocks: pd.DataFrame,
    locus: str = "17q21",
    *,
    build: str = "hg19",
    n_background: int = 1000,
    random_state: int = 0,
) -> AnalysisResult:
    """Compare a locus's strongest association with matched random blocks.

    Parameters
    ----------
    association : DataFrame
        The table of ``associate_phenotypes`` (rows with ``kind == "block"`` are used).
    blocks : DataFrame
        ``block_id, chrom, start, end`` and optionally ``n_snps``.
    locus : str
        Locus name, gene symbol or ``chrom:start-end``.
    n_background : int
        Random background sets drawn.
    random_state : int

    Raises
    ------
    RegionNotInCohort
        No tested block of the cohort overlaps the locus (a cohort without it, not an error).

    Returns
    -------
    AnalysisResult
        ``table``: per phenotype plus an ``"any"`` row: ``phenotype,
        locus_min_p, locus_block (the block reaching it), background_median_min_p,
        empirical_p, n_background``. ``tables["locus_tests"]``: the locus
        blocks' association rows; ``tables["background"]``: per draw and
        phenotype the background min p. ``summary``: ``locus``,
        ``locus_blocks``, ``empirical_p`` (any phenotype), ``best_phenotype``,
        ``locus_min_p``.
    """
    region = resolve_region(locus, build)
    tests = association[association["kind"] == "block"]
    tested = set(tests["feature"])
    locus_blocks = [b for b in blocks_in_regions(blocks, [locus], build) if b in tested]
    if not locus_blocks:
        raise RegionNotInCohort(f"the cohort has no block in {region}")
    pools = _matched_pool(blocks, locus_blocks, region.chrom, tested)
    if any(len(pool) == 0 for pool in pools.values()):
        raise ValueError(f"no background block outside chr{region.chrom} was tested")
    pmat = tests.pivot_table(index="feature", columns="phenotype", values="p", aggfunc="min")
    phenos = list(pmat.columns)
    rng = np.random.default_rng(random_state)
    row_of = {b: i for i, b in enumerate(pmat.index)}
    values = pmat.to_numpy(dtype=float)
    # (draws, locus blocks): one matched background block per locus block and draw
    chosen = np.column_stack([
        np.array([row_of[x] for x in pools[b]])[rng.integers(len(pools[b]), size=n_background)] for b in locus_blocks
    ])
    sub = values[chosen]  # (draws, locus blocks, phenotypes)
    draws = np.empty((n_background, len(phenos) + 1))
    with np.errstate(all="ignore"):
        draws[:, :-1] = np.nanmin(sub, axis=1)
        draws[:, -1] = np.nanmin(sub.reshape(n_background, -1), axis=1)
    loc = pmat.loc[locus_blocks]
    rows = []
    for j, trait in enumerate(phenos + ["any"]):
        values = loc.to_numpy() if trait == "any" else loc[[trait]].to_numpy()
        flat = int(np.nanargmin(values))
        min_p = float(values.flat[flat])
        rows.append(
            {
                "phenotype": trait,
                "locus_min_p": min_p,
                "locus_block": locus_blocks[flat // values.shape[1]],
                "background_median_min_p": float(np.median(draws[:, j])),
                "empirical_p": float((1 + (draws[:, j] <= min_p).sum()) / (1 + n_background)),
                "n_background": n_background,
            }
        )
    table = pd.DataFrame(rows)
    per_trait = table[table["phenotype"] != "any"]
    best = per_trait.loc[per_trait["locus_min_p"].idxmin()]
    overall = table.iloc[-1]
    summary = {
        "locus": str(region),
        "locus_blocks": locus_blocks,
        "empirical_p": float(overall["empirical_p"]),
        "locus_min_p": float(overall["locus_min_p"]),
        "best_phenotype": str(best["phenotype"]),
        "n_background": n_background,
    }
    background = pd.DataFrame(draws, columns=phenos + ["any"])
    locus_tests = tests[tests["feature"].isin(locus_blocks)].reset_index(drop=True)
    return AnalysisResult(table=table, summary=summary, tables={"locus_tests": locus_tests, "background": background})
