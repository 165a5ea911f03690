"""The demo-cohort simulator: layout, coordinates, determinism and planted signal.

Signal checks run on a small cohort (400 subjects, 4 background blocks); one
test builds the default demo and checks the contract sizes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.cluster import KMeans
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import cross_val_score
from threadpoolctl import threadpool_limits

from genoembed_assets.genotypes import simulate as sim
from genoembed_assets.genotypes.simulate.pca import standardize
from genoembed_assets.genotypes.layout import (
    load_block,
    read_cohort_settings,
    read_eigenvec,
    read_manifest,
    read_phenotypes,
    read_subjects,
)

# Real hg19 spans of the LDetect EUR blocks (shared/data/README.md known facts).
KNOWN_SPANS = {
    "HLA_DRDQ": ("6", 31_571_218, 32_682_664),
    "HLA_DP": ("6", 32_682_664, 33_236_497),
    "17q21": ("17", 36_809_344, 38_877_404),
}
TRUTH_KEYS = {
    "seed", "n_subjects", "build", "n_strata", "strong_structure_blocks", "weak_structure_blocks",
    "structure_blocks", "background_blocks", "locus_blocks", "effects", "null_blocks", "populations",
}
TRAITS = ("ige", "eosinophils", "fev1", "exacerbations")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # OpenMP/BLAS threads spin-wait on a shared machine: k-means took 7 s instead of 0.1 s.
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def small(tmp_path_factory, _one_thread):
    folder = tmp_path_factory.mktemp("sim") / "small"
    return sim.simulate_cohort(folder, n_subjects=400, n_background_blocks=4, seed=7)


def _block(cohort: sim.SimulatedCohort, block_id: str) -> np.ndarray:
    manifest = read_manifest(cohort.out_dir).set_index("block_id")
    row = dict(manifest.loc[block_id], block_id=block_id)
    return load_block(cohort.out_dir, row, cohort.truth["n_subjects"])


def _block_pcs(genotypes: np.ndarray, k: int = 10) -> np.ndarray:
    x = standardize(genotypes)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    return u[:, :k] * s[:k]


def _stratum_signal(cohort: sim.SimulatedCohort, block_id: str) -> tuple[float, float]:
    """(cross-validated accuracy of a logistic model on block PCs, k-means ARI)."""
    _, subjects = sim.read_truth(cohort.out_dir)
    pcs = _block_pcs(_block(cohort, block_id))
    y = subjects["stratum"].to_numpy()
    acc = cross_val_score(LogisticRegression(max_iter=2000), pcs, y, cv=5).mean()
    ari = adjusted_rand_score(y, KMeans(3, n_init=10, random_state=0).fit_predict(pcs[:, :5]))
    return float(acc), float(ari)


def test_select_demo_blocks_uses_real_locus_blocks():
    blocks = sim.select_demo_blocks(24)
    loci = blocks[blocks["locus"] != ""].set_index("locus")
    assert sorted(loci.index) == sorted(sim.LOCUS_KEYS)
    for locus, (chrom, start, end) in KNOWN_SPANS.items():
        assert tuple(loci.loc[locus, ["chrom", "start", "end"]]) == (chrom, start, end)
    assert loci.loc["HLA_DRDQ", "block_id"] == "chr6_b0025"
    pde = loci.loc[["PDE4D_1", "PDE4D_2"]]
    assert (pde["chrom"] == "5").all() and pde["end"].iloc[0] == pde["start"].iloc[1]  # the two adjacent blocks
    background = blocks[blocks["locus"] == ""]
    assert len(background) == 24 and background["chrom"].nunique() >= 15  # spread over the genome
    mhc_overlap = (background["chrom"] == "6") & (background["end"] > 28_477_797) & (background["start"] < 33_448_354)
    assert not mhc_overlap.any() and (background["chrom"] != "X").all()
    # Seed-independent and nested choice keeps block keys shared across cohorts.
    assert sim.select_demo_blocks(24).equals(blocks)


def test_default_demo_meets_contract(tmp_path):
    cohort = sim.simulate_cohort(tmp_path / "demo")
    truth = cohort.truth
    assert TRUTH_KEYS <= set(truth)
    assert truth["n_subjects"] >= 1000 and truth["build"] == "hg19" and truth["n_strata"] == 3
    assert len(truth["background_blocks"]) >= 20
    assert set(truth["populations"]) >= {"AFR", "EUR", "ASIA", "ADMIX"}
    assert truth["structure_blocks"] == truth["strong_structure_blocks"] + truth["weak_structure_blocks"]
    assert truth["strong_structure_blocks"] == [truth["locus_blocks"]["HLA_DRDQ"], truth["locus_blocks"]["HLA_DP"]]
    assert truth["weak_structure_blocks"][0] in (truth["locus_blocks"]["PDE4D_1"], truth["locus_blocks"]["PDE4D_2"])
    assert not set(truth["null_blocks"]) & ({e["block"] for e in truth["effects"]} | set(truth["structure_blocks"]))

    manifest = read_manifest(cohort.out_dir).set_index("block_id")
    assert len(manifest) == 8 + len(truth["background_blocks"])
    for locus, (chrom, start, end) in KNOWN_SPANS.items():
        assert tuple(manifest.loc[truth["locus_blocks"][locus], ["chrom", "start", "end"]]) == (chrom, start, end)
    assert set(truth["locus_blocks"].values()) <= set(manifest.index)
    ids = read_subjects(cohort.out_dir)
    assert len(ids) == truth["n_subjects"]
    n_missing = 0
    for block_id, row in manifest.iterrows():
        g = load_block(cohort.out_dir, dict(row, block_id=block_id), len(ids))
        assert g.dtype == np.int8 and set(np.unique(g)) <= {-1, 0, 1, 2}
        assert 40 <= g.shape[1] <= 160
        n_missing += int((g < 0).sum())
    assert n_missing > 0  # missingness code paths get exercised

    _, subjects = sim.read_truth(cohort.out_dir)
    assert list(subjects["subject_id"]) == list(ids)
    assert set(subjects["population"]) == {"AFR", "EUR", "ASIA", "ADMIX"}
    fractions = subjects[["frac_AFR", "frac_EUR", "frac_ASIA"]].to_numpy()
    np.testing.assert_allclose(fractions.sum(axis=1), 1.0, atol=1e-5)
    admixed = (subjects["population"] == "ADMIX").to_numpy()
    assert (fractions[admixed].max(axis=1) < 1).all() and (fractions[~admixed].max(axis=1) == 1).all()
    phenotypes = read_phenotypes(cohort.phenotypes_path, ids)
    assert list(phenotypes.columns) == ["subject_id", "age", "sex", *TRAITS]
    assert (phenotypes["ige"] > 0).all() and (phenotypes["eosinophils"] > 0).all()
    assert set(phenotypes["sex"]) == {0, 1} and (phenotypes["exacerbations"] >= 0).all()
    eigenvec = read_eigenvec(cohort.eigenvec_path, ids)
    assert [f"PC{i}" for i in range(1, 11)] == list(eigenvec.columns[1:])
    assert read_cohort_settings(cohort.out_dir)["build"] == "hg19"


def test_same_seed_gives_identical_bytes_and_cli_matches(tmp_path, capsys):
    kwargs = dict(n_subjects=60, n_background_blocks=1, seed=11)
    first = sim.simulate_cohort(tmp_path / "a", **kwargs)
    assert sim.main([str(tmp_path / "b"), "--n-subjects", "60", "--n-background-blocks", "1", "--seed", "11"]) == 0
    assert "wrote 60 subjects x 9 blocks" in capsys.readouterr().out
    names = [p.relative_to(first.out_dir) for p in sorted(first.out_dir.rglob("*")) if p.is_file()]
    assert any(str(n).startswith("blocks/") for n in names)
    for name in names:
        assert (tmp_path / "b" / name).read_bytes() == (first.out_dir / name).read_bytes(), name
    other = sim.simulate_cohort(tmp_path / "c", **{**kwargs, "seed": 12})
    block = first.truth["locus_blocks"]["HLA_DRDQ"]
    assert not np.array_equal(_block(first, block), _block(other, block))


def test_refuses_to_replace_a_cohort_that_was_not_simulated(tmp_path):
    first = sim.simulate_cohort(tmp_path / "c", n_subjects=40, n_background_blocks=0, seed=3)
    sim.simulate_cohort(tmp_path / "c", n_subjects=40, n_background_blocks=0, seed=3)  # simulated: replaced
    first.truth_path.unlink()
    with pytest.raises(FileExistsError, match="overwrite"):
        sim.simulate_cohort(tmp_path / "c", n_subjects=40, n_background_blocks=0, seed=3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_subjects": 10}, "n_subjects"),
        ({"missing_rate": 0.7}, "missing_rate"),
        ({"weak_block": "IL33"}, "weak_block"),
        ({"population_fractions": {"MARS": 1.0}}, "population_fractions"),
        ({"n_background_blocks": 10_000}, "n_background"),
    ],
)
def test_rejects_bad_parameters(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sim.simulate_cohort(tmp_path / "x", **kwargs)


def test_hla_blocks_carry_strong_stratum_structure_and_background_none(small):
    truth = small.truth
    for block in truth["strong_structure_blocks"]:
        acc, ari = _stratum_signal(small, block)
        assert acc > 0.8 and ari > 0.3, (block, acc, ari)
    for block in truth["background_blocks"][:2]:
        acc, ari = _stratum_signal(small, block)
        assert acc < 0.45 and ari < 0.05, (block, acc, ari)


def test_pde4d_block_carries_weaker_but_detectable_structure(small):
    truth = small.truth
    weak_acc, weak_ari = _stratum_signal(small, truth["weak_structure_blocks"][0])
    strong_acc, _ = _stratum_signal(small, truth["locus_blocks"]["HLA_DRDQ"])
    other = [b for b in (truth["locus_blocks"]["PDE4D_1"], truth["locus_blocks"]["PDE4D_2"])
             if b not in truth["weak_structure_blocks"]][0]
    other_acc, _ = _stratum_signal(small, other)
    assert 0.45 < weak_acc < strong_acc - 0.1, (weak_acc, strong_acc)
    assert other_acc < 0.45 and weak_ari > 0.05


def test_strata_are_independent_of_population(small):
    _, subjects = sim.read_truth(small.out_dir)
    table = pd.crosstab(subjects["population"], subjects["stratum"])
    chi2, p, _, _ = stats.chi2_contingency(table)
    cramers_v = np.sqrt(chi2 / (table.to_numpy().sum() * (min(table.shape) - 1)))
    assert p > 0.01 and cramers_v < 0.1
    # Nor do the ancestry PCs predict the stratum.
    pcs = read_eigenvec(small.eigenvec_path, subjects["subject_id"]).drop(columns="subject_id").to_numpy()
    acc = cross_val_score(LogisticRegression(max_iter=2000), pcs, subjects["stratum"], cv=5).mean()
    assert acc < 0.45


def test_eigenvec_captures_ancestry(small):
    _, subjects = sim.read_truth(small.out_dir)
    pcs = read_eigenvec(small.eigenvec_path, subjects["subject_id"]).drop(columns="subject_id").to_numpy()
    for col in ("frac_AFR", "frac_EUR", "frac_ASIA"):
        assert LinearRegression().fit(pcs, subjects[col]).score(pcs, subjects[col]) > 0.95


def _association_t(small, block_id: str, trait: str) -> tuple[float, float]:
    """t and p of a block's PC1 on a trait, adjusted for PCs 1-10, age and sex."""
    import statsmodels.api as sm

    ids = read_subjects(small.out_dir)
    phen = read_phenotypes(small.phenotypes_path, ids)
    pcs = read_eigenvec(small.eigenvec_path, ids).drop(columns="subject_id").to_numpy()
    y = phen[trait].to_numpy(float)
    y = np.log(y) if trait in ("ige", "eosinophils") else np.log1p(y) if trait == "exacerbations" else y
    z = sim.block_pc1(_block(small, block_id))
    design = sm.add_constant(np.column_stack([z, pcs, phen["age"], phen["sex"]]))
    fit = sm.OLS(y, design).fit()
    return float(fit.tvalues[1]), float(fit.pvalues[1])


def test_planted_phenotype_effects_are_recovered_and_ige_is_strongest(small):
    truth = small.truth
    planted = {(e["block"], e["phenotype"]): e for e in truth["effects"]}
    assert {e["phenotype"] for e in truth["effects"]} == set(TRAITS)
    results = {key: _association_t(small, *key) for key in planted}
    for key, (t, p) in results.items():
        assert p < 1e-4, (key, t, p)
        assert np.sign(t) == np.sign(planted[key]["beta"]), key
    strongest = max(results, key=lambda k: abs(results[k][0]))
    assert strongest == (truth["locus_blocks"]["HLA_DRDQ"], "ige")
    assert max(planted.values(), key=lambda e: abs(e["beta_std"]))["phenotype"] == "ige"


def test_null_blocks_show_no_association_after_adjustment(small):
    # Ancestry shifts the traits, so this also checks that the eigenvec absorbs the confounding.
    pvalues = [_association_t(small, b, t)[1] for b in small.truth["null_blocks"] for t in TRAITS]
    assert min(pvalues) > 1e-3 and np.mean(np.array(pvalues) < 0.05) < 0.25
