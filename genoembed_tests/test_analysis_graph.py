"""Tier 2/3: the analysis assets, on the demo cohort's whole materialized graph.

The demo cohort (``genotypes/simulate.py``) plants a 3-level stratum shaping the
HLA class II blocks strongly and one PDE4D block weakly, and block-phenotype
effects with IgE strongest; these tests check that the analysis assets recover
that truth from the learned embeddings, and that every figure, check and
metadata preview a user sees in the UI is there.
"""

from __future__ import annotations

import json

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from PIL import Image
from sklearn.metrics import adjusted_rand_score

from genoembed_assets.analysis import joint_ols_tests, short_gene_label

from .conftest import latest_materialization, metadata_value

ANALYSES = [
    "block_features",
    "subject_clusters",
    "block_drivers",
    "leave_region_out",
    "phenotype_associations",
    "locus_validation",
    "embedding_geometry",
    "findings_summary",
]


# --------------------------------------------------------------------------- definitions (no training)


def test_analysis_assets_are_wired_for_the_ui():
    from genoembed_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    for name in ANALYSES:
        node = graph.get(dg.AssetKey(name))
        assert node.group_name == "analysis", name
        assert node.partitions_def.name == "cohorts", name
        assert node.automation_condition is not None, name
        policy = node.freshness_policy
        assert policy is not None and policy.fail_window.to_timedelta() > policy.warn_window.to_timedelta(), name
    parents = {name: {k.to_user_string() for k in graph.get(dg.AssetKey(name)).parent_keys} for name in ANALYSES}
    assert {"subject_embeddings", "ancestry_pcs"} <= parents["subject_clusters"]
    assert {"subject_clusters", "block_features", "block_importance"} <= parents["block_drivers"]
    assert "block_embeddings" in parents["block_features"] and "block_embeddings" in parents["phenotype_associations"]
    assert {"block_drivers", "leave_region_out", "phenotype_associations", "locus_validation"} <= parents["findings_summary"]


def test_joint_ols_test_matches_statsmodels_f_test():
    rng = np.random.default_rng(0)
    n = 300
    cov = rng.normal(size=(n, 3))
    block = rng.normal(size=(n, 4))
    block[:, 3] = block[:, 0] + block[:, 1]  # rank 3: a collinear column costs nothing
    y = cov @ [0.5, -0.2, 0.1] + 0.3 * block[:, 0] + rng.normal(size=n)
    row = joint_ols_tests(y, [block], cov).iloc[0]
    full = sm.OLS(y, sm.add_constant(np.column_stack([cov, block[:, :3]]))).fit()
    null = sm.OLS(y, sm.add_constant(cov)).fit()
    f, p, df = full.compare_f_test(null)
    assert row["df"] == df == 3
    assert np.isclose(row["p"], p, rtol=1e-8)
    assert np.isclose(row["effect"], (null.ssr - full.ssr) / null.ssr)


def test_gene_labels_put_named_loci_first():
    # Phase 2 stores every overlapping gene, in genomic order; figure labels stay short
    assert short_gene_label("AIF1,PRRC2A,HLA-DRA,HLA-DRB1,BAG6") == "HLA-DRA, HLA-DRB1, AIF1, PRRC2A +1"
    assert short_gene_label(["PDE4D"]) == "PDE4D" and short_gene_label("") == ""


# --------------------------------------------------------------------------- the demo cohort


def _analysis(demo_pipeline, name: str, table: str | None = None) -> pd.DataFrame:
    suffix = f"_{table}" if table else ""
    return pd.read_parquet(demo_pipeline.results / "analysis" / f"{name}{suffix}.parquet")


