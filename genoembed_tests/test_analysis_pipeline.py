"""The analyses on a synthetic cohort with planted truth (see analysis/synthetic.py).

Properties asserted are the ones the demo-cohort acceptance tests ask for:
strata recovered, HLA blocks lead ahead of ancestry, PDE4D leads without the
MHC, planted associations found with IgE strongest, null blocks controlled.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import adjusted_rand_score

from genoembed_assets import analysis as an
from genoembed_assets.analysis.synthetic import synthetic_cohort


@pytest.fixture(scope="module")
def cohort():
    return synthetic_cohort(n_subjects=400, random_state=0)


@pytest.fixture(scope="module")
def features(cohort):
    return an.block_pc1_features(cohort.block_embeddings, covariates=cohort.pcs)


@pytest.fixture(scope="module")
def clusters(cohort):
    return an.cluster_subjects(cohort.embedding, cohort.pcs, random_state=0)


@pytest.fixture(scope="module")
def drivers(cohort, features, clusters):
    return an.block_drivers(clusters.table, features, cohort.pcs, cohort.embedding)


@pytest.fixture(scope="module")
def leave_out(cohort, features, clusters):
    return an.leave_region_out(features, cohort.blocks, clusters.table)


@pytest.fixture(scope="module")
def association(cohort, features):
    return an.associate_phenotypes({"block": features, "embedding": cohort.embedding}, cohort.phenotypes, cohort.pcs)


@pytest.fixture(scope="module")
def locus(cohort, association):
    return an.validate_locus(association.table, cohort.blocks, "17q21", n_background=500, random_state=0)


@pytest.fixture(scope="module")
def geometry(cohort):
    return an.embedding_geometry(cohort.block_embeddings, cohort.embedding, cohort.pcs, n_sample=200)


def test_clusters_recover_planted_strata(cohort, clusters):
    truth = cohort.subjects.set_index("subject_id").loc[clusters.table["subject_id"], "stratum"]
    assert adjusted_rand_score(truth, clusters.table["cluster"]) > 0.5
    scan = clusters.tables["k_scan"]
    assert scan["stability_ari"].between(-1, 1).all() and scan["chosen"].sum() == 1
    assert clusters.summary["k"] == 3
    assert 0 <= clusters.summary["hdbscan_noise_fraction"] <= 1


def test_unadjusted_clusters_follow_ancestry_more(cohort, clusters):
    raw = an.cluster_subjects(cohort.embedding, adjust_for_ancestry=False, k_range=(2, 3, 4), random_state=0)
    pop = cohort.subjects["population"]
    assert adjusted_rand_score(pop, raw.table["cluster"]) > adjusted_rand_score(pop, clusters.table["cluster"]) + 0.1


def test_hla_blocks_lead_drivers_ahead_of_pc1(cohort, drivers):
    table = drivers.table
    assert set(table.head(2)["feature"]) == set(cohort.truth["strong_structure_blocks"])
    eta = table.set_index("feature")["eta2"]
    assert min(eta[b] for b in cohort.truth["strong_structure_blocks"]) > eta["PC1"]
    assert list(table.columns) == ["feature", "kind", "eta2", "corr_main_axis", "r2_axis1", "rank"]
    assert drivers.summary["block_leads"]
    # the main embedding axis is ancestry in this cohort
    assert abs(table.set_index("feature").loc["PC1", "corr_main_axis"]) > 0.8


def test_leaving_out_mhc_pde4d_leads(cohort, leave_out):
    s = leave_out.summary
    assert set(s["dropped_blocks"]) == {"chr6_b0100", *cohort.truth["strong_structure_blocks"]}
    assert s["leading_block"] == cohort.truth["weak_structure_blocks"][0]
    assert s["structure_remains"] and s["leading_q"] < 0.05 and -1 <= s["ari_old_new"] <= 1
    assert not set(s["dropped_blocks"]) & set(leave_out.table["feature"])


@pytest.mark.parametrize("method", ["sparse", "kmeans"])
def test_leave_out_unsupervised_methods_run(cohort, features, clusters, method):
    result = an.leave_region_out(features, cohort.blocks, clusters.table, regions=["HLA-DRB1", "chr6:33,000,000-33,100,000"], method=method)
    assert result.summary["n_dropped"] == 2 and result.summary["method"] == method
    assert result.table["eta2"].between(0, 1).all()


def test_planted_associations_found_and_ige_strongest(cohort, association):
    table = association.table
    assert table["p"].between(0, 1).all() and table["q"].between(0, 1).all()
    hits = table.set_index(["feature", "phenotype"])["q"]
    for effect in cohort.truth["effects"]:
        assert hits[(effect["block"], effect["phenotype"])] < 0.05, effect
    assert association.summary["strongest_phenotype"] == "ige"
    nulls = table[table["feature"].isin(cohort.truth["null_blocks"])]
    assert (nulls["q"] < 0.05).mean() <= 0.10
    assert association.summary["count_models"]["exacerbations"]["model"] == "negbin"
    # missing IgE values are dropped per test, not imputed
    n_ige = table.loc[table["phenotype"] == "ige", "n"].iloc[0]
    assert n_ige == cohort.phenotypes["ige"].notna().sum()


def test_association_is_fast(cohort, features):
    start = time.perf_counter()
    an.associate_phenotypes({"block": features, "embedding": cohort.embedding}, cohort.phenotypes, cohort.pcs)
    assert time.perf_counter() - start < 10  # 188 tests incl. 47 NB GLMs; ~1 s unloaded


def test_locus_beats_background(locus):
    assert locus.summary["empirical_p"] < 0.01
    assert locus.summary["best_phenotype"] == "ige"
    assert locus.table["empirical_p"].between(0, 1).all()


def test_locus_is_seeded(cohort, association, locus):
    again = an.validate_locus(association.table, cohort.blocks, "17q21", n_background=500, random_state=0)
    assert again.table.equals(locus.table)


def test_geometry(geometry):
    s = geometry.summary
    assert s["max_corr_axis"] == "e0" and s["max_corr_pc"] == "PC1" and s["max_abs_corr"] > 0.8
    assert 0 < s["distance_spearman"] <= 1 and s["n_sample"] == 200
    assert len(geometry.table) == 8 * 10


def test_summary_names_leading_block(drivers, leave_out, association, locus):
    result = an.findings_summary(drivers, leave_out, association, locus)
    assert drivers.summary["leading_block"] in result.summary["markdown"]
    assert result.summary["strongest_phenotype"] == "ige"


def _assert_real_png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        assert image.width >= 400 and image.height >= 250
        assert np.asarray(image.convert("L"), dtype=float).std() > 0


FIGURES = {
    "clusters": lambda r: an.plot_clusters(r["clusters"], r["path"]),
    "drivers": lambda r: an.plot_drivers(r["drivers"], r["path"], block_labels={"chr6_b0101": "HLA-DRB1"}),
    "leave_out": lambda r: an.plot_leave_region_out(r["leave_out"], r["path"]),
    "association": lambda r: an.plot_association(r["association"], r["path"]),
    "locus": lambda r: an.plot_locus(r["locus"], r["path"]),
    "geometry": lambda r: an.plot_geometry(r["geometry"], r["path"]),
    "summary": lambda r: an.plot_summary(r["drivers"], r["leave_out"], r["association"], r["path"]),
}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figures_are_real_pngs(name, tmp_path, clusters, drivers, leave_out, association, locus, geometry):
    results = dict(clusters=clusters, drivers=drivers, leave_out=leave_out, association=association, locus=locus, geometry=geometry)
    path = FIGURES[name]({**results, "path": tmp_path / "sub" / f"{name}.png"})
    _assert_real_png(path)
    assert not [p for p in path.parent.iterdir() if p.name != path.name]  # no temp file left
    preview = an.png_preview_markdown(path, max_width=300)
    assert preview.startswith("![") and "data:image/png;base64," in preview and len(preview) < 150_000
