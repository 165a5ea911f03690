"""Phase 1 in the graph: one range run trains every block, checks, resume, bad configs."""

from __future__ import annotations

import json

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import torch

from genoembed_assets.defs.partitions import BLOCKS, multi_key
from genoembed_assets.defs.resources import ComputeResource, GenoembedStorage
from genoembed_assets.models import PRESETS, load_block_model
from genoembed_assets.runner import failure_message

from .conftest import latest_materialization, metadata_value


def _block_records(instance):
    return instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey("block_embeddings")), limit=1000).records


def test_one_range_run_materializes_every_block_once(demo_pipeline):
    records = _block_records(demo_pipeline.instance)
    keys = [r.partition_key for r in records]
    expected = {str(multi_key("demo", b)) for b in demo_pipeline.instance.get_dynamic_partitions(BLOCKS)}
    assert len(expected) >= 4
    assert sorted(keys) == sorted(expected)  # exactly one materialization per block
    assert len({r.run_id for r in records}) == 1  # all blocks trained in a single run


def test_artifacts_on_disk_and_loadable(demo_pipeline):
    manifest = pd.read_csv(demo_pipeline.results / "input" / "manifest.tsv", sep="\t")
    subjects = pd.read_csv(demo_pipeline.results / "input" / "subjects.tsv", sep="\t", dtype=str)["subject_id"]
    for row in manifest.itertuples():
        out = demo_pipeline.results / "phase1" / row.block_id
        table = pd.read_parquet(out / "embedding.parquet")
        array = np.load(out / "embedding.npy")
        assert list(table["subject_id"]) == list(subjects)
        assert array.dtype == np.float32 and array.shape == (len(subjects), table.shape[1] - 1)
        np.testing.assert_allclose(table.drop(columns="subject_id").to_numpy(), array, rtol=1e-6)
        curve = pd.read_csv(out / "curve.csv")
        assert {"epoch", "train_loss", "val_loss", "recon", "kl", "beta", "lr"} <= set(curve.columns)
    first = manifest.iloc[0]
    config = PRESETS["fast"]
    model = load_block_model(demo_pipeline.results / "phase1" / first.block_id, config, int(first.n_snps))
    assert isinstance(model, torch.nn.Module)


def test_every_demo_block_beats_its_mode_baseline(demo_pipeline):
    manifest = pd.read_csv(demo_pipeline.results / "input" / "manifest.tsv", sep="\t")
    margins = {}
    for block in manifest["block_id"]:
        metrics = json.loads((demo_pipeline.results / "phase1" / block / "metrics.json").read_text())
        assert metrics["active_units"] >= 1
        margins[block] = metrics["heldout_accuracy"] - metrics["mode_baseline_accuracy"]
    assert min(margins.values()) > 0, {b: m for b, m in margins.items() if m <= 0}


def test_block_model_beats_pca_where_the_vae_alone_does_not(demo_pipeline):
    """The block model (VAE + local LD head) against rank-k PCA on the same held-out calls of the demo blocks."""
    rows = [json.loads(path.read_text()) for path in sorted((demo_pipeline.results / "phase1").glob("*/metrics.json"))]
    held = np.array([m["n_heldout"] for m in rows], dtype=float)

    def pooled(key):
        return float(np.average([m[key] for m in rows], weights=held))

    assert pooled("heldout_accuracy") > pooled("pca_baseline_accuracy") + 0.015
    assert pooled("vae_heldout_accuracy") < pooled("pca_baseline_accuracy")  # why the head exists
    above = [m["block_id"] for m in rows if m["heldout_accuracy"] > m["pca_baseline_accuracy"]]
    # measured: 32 of 32 with 32 partners (narrowest margin 0.36 points); 31 of 32 with 16, the other (52 variants)
    # 1 held-out call of 310 behind; the WARN check names such blocks
    assert len(above) >= 0.9 * len(rows), sorted(set(m["block_id"] for m in rows) - set(above))


def test_phase1_checks_pass(demo_pipeline):
    instance = demo_pipeline.instance
    for check in ["embeddings_finite", "beats_mode_baseline", "active_latent_units", "imputer_beats_pca"]:
        key = dg.AssetCheckKey(dg.AssetKey("block_embeddings"), check)
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
        assert record.event.dagster_event.event_specific_data.passed, check


def test_per_block_observation_carries_metrics(demo_pipeline):
    block = demo_pipeline.instance.get_dynamic_partitions(BLOCKS)[0]
    records = demo_pipeline.instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("block_embeddings"), asset_partitions=[str(multi_key("demo", block))]), limit=1
    ).records
    meta = records[0].asset_observation.metadata
    assert meta["heldout_accuracy"].value > meta["mode_baseline_accuracy"].value


@pytest.fixture
def small_graph(tmp_path):
    """A 4-block, 120-subject cohort registered in a fresh instance, inputs materialized."""
    from genoembed_assets.genotypes.layout import BlockArray, write_cohort
    from genoembed_assets.models import synthetic_genotypes
    from genoembed_assets.runner import materialize_cohort

    n = 120
    ids = [f"s{i:03d}" for i in range(n)]
    blocks = [BlockArray(f"chr1_b{i:04d}", "1", 1000 * i, 1000 * (i + 1), synthetic_genotypes(n, 24, 3, seed=i, missing_rate=0.01))
              for i in range(4)]
    pheno = pd.DataFrame({"subject_id": ids, "age": np.linspace(20, 60, n)})
    write_cohort(tmp_path / "cohorts" / "small", ids, blocks, phenotypes=pheno)
    storage = GenoembedStorage(cohorts_root=str(tmp_path / "cohorts"), results_root=str(tmp_path / "results"))
    resources = {"storage": storage, "compute": ComputeResource(device="cpu")}
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        materialize_cohort("small", instance=instance, resources=resources, stages={"cohort inputs"}, log=lambda m: None)
        yield instance, storage, resources


