"""Phase 2 in the graph: planted structure ranks high, outputs, checks, a missing block."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from .conftest import latest_materialization, metadata_value


def test_structure_blocks_rank_above_background(demo_pipeline):
    truth = demo_pipeline.truth
    table = pd.read_parquet(demo_pipeline.results / "phase2" / "block_importance.parquet").set_index("block_id")
    structure = table.loc[truth["structure_blocks"], "rank"]
    background = table.loc[truth["background_blocks"], "rank"]
    print("structure ranks", structure.to_dict(), "best background", background.min())
    # the strongly structured HLA class II blocks lead everything and beat their permutation null
    strong = table.loc[truth["strong_structure_blocks"]]
    print(strong[["rank", "importance_r2", "importance_r2_distal", "importance_z", "importance_p", "importance_q", "ld_only"]])
    assert strong["rank"].max() <= len(truth["strong_structure_blocks"])
    assert (strong["importance_p"] < 0.01).all() and not strong["ld_only"].any()
    # every planted block, the weak PDE4D one included, ranks above the median background block
    assert structure.max() < background.median()


def test_block_importance_table_contents(demo_pipeline):
    table = pd.read_parquet(demo_pipeline.results / "phase2" / "block_importance.parquet")
    manifest = pd.read_csv(demo_pipeline.results / "input" / "manifest.tsv", sep="\t")
    assert sorted(table["block_id"]) == sorted(manifest["block_id"])
    assert {"genes", "importance_mean", "importance_std", "rank", "importance_r2", "importance_r2_distal", "importance_z",
            "importance_p", "importance_p_empirical", "importance_q", "ld_only", "attention_mean"} <= set(table.columns)
    assert np.isclose(table["importance_mean"].sum(), 1.0, atol=1e-4)
    assert table[["importance_p", "importance_q"]].apply(lambda c: c.between(0, 1)).all().all()
    # the null blocks are not flooded with significance
    null = table.set_index("block_id").loc[demo_pipeline.truth["null_blocks"]]
    assert (null["importance_q"] < 0.05).mean() <= 0.2
    assert sorted(table["rank"]) == list(range(1, len(table) + 1))
    hla = table.set_index("block_id").loc[demo_pipeline.truth["locus_blocks"]["HLA_DRDQ"], "genes"]
    assert "HLA-DRB1" in hla and "HLA-DQA1" in hla
    seed_cols = [c for c in table.columns if c.startswith("importance_seed") and c != "importance_seed_std"]
    assert len(seed_cols) >= 3


def test_subject_embeddings_and_metadata(demo_pipeline):
    emb = pd.read_parquet(demo_pipeline.results / "phase2" / "subject_embeddings.parquet")
    subjects = pd.read_csv(demo_pipeline.results / "input" / "subjects.tsv", sep="\t", dtype=str)["subject_id"]
    assert list(emb["subject_id"]) == list(subjects)
    values = emb.drop(columns="subject_id").to_numpy()
    assert np.isfinite(values).all() and values.std(axis=0).min() > 0
    mat = latest_materialization(demo_pipeline.instance, "subject_embeddings", "demo")
    corr = metadata_value(mat, "phase1_phase2_distance_correlation")
    assert -1 <= corr <= 1 and corr > 0.1
    imp = latest_materialization(demo_pipeline.instance, "block_importance", "demo")
    assert 0 < metadata_value(imp, "rank_stability_spearman") <= 1
    assert metadata_value(imp, "significant_blocks") >= 2
    assert metadata_value(imp, "top_block_agreement") >= 0.75
    assert "importance_z" in metadata_value(imp, "top_blocks")
    assert "data:image/png;base64," in metadata_value(imp, "preview")
    png = demo_pipeline.results / "phase2" / "block_importance.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_phase2_checks(demo_pipeline):
    for asset, check in [("subject_embeddings", "embedding_finite_and_not_collapsed"),
                         ("block_importance", "importance_beats_null"),
                         ("block_importance", "importance_valid"),
                         ("block_importance", "rank_stable_across_seeds")]:
        key = dg.AssetCheckKey(dg.AssetKey(asset), check)
        record = demo_pipeline.instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
        assert record.event.dagster_event.event_specific_data.passed, check


def test_missing_block_named_in_error(demo_pipeline, tmp_path):
    """A cohort whose Phase 1 lacks one block fails with a message naming that block."""
    import shutil

    from genoembed_assets.defs.models.cross_block import open_phase1_store
    from genoembed_assets.defs.resources import GenoembedStorage
    from genoembed_assets.genotypes.errors import CohortInputError

    copy = tmp_path / "results"
    shutil.copytree(demo_pipeline.results / "input", copy / "demo" / "input")
    shutil.copytree(demo_pipeline.results / "phase1", copy / "demo" / "phase1")
    victim = demo_pipeline.truth["background_blocks"][3]
    shutil.rmtree(copy / "demo" / "phase1" / victim)
    storage = GenoembedStorage(cohorts_root=demo_pipeline.storage.cohorts_root, results_root=str(copy))
    with pytest.raises(CohortInputError, match=rf"missing for 1 of \d+ block\(s\): {victim}"):
        open_phase1_store(storage, "demo")
    # the same through Dagster: the Phase 2 step fails with that message, before any training
    from genoembed_assets.definitions import defs
    from genoembed_assets.defs.resources import ComputeResource

    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        instance.add_dynamic_partitions("cohorts", ["demo"])
        result = dg.materialize(list(defs.assets), instance=instance, partition_key="demo", raise_on_error=False,
                                selection=["subject_embeddings", "block_importance"],
                                resources={"storage": storage, "compute": ComputeResource(device="cpu")})
    assert not result.success
    from genoembed_assets.runner import failure_message

    text = failure_message(result)
    assert victim in text and "Materialize block_embeddings" in text
    assert not (copy / "demo" / "phase2").exists()
    # a block file that exists but is truncated is named too
    shutil.copytree(demo_pipeline.results / "phase1" / victim, copy / "demo" / "phase1" / victim)
    (copy / "demo" / "phase1" / victim / "embedding.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(Exception, match=victim):
        open_phase1_store(storage, "demo")
