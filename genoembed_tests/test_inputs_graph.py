"""Tier 2: the demo cohort's input graph, materialized with a test instance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import dagster as dg

from genoembed_assets.defs.partitions import BLOCKS, COHORTS, multi_key

from .conftest import latest_materialization, metadata_value


def test_demo_cohort_registered_in_genomic_order(demo_pipeline):
    inst = demo_pipeline.instance
    assert inst.get_dynamic_partitions(COHORTS) == ["demo"]
    blocks = inst.get_dynamic_partitions(BLOCKS)
    manifest = pd.read_csv(demo_pipeline.results / "input" / "manifest.tsv", sep="\t", dtype={"chrom": str})
    assert blocks == list(manifest["block_id"])
    chrom_order = [int(c) if c.isdigit() else 23 for c in manifest["chrom"]]
    assert chrom_order == sorted(chrom_order)


def test_cohort_input_qc_figures(demo_pipeline):
    truth = demo_pipeline.truth
    mat = latest_materialization(demo_pipeline.instance, "cohort_input", "demo")
    assert metadata_value(mat, "n_subjects") == truth["n_subjects"] >= 1000
    n_blocks = len(truth["structure_blocks"]) + len(truth["background_blocks"])
    assert metadata_value(mat, "n_blocks") >= 28
    manifest = pd.read_csv(demo_pipeline.results / "input" / "manifest.tsv", sep="\t")
    assert set(truth["locus_blocks"].values()) <= set(manifest["block_id"])
    assert len(truth["background_blocks"]) >= 20
    assert metadata_value(mat, "n_variants") == manifest["n_snps"].sum()
    assert n_blocks <= len(manifest)


def test_input_checks_all_pass(demo_pipeline):
    evaluations = {}
    for check in ["no_duplicate_ids", "subject_ids_consistent", "block_shapes_match_manifest",
                  "genotype_values_valid", "missingness_within_bounds"]:
        record = demo_pipeline.instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("cohort_input"), check)]
        )[dg.AssetCheckKey(dg.AssetKey("cohort_input"), check)]
        evaluations[check] = record.event.dagster_event.event_specific_data.passed
    assert evaluations == {k: True for k in evaluations}


def test_block_qc_observations_match_the_files(demo_pipeline):
    """The per-partition QC shown in the UI equals figures computed independently here."""
    inst = demo_pipeline.instance
    manifest = pd.read_csv(demo_pipeline.results / "input" / "manifest.tsv", sep="\t")
    row = manifest.iloc[0]
    key = str(multi_key("demo", row["block_id"]))
    records = inst.fetch_observations(dg.AssetRecordsFilter(asset_key=dg.AssetKey("block_genotypes"), asset_partitions=[key]), limit=1).records
    assert records, f"no QC observation for partition {key}"
    meta = records[0].asset_observation.metadata
    g = np.load(demo_pipeline.results / "input" / row["file"])
    assert g.dtype == np.int8 and g.shape == (demo_pipeline.truth["n_subjects"], row["n_snps"])
    assert meta["n_snps"].value == g.shape[1]
    assert abs(meta["missing_rate"].value - float((g == -1).mean())) < 1e-9
    observed = np.where(g >= 0, g, np.nan)
    freq = np.nanmean(observed, axis=0) / 2
    maf = np.minimum(freq, 1 - freq)
    assert abs(meta["maf_mean"].value - float(maf.mean())) < 1e-6


def test_every_block_partition_materialized_once_per_run(demo_pipeline):
    inst = demo_pipeline.instance
    keys = [str(multi_key("demo", b)) for b in inst.get_dynamic_partitions(BLOCKS)]
    materialized = inst.get_materialized_partitions(dg.AssetKey("block_genotypes"))
    assert set(keys) <= materialized


def test_phenotypes_and_pcs_aligned(demo_pipeline):
    subjects = pd.read_csv(demo_pipeline.results / "input" / "subjects.tsv", sep="\t", dtype=str)["subject_id"]
    pheno = pd.read_parquet(demo_pipeline.results / "phenotypes.parquet")
    pcs = pd.read_parquet(demo_pipeline.results / "pcs.parquet")
    assert list(pheno["subject_id"]) == list(subjects) == list(pcs["subject_id"])
    assert {"ige", "eosinophils", "fev1", "exacerbations", "age", "sex"} <= set(pheno.columns)
    assert [f"PC{i}" for i in range(1, 11)] == [c for c in pcs.columns if c.startswith("PC")]
    assert np.isfinite(pcs.drop(columns="subject_id").to_numpy()).all()