def _summary(demo_pipeline, name: str) -> dict:
    return json.loads((demo_pipeline.results / "analysis" / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def truth_subjects(demo_pipeline) -> pd.DataFrame:
    path = demo_pipeline.storage.source_dir(demo_pipeline.cohort) / "truth_subjects.tsv"
    return pd.read_csv(path, sep="\t", dtype={"subject_id": str, "population": str})


@pytest.mark.slow
def test_clusters_recover_planted_strata_not_ancestry(demo_pipeline, truth_subjects):
    clusters = _analysis(demo_pipeline, "subject_clusters").astype({"subject_id": str}).merge(truth_subjects, on="subject_id")
    assert len(clusters) == demo_pipeline.truth["n_subjects"]
    ari_strata = adjusted_rand_score(clusters["stratum"], clusters["cluster"])
    ari_population = adjusted_rand_score(clusters["population"], clusters["cluster"])
    print(f"ARI vs planted strata {ari_strata:.3f}, vs population {ari_population:.3f}")
    assert ari_strata > 0.3
    assert ari_population < 0.1
    mat = latest_materialization(demo_pipeline.instance, "subject_clusters", "demo")
    assert metadata_value(mat, "k") == clusters["cluster"].nunique()


@pytest.mark.slow
def test_hla_class_ii_blocks_lead_drivers_ahead_of_ancestry(demo_pipeline):
    table = _analysis(demo_pipeline, "block_drivers")
    strong = demo_pipeline.truth["strong_structure_blocks"]
    print(table.head(6).to_string())
    assert set(table.head(len(strong))["feature"]) == set(strong)
    eta = table.set_index("feature")["eta2"]
    assert min(eta[b] for b in strong) > eta["PC1"]
    assert _summary(demo_pipeline, "block_drivers")["block_leads"]


@pytest.mark.slow
def test_leaving_out_the_mhc_pde4d_leads(demo_pipeline):
    s = _summary(demo_pipeline, "leave_region_out")
    print({k: s[k] for k in ("leading_block", "leading_eta2", "ari_old_new", "dropped_blocks")})
    assert set(demo_pipeline.truth["strong_structure_blocks"]) <= set(s["dropped_blocks"])
    assert s["leading_block"] == demo_pipeline.truth["weak_structure_blocks"][0]
    assert s["structure_remains"]


@pytest.mark.slow
def test_planted_associations_found_ige_strongest_nulls_controlled(demo_pipeline):
    table = _analysis(demo_pipeline, "phenotype_associations")
    blocks = table[table["kind"] == "block"]
    q = blocks.set_index(["feature", "phenotype"])["q"]
    found = {(e["block"], e["phenotype"]): float(q[(e["block"], e["phenotype"])]) for e in demo_pipeline.truth["effects"]}
    print("planted pairs q:", found)
    assert all(value < 0.05 for value in found.values()), found
    summary = _summary(demo_pipeline, "phenotype_associations")
    assert summary["strongest_phenotype"] == "ige"
    nulls = blocks[blocks["feature"].isin(demo_pipeline.truth["null_blocks"])]
    assert len(nulls) >= 4 * 10
    print(f"null blocks at q<0.05: {(nulls['q'] < 0.05).mean():.3f}")
    assert (nulls["q"] < 0.05).mean() <= 0.10
    assert set(table["phenotype"]) == {"ige", "eosinophils", "fev1", "exacerbations"}


@pytest.mark.slow
def test_locus_and_geometry_reported(demo_pipeline):
    locus = _summary(demo_pipeline, "locus_validation")
    assert locus["locus_blocks"] == [demo_pipeline.truth["locus_blocks"]["17q21"]]
    assert 0 < locus["empirical_p"] <= 1
    geometry = _summary(demo_pipeline, "embedding_geometry")
    assert -1 <= geometry["distance_spearman"] <= 1
    print(f"17q21 empirical p {locus['empirical_p']:.4f}; Phase 1 vs 2 distance Spearman {geometry['distance_spearman']:.3f}")


@pytest.mark.slow
@pytest.mark.parametrize("name", ANALYSES)
def test_figure_is_a_real_png_with_a_preview(demo_pipeline, name):
    path = demo_pipeline.results / "analysis" / f"{name}.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.shape[1] >= 500 and pixels.shape[0] >= 300, pixels.shape
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.005, "the figure looks blank"
    mat = latest_materialization(demo_pipeline.instance, name, "demo")
    assert metadata_value(mat, "figure").startswith("![") and "data:image/png;base64," in metadata_value(mat, "figure")
    assert metadata_value(mat, "figure_path") == str(path)
    assert metadata_value(mat, "path").endswith(f"{name}.parquet")


@pytest.mark.slow
def test_findings_summary_names_the_leading_block(demo_pipeline):
    leading = _summary(demo_pipeline, "block_drivers")["leading_block"]
    findings = _analysis(demo_pipeline, "findings_summary").set_index("finding")
    assert findings.loc["leading_block", "value"] == leading
    mat = latest_materialization(demo_pipeline.instance, "findings_summary", "demo")
    assert leading in metadata_value(mat, "summary")
    assert metadata_value(mat, "leading_block") == leading
    with Image.open(demo_pipeline.results / "analysis" / "findings_summary.png") as image:
        assert image.width > 2 * image.height  # the three-panel layout


@pytest.mark.slow
def test_every_analysis_check_passed(demo_pipeline):
    from genoembed_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = [k for name in ANALYSES for k in graph.get(dg.AssetKey(name)).check_keys]
    assert len(keys) >= len(ANALYSES)
    records = demo_pipeline.instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    outcome = {k.to_user_string(): records[k].event.dagster_event.event_specific_data.passed for k in keys}
    assert outcome == {k: True for k in outcome}
