"""The simulator's stratum oracle and equal-share haplotype groups (issue 9's ARI ceiling).

The validity grid scores clusters against what an oracle that sees every
planted haplotype's group can reach. These tests check that the recorded
likelihood is the one the draws follow, that equal-share groups are equal,
and that the ceiling written to ``truth.json`` is the ARI of the oracle's labels.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from genoembed_assets.genotypes.simulate import SimulationConfig, simulate_cohort
from genoembed_assets.genotypes.simulate.haplotypes import (
    N_STRATA,
    Subjects,
    _balance,
    _draw_haplotypes,
    stratum_loglik,
)


def _subjects(n: int, sources: tuple[str, ...], rng) -> Subjects:
    fractions = np.zeros((n, len(sources)))
    fractions[np.arange(n), rng.integers(0, len(sources), n)] = 1.0
    return Subjects(np.array([f"S{i}" for i in range(n)], dtype=object), np.array(["x"] * n, dtype=object),
                    np.arange(n) % N_STRATA, fractions)


def test_stratum_loglik_is_the_likelihood_the_draws_follow():
    rng = np.random.default_rng(3)
    sources = ("AFR", "EUR")
    hap_pop = np.array(["AFR"] * 300 + ["EUR"] * 300, dtype=object)
    # unequal groups, and EUR has no haplotype of group 1: its stratum-1 subjects draw from the whole pool
    groups = np.concatenate([rng.choice(3, 300, p=[0.6, 0.1, 0.3]), rng.choice([0, 2], 300, p=[0.2, 0.8])])
    subjects = _subjects(30_000, sources, rng)
    weight = 0.5
    chosen = _draw_haplotypes(subjects, sources, hap_pop, groups, weight, rng)
    loglik = stratum_loglik(groups, hap_pop, chosen[:, :1], sources, weight)  # one haplotype per subject
    g, p = groups[chosen[:, 0]], hap_pop[chosen[:, 0]]
    for pop in sources:
        for s in range(N_STRATA):
            rows = (p == pop) & (subjects.stratum == s)
            empirical = np.bincount(g[rows], minlength=N_STRATA) / rows.sum()
            # the model's P(group | stratum s, population) at one row per observed group
            model = np.array([np.exp(loglik[rows & (g == k), s][0]) if (rows & (g == k)).any() else 0.0
                              for k in range(N_STRATA)])
            np.testing.assert_allclose(empirical, model, atol=0.02, err_msg=f"{pop} stratum {s}")


def test_balanced_groups_split_every_population_in_equal_thirds_near_their_centres():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0, 0], [8, 0, 0], [0, 8, 0]])
    sizes = {"A": (60, 30, 10), "B": (10, 10, 41)}  # unequal k-means groups, as one genealogy can give
    labels = np.concatenate([np.repeat(np.arange(N_STRATA), n) for n in sizes.values()])
    pop = np.concatenate([[name] * sum(n) for name, n in sizes.items()]).astype(object)
    scores = centres[labels] + rng.normal(0, 1, (len(labels), 3))
    out = _balance(scores, labels, pop)
    for name, n in sizes.items():
        counts = np.bincount(out[pop == name], minlength=N_STRATA)
        assert counts.sum() == sum(n) and counts.max() - counts.min() <= 1, (name, counts)
        # only the haplotypes of an oversized group move; the groups short of their quota keep theirs
        for group in np.flatnonzero(np.array(n) <= sum(n) // N_STRATA):
            assert (out[(pop == name) & (labels == group)] == group).all(), (name, group)


@pytest.fixture(scope="module")
def weak_pair(tmp_path_factory):
    """The same weak-strata cohort with k-means groups and with equal-share groups."""
    root = tmp_path_factory.mktemp("oracle")
    config = SimulationConfig(n_subjects=600, n_background_blocks=2, seed=9105, stratum_strength=0.8)
    return {balanced: simulate_cohort(root / str(balanced), config=dataclasses.replace(config, balanced_groups=balanced))
            for balanced in (False, True)}


def test_truth_records_the_oracle_and_its_ari(weak_pair):
    for cohort in weak_pair.values():
        subjects = pd.read_csv(cohort.truth_subjects_path, sep="\t")
        ari = adjusted_rand_score(subjects["stratum"], subjects["oracle_stratum"])
        assert cohort.truth["stratum_ari_oracle"] == pytest.approx(ari)
        assert 0.3 < ari < 1.0  # strength 0.8: many subjects drew no haplotype of their own group


def test_equal_share_groups_change_only_the_structure_blocks(weak_pair):
    plain, balanced = weak_pair[False], weak_pair[True]
    structure = set(plain.truth["structure_blocks"])
    for path in sorted((plain.out_dir / "blocks").glob("*.npy")):
        same = np.array_equal(np.load(path), np.load(balanced.out_dir / "blocks" / path.name))
        assert same == (path.stem not in structure), path.stem


def test_no_strata_no_oracle(tmp_path):
    cohort = simulate_cohort(tmp_path / "c", n_subjects=200, n_background_blocks=1, stratum_strength=0.0, seed=5)
    assert cohort.truth["stratum_ari_oracle"] is None
    assert "oracle_stratum" not in pd.read_csv(cohort.truth_subjects_path, sep="\t").columns
