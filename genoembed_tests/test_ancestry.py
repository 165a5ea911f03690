"""Ancestry covariates: LD pruning, long-range LD exclusion, and the regional-PC diagnosis."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genoembed_assets.genotypes.pc_diagnosis import diagnose_pcs
from genoembed_assets.genotypes.pcs import cohort_pcs, genotype_pcs, ld_prune, read_high_ld_regions


def _haplotype_block(rng, n, m, groups, freq=None):
    """Genotypes (n x m) whose variants follow a few haplotype groups (strong LD) per subject."""
    haps = rng.random((groups, m)) < (freq if freq is not None else 0.5)
    a, b = rng.integers(0, groups, n), rng.integers(0, groups, n)
    return (haps[a].astype(np.int8) + haps[b].astype(np.int8)), a


def test_high_ld_regions_ship_for_both_builds():
    hg19, hg38 = read_high_ld_regions("hg19"), read_high_ld_regions("hg38")
    assert set(hg19["region"]) == set(hg38["region"]) and len(set(hg19["region"])) == 18
    # the 8p23 inversion is among them
    assert "chr8:8000000-12000000" in set(hg19["region"])
    mhc = hg19[hg19["region"] == "chr6:25500000-33500000"].iloc[0]
    assert (mhc["chrom"], mhc["start"], mhc["end"]) == ("6", 25392020, 33392022)
    # hg38 liftOver fragments on other chromosomes are dropped
    own = hg38["region"].str.split(":").str[0].str.removeprefix("chr")
    assert (hg38["chrom"] == own).all()
    with pytest.raises(ValueError, match="hg17"):
        read_high_ld_regions("hg17")


def test_ld_prune_keeps_one_variant_per_haplotype_tag():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 3, size=(300, 5)).astype(np.int8)
    g = np.repeat(base, 4, axis=1)  # 5 independent variants, each copied 4 times
    g[rng.random(g.shape) < 0.01] = -1  # missing calls do not break the r2
    kept = ld_prune(g, r2_max=0.2)
    assert len(kept) == 5 and sorted(set(kept // 4)) == [0, 1, 2, 3, 4]


def test_computed_pcs_exclude_the_extended_mhc_and_ignore_its_structure():
    rng = np.random.default_rng(1)
    n = 400
    pop = rng.integers(0, 2, n)
    # genome-wide ancestry: 6 unlinked blocks with allele frequencies shifted by population
    blocks = []
    for i in range(6):
        p = rng.uniform(0.1, 0.9, size=(2, 40))
        g = rng.binomial(2, p[pop]).astype(np.int8)
        blocks.append((pd.Series({"block_id": f"chr{i + 1}_b", "chrom": str(i + 1), "start": 1_000_000, "end": 2_000_000}), g,
                       pd.DataFrame({"pos": np.linspace(1_000_000, 1_999_000, 40).astype(int)})))
    # an MHC block with strong haplotype structure that ancestry does not explain
    mhc, group = _haplotype_block(rng, n, 200, 3)
    blocks.append((pd.Series({"block_id": "chr6_mhc", "chrom": "6", "start": 32_000_000, "end": 33_000_000}), mhc,
                   pd.DataFrame({"pos": np.linspace(32_000_000, 32_999_000, 200).astype(int)})))
    ids = [f"s{i}" for i in range(n)]
    pcs, report = cohort_pcs(iter(blocks), ids, n_pcs=4, build="hg19")
    assert report["n_excluded_high_ld"] == 200 and report["n_used"] <= 240
    naive = genotype_pcs((g for _, g, _ in blocks), ids, n_pcs=4)

    def eta(values, labels):
        return max(np.var([values[labels == k].mean() for k in np.unique(labels)]) / values.var() for _ in [0])

    # the MHC haplotype groups take over a naive PC, never a computed one
    assert max(eta(naive[c].to_numpy(), group) for c in ["PC1", "PC2", "PC3"]) > 0.5
    assert max(eta(pcs[c].to_numpy(), group) for c in ["PC1", "PC2", "PC3", "PC4"]) < 0.05
    assert abs(np.corrcoef(pcs["PC1"], pop)[0, 1]) > 0.9


def test_diagnosis_flags_a_pc_carried_by_one_region_and_keeps_ancestry():
    rng = np.random.default_rng(2)
    n = 500
    pop = rng.integers(0, 2, n)
    rows = []
    for i in range(8):
        p = rng.uniform(0.1, 0.9, size=(2, 30))
        rows.append((pd.Series({"block_id": f"chr{i + 1}_b", "chrom": str(i + 1), "start": 5_000_000, "end": 6_000_000}),
                     rng.binomial(2, p[pop]).astype(np.int8), None))
    mhc, group = _haplotype_block(rng, n, 60, 2)
    rows.append((pd.Series({"block_id": "chr6_mhc", "chrom": "6", "start": 32_000_000, "end": 33_000_000}), mhc, None))
    ancestry = pop - pop.mean() + rng.normal(0, 0.3, n)
    local = (mhc - mhc.mean(axis=0)) @ rng.normal(size=60)
    # a trailing PC of a naive eigenvec: a mix of a few blocks' own haplotype axes
    few = sum(np.linalg.svd(g - g.mean(axis=0), full_matrices=False)[0][:, 1] for _, g, _ in rows[5:8])
    pcs = pd.DataFrame({"subject_id": [f"s{i}" for i in range(n)], "PC1": ancestry, "PC2": local + rng.normal(0, 0.5 * local.std(), n),
                        "PC3": few + rng.normal(0, 0.3 * few.std(), n)})
    table = diagnose_pcs(pcs, iter(rows), build="hg19").set_index("pc")
    assert not table.loc["PC1", "regional"] and table.loc["PC1", "region_share"] < 0.3
    assert table.loc["PC1", "genome_wide"] and not table.loc["PC1", "concentrated"]
    assert table.loc["PC3", "concentrated"] and not table.loc["PC3", "regional"] and not table.loc["PC3", "genome_wide"]
    assert set(table.loc["PC3", "top_blocks"].split(",")) == {"chr6_b", "chr7_b", "chr8_b"}
    assert table.loc["PC2", "regional"]
    assert table.loc["PC2", "region"] == "long-range LD region chr6:25500000-33500000"
    assert table.loc["PC2", "region_r2"] > 0.6 and table.loc["PC2", "top_block"] == "chr6_mhc"
