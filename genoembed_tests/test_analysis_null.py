"""Analyses against a null: discrete clusters only where there are some, leave-region-out without double dipping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genoembed_assets import analysis as an
from genoembed_assets.analysis.clusters import StabilityKMeans


def _frame(values, prefix="e"):
    out = pd.DataFrame(values, columns=[f"{prefix}{i}" for i in range(values.shape[1])])
    out.insert(0, "subject_id", [f"s{i}" for i in range(len(values))])
    return out


@pytest.mark.parametrize("shape", ["gaussian", "elongated", "gradient"])
def test_no_discrete_clusters_in_a_blob_or_a_gradient(shape):
    rng = np.random.default_rng(3)
    n = 600
    x = rng.normal(size=(n, 6))
    if shape == "elongated":
        x[:, 0] *= 4
    if shape == "gradient":  # a continuous cline: uniform along one axis, as admixture fractions are
        x[:, 0] = rng.uniform(-3, 3, n)
    result = an.cluster_subjects(_frame(x), adjust_for_ancestry=False, k_range=range(2, 6), n_seeds=4, n_null=6)
    s = result.summary
    assert s["k"] == 1 and not s["discrete_clusters"] and s["verdict"].startswith("no discrete clusters")
    assert set(result.table["cluster"]) == {0}
    assert len(s["continuous_axes"]) == 3 and s["continuous_axes"][0] > s["continuous_axes"][2]
    if shape != "gaussian":  # a stable 2-way cut exists: stability alone would have reported it
        assert result.tables["k_scan"].set_index("k").loc[2, "stability_ari"] > 0.8


def test_three_planted_clusters_are_found_against_the_null():
    rng = np.random.default_rng(4)
    labels = np.repeat([0, 1, 2], 200)
    centres = np.array([[0, 0], [5, 0], [2.5, 4.3]])
    x = rng.normal(size=(600, 6))
    x[:, :2] += centres[labels]
    model = StabilityKMeans(k_range=range(2, 6), n_seeds=4, n_null=6, random_state=0).fit(x)
    assert model.k_ == 3 and model.discrete_
    scan = model.scan_.set_index("k")
    assert scan.loc[3, "silhouette"] > scan.loc[3, "null_silhouette_max"] and scan.loc[3, "silhouette_z"] > 4
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(labels, model.labels_) > 0.9


def _blocks(n_blocks):
    return pd.DataFrame({"block_id": [f"chr{i + 1}_b0" for i in range(n_blocks)], "chrom": [str(i + 1) for i in range(n_blocks)],
                         "start": 1_000_000, "end": 2_000_000})


def test_leave_region_out_split_finds_the_block_that_shares_the_regions_structure():
    rng = np.random.default_rng(5)
    n, n_blocks = 800, 20
    stratum = rng.integers(0, 3, n)
    x = rng.normal(size=(n, n_blocks))
    x[:, 0] += 3.0 * (stratum - 1)  # the region left out carries the stratum strongly
    x[:, 7] += 0.6 * (stratum - 1)  # one block elsewhere weakly
    blocks = _blocks(n_blocks)
    features = _frame(x, prefix="z").rename(columns={f"z{i}": b for i, b in enumerate(blocks["block_id"])})
    labels = pd.DataFrame({"subject_id": features["subject_id"], "cluster": stratum})
    result = an.leave_region_out(features, blocks, labels, regions=["chr1:1-3000000"], method="split")
    s = result.summary
    assert s["dropped_blocks"] == ["chr1_b0"] and s["method"] == "split" and s["reference"] == "dropped region"
    assert s["leading_block"] == "chr8_b0" and s["leading_q"] < 1e-4 and s["structure_remains"]
    # the other blocks' p-values are those of independent data
    others = result.table[result.table["feature"] != "chr8_b0"]
    assert (others["q"] > 0.05).all() and others["p"].median() > 0.2


def test_leave_region_out_split_finds_nothing_in_noise_where_guided_double_dips():
    rng = np.random.default_rng(6)
    n, n_blocks = 600, 20
    blocks = _blocks(n_blocks)
    x = rng.normal(size=(n, n_blocks))
    features = _frame(x, prefix="z").rename(columns={f"z{i}": b for i, b in enumerate(blocks["block_id"])})
    # old clusters made from the very features tested: circular by construction
    old = (x[:, 3] > 0).astype(int)
    labels = pd.DataFrame({"subject_id": features["subject_id"], "cluster": old})
    split = an.leave_region_out(features, blocks, labels, regions=["chr1:1-3000000"], method="split").summary
    guided = an.leave_region_out(features, blocks, labels, regions=["chr1:1-3000000"], method="guided").summary
    assert guided["structure_remains"] and guided["leading_block"] == "chr4_b0"  # the block that made the old clusters
    assert not split["structure_remains"] and split["leading_q"] > 0.05


def test_naming_the_mhc_drops_the_extended_mhc():
    blocks = pd.DataFrame({"block_id": ["chr6_a", "chr6_b", "chr6_c", "chr5_d", "chr7_e"], "chrom": ["6", "6", "6", "5", "7"],
                           "start": [26_000_000, 32_000_000, 40_000_000, 58_000_000, 1_000_000],
                           "end": [27_000_000, 33_000_000, 41_000_000, 59_000_000, 2_000_000]})
    rng = np.random.default_rng(7)
    features = _frame(rng.normal(size=(200, 5)), prefix="z").rename(columns={f"z{i}": b for i, b in enumerate(blocks["block_id"])})
    labels = pd.DataFrame({"subject_id": features["subject_id"], "cluster": rng.integers(0, 2, 200)})
    s = an.leave_region_out(features, blocks, labels, regions=["MHC"]).summary
    # chr6_a (26-27 Mb) lies outside the classical MHC (28.5-33.4 Mb) but inside the extended one
    assert s["dropped_blocks"] == ["chr6_a", "chr6_b"]
    assert any("extended MHC" in r for r in s["regions"])
    narrow = an.leave_region_out(features, blocks, labels, regions=["MHC"], expand_mhc=False).summary
    assert narrow["dropped_blocks"] == ["chr6_b"]
