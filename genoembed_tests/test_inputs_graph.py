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


# ------------------------------------------------------------------ tiny cohorts as users bring them


def _check(result: dg.ExecuteInProcessResult, name: str):
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def _inputs(tmp_path, write, *, blocks: bool = False, phase1: bool = False):
    """Register cohort 'c1' written by ``write`` and materialize its input assets (no PCs)."""
    from genoembed_assets.definitions import defs
    from genoembed_assets.defs.partitions import cohort_range_tags, register_cohort
    from genoembed_assets.defs.resources import ComputeResource, GenoembedStorage
    from genoembed_assets.genotypes.ingest import scan_cohort

    from .conftest import run_config_for_tests

    src = tmp_path / "cohorts" / "c1"
    src.mkdir(parents=True)
    write(src)
    storage = GenoembedStorage(cohorts_root=str(tmp_path / "cohorts"), results_root=str(tmp_path / "results"))
    resources = {"storage": storage, "compute": ComputeResource(device="cpu")}
    instance = dg.DagsterInstance.ephemeral()
    register_cohort(instance, "c1", list(scan_cohort(src).blocks["block_id"]))
    assets = list(defs.assets)
    cohort = dg.materialize(assets, selection=["cohort_input", "phenotypes"], partition_key="c1",
                            instance=instance, resources=resources, raise_on_error=False)
    block = None
    if blocks:
        selection = ["block_genotypes", "block_embeddings"] if phase1 else ["block_genotypes"]
        block = dg.materialize(assets, selection=selection, tags=cohort_range_tags(instance, "c1"), instance=instance,
                               resources=resources, raise_on_error=False,
                               run_config={"ops": {"block_embeddings": run_config_for_tests()["ops"]["block_embeddings"]}}
                               if phase1 else None)
    return instance, storage, cohort, block


def _genotype_only(folder):
    from .fixtures_genotypes import make_cohort, write_plink

    write_plink(folder, make_cohort())


def test_genotype_only_cohort_passes_its_checks(tmp_path):
    instance, storage, result, _ = _inputs(tmp_path, _genotype_only)
    assert result.success
    for check in ["subject_ids_consistent", "phenotypes_usable", "phenotypes_cover_subjects"]:
        assert _check(result, check).passed, check
    assert "genotype-only" in _check(result, "subject_ids_consistent").metadata["message"].value
    table = pd.read_parquet(storage.cohort_dir("c1") / "phenotypes.parquet")
    assert list(table.columns) == ["subject_id"] and list(table["subject_id"]) == [f"S{i:03d}" for i in range(40)]
    mat = latest_materialization(instance, "phenotypes", "c1")
    assert metadata_value(mat, "phenotypes") == "no phenotypes" and metadata_value(mat, "has_phenotypes") is False
    assert metadata_value(mat, "n_traits") == 0
    assert metadata_value(latest_materialization(instance, "cohort_input", "c1"), "phenotypes") == "no phenotypes"


def _tenth_missing(folder):
    from .fixtures_genotypes import make_cohort, write_plink

    c = make_cohort()
    write_plink(folder, c)
    pheno = c.phenotypes().rename(columns={"subject_id": "IID"})
    pheno.drop(index=[0, 9, 18, 27]).to_csv(folder / "phenotypes.csv", index=False)


def test_subjects_missing_from_phenotypes_are_a_warning(tmp_path):
    instance, storage, result, _ = _inputs(tmp_path, _tenth_missing)
    assert result.success
    assert _check(result, "subject_ids_consistent").passed  # not a blocking failure
    assert _check(result, "phenotypes_usable").passed
    warn = _check(result, "phenotypes_cover_subjects")
    assert not warn.passed and warn.severity == dg.AssetCheckSeverity.WARN
    assert warn.metadata["n_subjects_missing"].value == 4
    assert "4 of 40 genotyped subject(s)" in warn.metadata["message"].value
    table = pd.read_parquet(storage.cohort_dir("c1") / "phenotypes.parquet")
    assert len(table) == 40 and table.set_index("subject_id").loc[["S000", "S009", "S018", "S027"]].isna().all().all()
    assert metadata_value(latest_materialization(instance, "phenotypes", "c1"), "n_subjects_missing") == 4


def _npy_with_fam_and_empty_block(folder):
    from .fixtures_genotypes import make_cohort, write_fam, write_npy_only

    c = make_cohort(missing=0.0)
    c.genotypes[:, 42:] = 2  # chr1_b0002 monomorphic
    write_npy_only(folder, c)
    write_fam(folder / "study.fam", c.subject_ids)
    c.phenotypes().to_csv(folder / "phenotypes.csv", index=False)


def test_skipped_block_is_recorded_not_failed(tmp_path):
    instance, storage, result, blocks = _inputs(tmp_path, _npy_with_fam_and_empty_block, blocks=True, phase1=True)
    assert result.success and blocks.success
    mat = latest_materialization(instance, "cohort_input", "c1")
    assert metadata_value(mat, "subject_order_source") == "study.fam"
    assert metadata_value(mat, "n_blocks") == 2 and metadata_value(mat, "n_skipped_blocks") == 1
    [skipped] = metadata_value(mat, "skipped_blocks")
    assert skipped["block_id"] == "chr1_b0002" and "8 monomorphic" in skipped["reason"]
    # every block partition is materialized, the skipped one recorded as absent with its reason
    keys = {str(multi_key("c1", b)) for b in ["chr1_b0000", "chr1_b0001", "chr1_b0002"]}
    for asset in ("block_genotypes", "block_embeddings"):
        assert keys <= instance.get_materialized_partitions(dg.AssetKey(asset)), asset
    assert _check(blocks, "block_matrix_valid").passed
    [obs] = instance.fetch_observations(dg.AssetRecordsFilter(
        asset_key=dg.AssetKey("block_genotypes"), asset_partitions=[str(multi_key("c1", "chr1_b0002"))]), limit=1).records
    meta = obs.asset_observation.metadata
    assert meta["present"].value is False and "no variant left after QC" in meta["skipped"].value
    assert not (storage.phase1_dir("c1", "chr1_b0002")).exists()
