"""The cohort simulator: layout, coordinates, determinism, planted signal and the config's axes.

Signal checks run on small cohorts (400 subjects, 4 background blocks; one CI
grid point of 800 subjects for inter-block LD); one test builds the default
demo and checks the contract sizes.
"""

from __future__ import annotations

from dataclasses import replace

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


def _files(folder) -> list:
    return [p.relative_to(folder) for p in sorted(folder.rglob("*")) if p.is_file()]


def test_same_seed_gives_identical_bytes_and_cli_matches(tmp_path, capsys):
    kwargs = dict(n_subjects=60, n_background_blocks=1, seed=11)
    first = sim.simulate_cohort(tmp_path / "a", **kwargs)
    assert sim.main([str(tmp_path / "b"), "--n-subjects", "60", "--n-background-blocks", "1", "--seed", "11"]) == 0
    assert "wrote 60 subjects x 9 blocks" in capsys.readouterr().out
    sim.simulate_cohort(tmp_path / "d", config=sim.SimulationConfig(**kwargs))
    names = _files(first.out_dir)
    assert any(str(n).startswith("blocks/") for n in names)
    for name in names:
        assert (tmp_path / "b" / name).read_bytes() == (first.out_dir / name).read_bytes(), name
        assert (tmp_path / "d" / name).read_bytes() == (first.out_dir / name).read_bytes(), name
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