def _materialize_blocks(small_graph, config: dict):
    from genoembed_assets.definitions import defs
    from genoembed_assets.defs.partitions import cohort_range_tags

    instance, storage, resources = small_graph
    return dg.materialize(
        list(defs.assets), instance=instance, resources=resources, selection=["block_genotypes", "block_embeddings"],
        tags=cohort_range_tags(instance, "small"), raise_on_error=False,
        run_config={"ops": {"block_embeddings": {"config": config}}},
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"preset": "fast", "latent_size": 0}, "latent_size must be at least 1"),
        ({"preset": "fast", "mask_rate_max": 1.5}, "mask"),
        ({"preset": "nonexistent"}, "unknown Phase 1 preset"),
    ],
)
def test_bad_config_fails_before_training(small_graph, config, message):
    _, storage, _ = small_graph
    result = _materialize_blocks(small_graph, config)
    assert not result.success
    assert message in failure_message(result)
    assert not storage.phase1_dir("small").exists()  # nothing trained, nothing written


def test_resume_skips_finished_blocks(small_graph):
    instance, storage, _ = small_graph
    first = _materialize_blocks(small_graph, {"preset": "fast", "max_epochs": 3})
    assert first.success
    mtimes = {p: p.stat().st_mtime_ns for p in storage.phase1_dir("small").rglob("model.pt")}
    assert len(mtimes) == 4
    second = _materialize_blocks(small_graph, {"preset": "fast", "max_epochs": 3})
    assert second.success
    mat = latest_materialization(instance, "block_embeddings", str(multi_key("small", "chr1_b0000")))
    assert sorted(metadata_value(mat, "skipped_blocks")) == [f"chr1_b{i:04d}" for i in range(4)]
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    # a changed configuration retrains
    third = _materialize_blocks(small_graph, {"preset": "fast", "max_epochs": 4})
    assert third.success
    mat = latest_materialization(instance, "block_embeddings", str(multi_key("small", "chr1_b0000")))
    assert metadata_value(mat, "skipped_blocks") == [] and metadata_value(mat, "n_trained") == 4


def _materialize_imputation(small_graph, engine: str, **config):
    from genoembed_assets.definitions import defs

    instance, _, resources = small_graph
    return dg.materialize(
        list(defs.assets), instance=instance, resources=resources, selection=["imputed_genotypes"],
        partition_key="small", raise_on_error=False,
        run_config={"ops": {"imputed_genotypes": {"config": {"engine": engine, **config}}}},
    )


def test_imputed_genotypes_with_the_hap_engine_needs_no_block_models(small_graph):
    from cyvcf2 import VCF

    from genoembed_assets.defs.models.imputed_genotypes import imputed_vcf_path
    from genoembed_assets.genotypes import layout

    instance, storage, _ = small_graph
    result = _materialize_imputation(small_graph, "hap")
    assert result.success
    assert not storage.phase1_dir("small").exists()  # nothing trained
    mat = latest_materialization(instance, "imputed_genotypes", "small")
    manifest = layout.read_manifest(storage.input_dir("small"))
    n_subjects = len(layout.read_subjects(storage.input_dir("small")))
    missing = sum(int((layout.load_block(storage.input_dir("small"), row, n_subjects) < 0).sum())
                  for row in manifest.to_dict(orient="records"))
    assert metadata_value(mat, "engine") == "hap"
    assert metadata_value(mat, "n_imputed_calls") == missing > 0
    vcf = VCF(str(imputed_vcf_path(storage, "small")))
    assert sum(1 for _ in vcf) == int(manifest["n_snps"].sum())


def test_imputed_genotypes_reads_a_genetic_map_with_the_hap_engine_only(small_graph, tmp_path):
    from genoembed_assets.defs.models.imputed_genotypes import imputed_vcf_path

    _, storage, _ = small_graph
    gmap = tmp_path / "chr1.gmap"
    gmap.write_text("pos\tchr\tcM\n1\t1\t0\n250000000\t1\t270\n")
    assert _materialize_imputation(small_graph, "hap", genetic_map=str(gmap)).success
    assert metadata_value(latest_materialization(small_graph[0], "imputed_genotypes", "small"), "genetic_map") == str(gmap)
    written = imputed_vcf_path(storage, "small").stat().st_mtime_ns
    result = _materialize_imputation(small_graph, "ld", genetic_map=str(gmap))
    assert not result.success
    assert "ImputationConfig.genetic_map is read by engine 'hap' only, not 'ld'" in failure_message(result)
    bad = tmp_path / "bad.gmap"
    bad.write_text("pos\tchr\tcM\n1\t1\tnone\n")
    result = _materialize_imputation(small_graph, "hap", genetic_map=str(bad))
    assert not result.success
    assert f"{bad}: line 2: expected numbers for position and cM" in failure_message(result)
    assert imputed_vcf_path(storage, "small").stat().st_mtime_ns == written  # the last VCF is kept


def test_imputed_genotypes_names_an_unknown_engine(small_graph):
    _, storage, _ = small_graph
    result = _materialize_imputation(small_graph, "beagle")
    assert not result.success
    assert "unknown imputation engine 'beagle'; choose one of blend, vae, ld, hap" in failure_message(result)
    assert not (storage.cohort_dir("small") / "imputed").exists()


def test_block_with_one_subject_is_rejected_before_training():
    from genoembed_assets.models import train_blocks

    with pytest.raises(ValueError, match=r"block 'chr1_b0000' has 1 subject"):
        train_blocks([("chr1_b0000", np.zeros((1, 10), dtype=np.int8))], PRESETS["fast"])
