"""Unit tests of the pure analysis helpers on tiny hand-made inputs."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.stats.multitest import multipletests

from genoembed_assets import analysis as an
from genoembed_assets.analysis import checks
from genoembed_assets.analysis.features import pc1_scores

ANALYSIS_DIR = Path(an.__file__).parent


def test_analysis_never_imports_dagster():
    for path in ANALYSIS_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "dagster" for n in names), path.name


def test_eta_squared_matches_anova():
    values = np.array([1.0, 2.0, 3.0, 7.0, 8.0, 9.0])
    labels = np.array([0, 0, 0, 1, 1, 1])
    # between SS = 6 * 3^2 = 54, total SS = 54 + 4
    assert an.eta_squared(values, labels) == pytest.approx(54 / 58)
    assert np.isnan(an.eta_squared(np.ones((6, 1)), labels)[0])


def test_residualize_is_orthogonal_to_covariates():
    rng = np.random.default_rng(0)
    cov = rng.normal(size=(50, 3))
    values = cov @ rng.normal(size=(3, 2)) + rng.normal(size=(50, 2))
    res = an.residualize(values, cov)
    assert np.abs(cov.T @ res).max() < 1e-8 and np.abs(res.sum(axis=0)).max() < 1e-8


def test_pc1_sign_is_deterministic():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 3)) * [3, 1, 1]
    assert np.allclose(pc1_scores(x), pc1_scores(x.copy()))
    assert np.corrcoef(pc1_scores(x), x[:, 0])[0, 1] ** 2 > 0.8


def test_block_pc1_features_from_arrays_and_frames():
    rng = np.random.default_rng(2)
    ids = [f"s{i}" for i in range(20)]
    frame = pd.DataFrame(rng.normal(size=(20, 2)), columns=["z0", "z1"]).assign(subject_id=ids[::-1])
    out = an.block_pc1_features({"b1": rng.normal(size=(20, 3)), "b2": frame}, subject_ids=ids)
    assert list(out.columns) == ["subject_id", "b1", "b2"] and list(out["subject_id"]) == ids
    assert np.allclose(out[["b1", "b2"]].std(ddof=0), 1)
    with pytest.raises(ValueError, match="subject_ids"):
        an.block_pc1_features({"b1": rng.normal(size=(20, 3))})


def test_align_subjects_rejects_duplicates():
    with pytest.raises(ValueError, match="repeats"):
        an.align_subjects(pd.DataFrame({"subject_id": ["a", "a"], "x": [1, 2]}))


@pytest.mark.parametrize(
    ("spec", "chrom", "start", "end"),
    [
        ("chr6:28,477,797-33,448,354", "6", 28_477_797, 33_448_354),
        ("MHC", "6", 28_477_797, 33_448_354),
        ("17q21", "17", 37_913_967, 38_083_884),
        ("hla-drb1", "6", 32_546_546, 32_557_613),
        ("IL13", "5", None, None),  # from the gene list, not the loci table
    ],
)
def test_resolve_region(spec, chrom, start, end):
    region = an.resolve_region(spec)
    assert region.chrom == chrom
    if start is not None:
        assert (region.start, region.end) == (start, end)


def test_resolve_region_unknown_and_hg38():
    with pytest.raises(ValueError, match="neither"):
        an.resolve_region("NOT_A_GENE_XYZ")
    assert an.resolve_region("MHC", build="hg38").start == 28_510_120


def test_blocks_in_regions_overlap():
    blocks = pd.DataFrame({"block_id": ["a", "b", "c"], "chrom": ["6", "chr6", "5"], "start": [28_000_000, 34_000_000, 29_000_000], "end": [28_500_000, 35_000_000, 30_000_000]})
    assert an.blocks_in_regions(blocks, "MHC") == ["a"]


def test_bh_matches_statsmodels():
    p = np.random.default_rng(3).uniform(size=200) ** 3
    assert np.allclose(an.bh_fdr(p), multipletests(p, method="fdr_bh")[1])
    with_nan = an.bh_fdr(np.array([0.01, np.nan, 0.04]))
    assert np.isnan(with_nan[1]) and np.allclose(with_nan[[0, 2]], multipletests([0.01, 0.04], method="fdr_bh")[1])


def test_ols_feature_tests_match_statsmodels():
    rng = np.random.default_rng(4)
    cov, x = rng.normal(size=(80, 3)), rng.normal(size=(80, 4))
    y = x[:, 0] * 0.5 + cov[:, 1] + rng.normal(size=80)
    fast = an.ols_feature_tests(y, x, cov)
    for j in range(4):
        fit = sm.OLS(y, sm.add_constant(np.column_stack([cov, x[:, j]]))).fit()
        assert fast.loc[j, "effect"] == pytest.approx(fit.params[-1])
        assert fast.loc[j, "se"] == pytest.approx(fit.bse[-1])
        assert fast.loc[j, "p"] == pytest.approx(fit.pvalues[-1])


def _count_inputs(overdispersed: bool):
    rng = np.random.default_rng(5)
    n = 400
    ids = [f"s{i}" for i in range(n)]
    x = rng.normal(size=n)
    mu = np.exp(0.5 + 0.2 * x)
    y = rng.poisson(rng.gamma(1.0, mu)) if overdispersed else rng.poisson(mu)
    pheno = pd.DataFrame({"subject_id": ids, "age": rng.uniform(20, 60, n), "sex": rng.integers(0, 2, n), "counts": y})
    feats = pd.DataFrame({"subject_id": ids, "f": x, "noise": rng.normal(size=n)})
    return feats, pheno


@pytest.mark.parametrize(("overdispersed", "model"), [(True, "negbin"), (False, "poisson")])
def test_count_model_follows_dispersion_test(overdispersed, model):
    feats, pheno = _count_inputs(overdispersed)
    result = an.associate_phenotypes({"block": feats}, pheno, None, models={"counts": "count"})
    assert set(result.table["model"]) == {model}
    row = result.table.set_index("feature").loc["f"]
    assert row["q"] < 0.05 and row["effect"] > 0


def test_association_rejects_missing_phenotype_column():
    feats, pheno = _count_inputs(False)
    with pytest.raises(ValueError, match="not columns"):
        an.associate_phenotypes({"block": feats}, pheno, None, models={"ige": "log"})


def test_checks():
    table = pd.DataFrame({"phenotype": ["ige", "fev1"], "p": [0.1, 0.1], "q": [0.2, np.nan]})
    assert not checks.check_all_finite(table).passed
    assert checks.check_all_finite(table, ["p"]).passed
    assert not checks.check_pvalues_vary(table).passed
    assert checks.check_pvalues_vary(table.assign(p=[0.1, 0.5])).passed
    assert not checks.check_pvalues_vary(table.assign(p=[0.1, 1.5])).passed
    assert not checks.check_phenotypes_tested(table, ["ige", "eosinophils"]).passed
    assert checks.check_phenotypes_tested(table, ["ige"]).passed
    assert not checks.check_cluster_sizes(np.array([0] * 20 + [1] * 3 + [-1] * 5), min_size=10).passed
    assert checks.check_cluster_sizes(pd.DataFrame({"cluster": [0] * 12 + [1] * 10}), min_size=10).passed


def test_stability_kmeans_contract():
    rng = np.random.default_rng(6)
    x = np.vstack([rng.normal(c, 0.3, size=(30, 2)) for c in ([0, 0], [4, 0], [0, 4])])
    model = an.StabilityKMeans(k_range=range(2, 6), n_seeds=5, random_state=0).fit(x)
    assert model.k_ == 3 and model.scan_["stability_ari"].max() <= 1
    assert np.array_equal(model.predict(x), model.labels_)
    assert np.bincount(model.labels_).tolist() == sorted(np.bincount(model.labels_).tolist(), reverse=True)
    with pytest.raises(ValueError, match="k_range"):
        an.StabilityKMeans(k_range=[1, 2]).fit(x)


def test_sparse_kmeans_weights_the_informative_features():
    rng = np.random.default_rng(7)
    groups = rng.integers(0, 3, 150)
    x = rng.normal(size=(150, 20))
    x[:, :2] += np.array([[0, 0], [4, 0], [0, 4]])[groups]  # structure shared by two features
    model = an.SparseKMeans(n_clusters=3, random_state=0).fit(x)
    assert set(np.argsort(-model.weights_)[:2]) == {0, 1}


def test_png_preview_shrinks_large_images(tmp_path):
    from PIL import Image

    path = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(8).integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(path)
    markdown = an.png_preview_markdown(path, max_width=400, max_bytes=20_000)
    assert len(markdown) < 20_200