# --------------------------------------------------------------------------- the config's axes


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"demography": "Mars_1X00"}, r"demography must be one of \[.*'OutOfAfrica_3G09'"),
        ({"eigenvec_source": "plink"}, r"eigenvec_source must be one of \['panel', 'own', 'none'\]"),
        ({"stratum_strength": -0.1}, "stratum_strength must be in"),
        ({"stratum_strength": 1.5}, "stratum_strength must be in"),  # 0.85 x 1.5 is no probability
        ({"inter_block_ld": 1.5}, r"inter_block_ld must be in \[0, 1\]"),
        ({"inter_block_ld": 0.5, "stratum_strength": 0.0}, "needs planted strata"),
        ({"ld_partners_per_side": 3}, r"ld_partners_per_side must be one of \[1, 2\]"),
        ({"demography": "OutOfAfrica_3G09", "population_fractions": {"ADMIX": 1.0}}, r"\['YRI', 'CEU', 'CHB'\]"),
        ({"weak_block": "IL33"}, r"\['PDE4D_1', 'PDE4D_2'\]"),
    ],
)
def test_config_rejects_bad_values_naming_the_allowed_ones(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sim.SimulationConfig(**kwargs)


def test_config_defaults_are_the_demo_and_unknown_parameters_are_refused(tmp_path):
    config = sim.SimulationConfig()
    assert (config.seed, config.n_subjects, config.n_background_blocks) == (sim.DEMO_SEED, 1200, 24)
    assert (config.demography, config.eigenvec_source, config.stratum_strength, config.inter_block_ld) == (
        "AmericanAdmixture_4B18", "panel", 1.0, 0.0)
    assert config.fractions == sim.DEFAULT_POPULATION_FRACTIONS
    assert sim.SimulationConfig(demography="OutOfAfrica_2T12").fractions == {"AFR": 0.4, "EUR": 0.6}
    with pytest.raises(TypeError, match="n_background_blocks"):
        sim.simulate_cohort(tmp_path / "x", n_backgrond_blocks=3)
    assert not (tmp_path / "x").exists()


def test_stdpopsim_has_every_listed_demography():
    import stdpopsim

    species = stdpopsim.get_species("HomSap")
    for demography in sim.DEMOGRAPHIES.values():
        model = next(m for m in species.demographic_models if m.id in (demography.model_id, *demography.aliases))
        names = [p.name for p in model.populations]
        assert set(demography.populations) <= set(names), demography.model_id
        assert set(demography.default_fractions) == set(demography.populations)


@pytest.fixture(scope="module")
def eigenvec_sources(tmp_path_factory, _one_thread):
    root = tmp_path_factory.mktemp("eigenvec")
    base = sim.SimulationConfig(n_subjects=150, n_background_blocks=2, seed=5, demography="OutOfAfrica_2T12")
    return {source: sim.simulate_cohort(root / source, config=replace(base, eigenvec_source=source))
            for source in sim.EIGENVEC_SOURCES}


def test_eigenvec_source_none_writes_no_eigenvec(eigenvec_sources):
    cohort = eigenvec_sources["none"]
    assert cohort.eigenvec_path is None and not (cohort.out_dir / "pcs.eigenvec").exists()
    assert cohort.truth["eigenvec_source"] == "none"
    # Same seed and other fields: the genotypes and phenotypes do not depend on the eigenvec source.
    for name in _files(cohort.out_dir):
        if name.name != "truth.json":
            for other in ("own", "panel"):
                assert (eigenvec_sources[other].out_dir / name).read_bytes() == (cohort.out_dir / name).read_bytes()


def test_eigenvec_source_own_is_the_pca_of_the_written_genotypes(eigenvec_sources):
    cohort = eigenvec_sources["own"]
    assert cohort.truth["eigenvec_source"] == "own" and "plink --pca" in cohort.truth["eigenvec_note"]
    ids = read_subjects(cohort.out_dir)
    own = read_eigenvec(cohort.eigenvec_path, ids)
    panel = read_eigenvec(eigenvec_sources["panel"].eigenvec_path, ids)
    assert list(own.columns) == list(panel.columns) == ["subject_id", *[f"PC{i}" for i in range(1, 11)]]
    manifest = read_manifest(cohort.out_dir)
    x = np.concatenate([standardize(_block(cohort, b)) for b in manifest["block_id"]], axis=1)
    u = np.linalg.svd(x, full_matrices=False)[0][:, :3]
    for j in range(3):  # the top PCs of all written blocks, up to sign
        assert abs(np.corrcoef(u[:, j], own[f"PC{j + 1}"])[0, 1]) > 0.999
    assert abs(np.corrcoef(own["PC1"], panel["PC1"])[0, 1]) < 0.999  # the panel's PCs are others


def test_own_eigenvec_absorbs_the_planted_strata_and_the_panel_does_not(tmp_path):
    # The failure mode of issue 9: naive PCs of a cohort with few, strongly structured blocks carry the strata.
    cohort = sim.simulate_cohort(tmp_path / "own", n_subjects=400, n_background_blocks=4, seed=7, eigenvec_source="own")
    _, subjects = sim.read_truth(cohort.out_dir)
    pcs = read_eigenvec(cohort.eigenvec_path, subjects["subject_id"]).drop(columns="subject_id").to_numpy()
    assert cross_val_score(LogisticRegression(max_iter=2000), pcs, subjects["stratum"], cv=5).mean() > 0.8


def test_replacing_a_cohort_with_eigenvec_source_none_removes_the_old_eigenvec(tmp_path):
    sim.simulate_cohort(tmp_path / "c", n_subjects=40, n_background_blocks=0, seed=3)
    assert (tmp_path / "c" / "pcs.eigenvec").exists()
    sim.simulate_cohort(tmp_path / "c", n_subjects=40, n_background_blocks=0, seed=3, eigenvec_source="none")
    assert not (tmp_path / "c" / "pcs.eigenvec").exists()


@pytest.fixture(scope="module")
def no_strata(tmp_path_factory, _one_thread):
    # Same seed and size as `small`: same subjects, populations and (latent) stratum draws, none planted.
    folder = tmp_path_factory.mktemp("sim") / "null"
    return sim.simulate_cohort(folder, n_subjects=400, n_background_blocks=4, seed=7, stratum_strength=0.0)


def test_stratum_strength_zero_plants_no_strata(no_strata, small):
    truth = no_strata.truth
    assert truth["n_strata"] == 0 and truth["structure_blocks"] == []
    assert truth["strong_structure_blocks"] == [] and truth["weak_structure_blocks"] == []
    assert truth["structure_weights"] == {} and truth["ld_partner_blocks"] == []
    assert truth["locus_blocks"]["HLA_DP"] in truth["null_blocks"]  # no effect, no structure: a null block
    assert truth["effects"] == small.truth["effects"]  # the planted phenotype effects stay
    _, subjects = sim.read_truth(no_strata.out_dir)
    assert (subjects["stratum"] == 0).all()
    # The strata that `small` planted in these same subjects are not in the null cohort's HLA blocks.
    _, planted = sim.read_truth(small.out_dir)
    assert list(planted["population"]) == list(subjects["population"])
    y = planted["stratum"].to_numpy()
    for locus in ("HLA_DRDQ", "HLA_DP"):
        pcs = _block_pcs(_block(no_strata, truth["locus_blocks"][locus]))
        assert cross_val_score(LogisticRegression(max_iter=2000), pcs, y, cv=5).mean() < 0.45, locus
        pc1 = sim.block_pc1(_block(no_strata, truth["locus_blocks"][locus]))
        assert stats.kruskal(*(pc1[y == s] for s in range(3))).pvalue > 0.001, locus


def test_stratum_strength_scales_the_planted_weights(small):
    config = sim.SimulationConfig(stratum_strength=0.5)
    assert config.structure_weights() == {"HLA_DRDQ": 0.425, "HLA_DP": 0.425, "PDE4D_1": 0.225}
    assert small.truth["structure_weights"][small.truth["locus_blocks"]["HLA_DRDQ"]] == 0.85


def test_ld_partner_blocks_are_the_extended_mhc_neighbours():
    assert sim.ld_partner_blocks(1) == ["chr6_b0024", "chr6_b0027"]
    assert sim.ld_partner_blocks(2) == ["chr6_b0023", "chr6_b0024", "chr6_b0027"]  # b0028 lies beyond 33.5 Mb
    blocks = sim.select_cohort_blocks(4, 1)
    assert list(blocks["role"]).count("ld_partner") == 2
    order = blocks.assign(c=blocks["chrom"].astype(int)).sort_values(["c", "start"])  # genomic order
    assert list(order["block_id"]) == list(blocks["block_id"])


@pytest.fixture(scope="module")
def with_ld(tmp_path_factory, _one_thread):
    # A point of the CI grid: OutOfAfrica_3G09, 800 subjects, inter_block_ld 0.6.
    config = dict(sim.validity_grid("small"))["small_ooa3_ld"]
    return sim.simulate_cohort(tmp_path_factory.mktemp("sim") / "ld", config=config)


def test_inter_block_ld_partners_share_the_stratum_and_are_in_truth(with_ld):
    truth = with_ld.truth
    partners = truth["ld_partner_blocks"]
    assert partners == ["chr6_b0024", "chr6_b0027"]
    assert truth["demographic_model"].endswith("OutOfAfrica_3G09") and truth["populations"] == ["YRI", "CEU", "CHB"]
    assert truth["ld_partner_weight"] == pytest.approx(0.6 * 0.85)
    assert not set(partners) & (set(truth["null_blocks"]) | set(truth["background_blocks"]) | set(truth["structure_blocks"]))
    assert set(partners) <= set(read_manifest(with_ld.out_dir)["block_id"])
    strong_acc = min(_stratum_signal(with_ld, b)[0] for b in truth["strong_structure_blocks"])
    for block in partners:
        acc, _ = _stratum_signal(with_ld, block)
        assert 0.55 < acc < strong_acc, (block, acc, strong_acc)
    assert _stratum_signal(with_ld, truth["background_blocks"][0])[0] < 0.45
    # Correlated with the HLA block through the shared haplotype group: within ancestry (population
    # dummies regressed out), the HLA block's PCs predict the partner's and not a background block's.
    _, subjects = sim.read_truth(with_ld.out_dir)
    ancestry = pd.get_dummies(subjects["population"]).to_numpy(float)

    def within(pcs):
        return pcs - LinearRegression().fit(ancestry, pcs).predict(ancestry)

    hla = within(_block_pcs(_block(with_ld, truth["locus_blocks"]["HLA_DRDQ"]), 5))

    def r2(block):
        target = within(_block_pcs(_block(with_ld, block), 3))
        return np.mean([LinearRegression().fit(hla, t).score(hla, t) for t in target.T])

    partner_r2, background_r2 = [r2(b) for b in partners], [r2(b) for b in truth["background_blocks"][:4]]
    # equal-share groups (the grid's) follow the leading PCs less closely than k-means groups: 0.13-0.19 here
    assert min(partner_r2) > 0.1 and max(background_r2) < 0.05 and min(partner_r2) > 10 * max(background_r2), \
        (partner_r2, background_r2)
    assert with_ld.elapsed_s < 30


def test_single_population_demography(tmp_path):
    cohort = sim.simulate_cohort(tmp_path / "afr", n_subjects=90, n_background_blocks=1, seed=2, demography="Africa_1T12")
    truth, subjects = sim.read_truth(cohort.out_dir)
    assert truth["populations"] == ["AFR"] and truth["population_counts"] == {"AFR": 90}
    assert list(subjects.columns) == ["subject_id", "population", "stratum", "frac_AFR", "oracle_stratum"]
    assert (subjects["frac_AFR"] == 1).all() and truth["n_strata"] == 3
    assert truth["parameters"]["demography"] == "Africa_1T12"


def test_same_seed_and_config_on_new_axes_is_deterministic(tmp_path):
    config = sim.SimulationConfig(n_subjects=60, n_background_blocks=1, seed=13, demography="OutOfAfrica_2T12",
                                  inter_block_ld=0.5, eigenvec_source="own", stratum_strength=0.9)
    first = sim.simulate_cohort(tmp_path / "a", config=config)
    sim.simulate_cohort(tmp_path / "b", config=config)
    for name in _files(first.out_dir):
        assert (tmp_path / "b" / name).read_bytes() == (first.out_dir / name).read_bytes(), name


def test_validity_grid_spans_the_axes_without_the_demo_seed():
    full = sim.validity_grid("full")
    configs = [c for _, c in full]
    assert len(full) >= 8 and len({n for n, _ in full}) == len(full)
    assert len({c.seed for c in configs}) == len(configs) and sim.DEMO_SEED not in {c.seed for c in configs}
    assert len({c.demography for c in configs} - {"AmericanAdmixture_4B18"}) >= 2
    sizes = sorted(c.n_subjects for c in configs)
    assert sizes[0] == 800 and sizes[-1] == 3000 and sum(800 <= n <= 1500 for n in sizes) >= len(sizes) - 1
    assert sum(c.stratum_strength == 0 for c in configs) == 1
    assert any(0 < c.stratum_strength < 1 for c in configs)
    assert sum(c.inter_block_ld > 0 for c in configs) >= 2
    sources = [c.eigenvec_source for c in configs]
    assert set(sources) == set(sim.EIGENVEC_SOURCES) and sources.count("own") >= 3

    small = sim.validity_grid("small")
    assert len(small) == 3 and not {n for n, _ in small} & {n for n, _ in full}
    seeds = {c.seed for _, c in small}
    assert len(seeds) == 3 and sim.DEMO_SEED not in seeds and not seeds & {c.seed for c in configs}
    for _, c in small:
        n_blocks = len(sim.select_cohort_blocks(c.n_background_blocks, c.ld_partners_per_side if c.inter_block_ld else 0))
        assert 700 <= c.n_subjects <= 900 and 16 <= n_blocks <= 24
    assert any(c.eigenvec_source == "own" for _, c in small) and any(c.inter_block_ld > 0 for _, c in small)
    # every grid cohort has equal-share stratum groups; the edge cohort is the weak one at 0.8
    assert all(c.balanced_groups for _, c in full + small) and not sim.SimulationConfig().balanced_groups
    (edge_name, edge), = sim.validity_grid("edge")
    assert edge_name not in {n for n, _ in full} and edge.stratum_strength == 0.8 and edge.balanced_groups
    with pytest.raises(ValueError, match=r"\['full', 'small', 'edge'\]"):
        sim.validity_grid("huge")
