"""Unit tests of the Phase 2 cross-block Transformer, its store and gene annotation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from genoembed_assets.genotypes.errors import CohortInputError
from genoembed_assets.genotypes.genes import annotate_blocks_with_genes
from genoembed_assets.models._cross_block import CROSS_BLOCK_PRESETS, CrossBlockConfig, CrossBlockTransformer, draw_block_mask
from genoembed_assets.models._cross_block_artifacts import plot_block_importance, save_cross_block_result
from genoembed_assets.models._cross_block_training import effective_rank, fit_cross_block, seed_ensemble
from genoembed_assets.models._embedding_store import BlockEmbeddingStore, InMemoryEmbeddingStore, synthetic_block_embeddings
from genoembed_assets.models._importance import (
    bh_qvalues,
    heldout_r2,
    importance_masks,
    ld_neighbours,
    null_permutations,
    top_block_agreement,
)
from genoembed_assets.models._standardize import Standardizer, shared_axes

TINY = CrossBlockConfig(width=16, layers=1, heads=2, epochs=2, patience=2, batch_size=16, seeds=(0, 1), importance_mask_draws=1,
                        importance_permutations=10)
PLANTED = (2, 7, 13)
# Adjacent blocks (same chromosome, 0 Mb apart) sharing a factor with each other only: LD, nothing distal.
LD_PAIR = (16, 17)
NEW_COLUMNS = {"importance_r2", "importance_r2_distal", "importance_z", "importance_p", "importance_p_empirical",
               "importance_q", "ld_only", "attention_mean"}


def _write_store(tmp_path, data, meta):
    """Phase 1 layout on disk: <block_id>/embedding.npy (+ parquet with subject ids)."""
    paths = []
    for b, block in enumerate(meta["block_id"]):
        folder = tmp_path / block
        folder.mkdir()
        np.save(folder / "embedding.npy", data[:, b, :])
        paths.append(folder)
    ids = [f"id{i}" for i in range(data.shape[0])]
    pd.DataFrame({"subject_id": ids}).to_parquet(tmp_path / meta["block_id"][0] / "embedding.parquet")
    return paths


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: the CI box is shared and these models are tiny."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny():
    data, meta, _ = synthetic_block_embeddings(60, 6, 3, strong_blocks=(1, 2), seed=1)
    return data, meta


def _with_ld_pair(data, meta, pair=LD_PAIR, effect=3.0, seed=11):
    """Put ``pair`` side by side on one chromosome and let them share a 3-level factor nobody else carries."""
    rng = np.random.default_rng(seed)
    data, meta = data.copy(), meta.copy()
    a, b = pair
    meta.loc[b, "chrom"] = meta.loc[a, "chrom"]
    meta.loc[b, "start"] = meta.loc[a, "end"]
    meta.loc[b, "end"] = meta.loc[b, "start"] + 1_500_000
    assert (meta["chrom"] == meta.loc[a, "chrom"]).sum() == 2  # nothing else on that chromosome
    factor = rng.integers(0, 3, size=len(data))
    for block in pair:
        means = rng.normal(size=(3, data.shape[2]))
        data[:, block, :] += effect * (means / np.linalg.norm(means, axis=1, keepdims=True))[factor]
    return data, meta


@pytest.fixture(scope="module")
def planted_result():
    # 20 blocks sharing a strong ancestry factor; 3 on different chromosomes also
    # share a hidden stratum; an adjacent pair shares another factor only with each other.
    data, meta, _ = synthetic_block_embeddings(500, 20, 4, strong_blocks=PLANTED, ancestry_effect=1.5, strong_effect=2.5, seed=3)
    data, meta = _with_ld_pair(data, meta)
    # Fixed 40 epochs (patience = epochs): the stratum is learned after a plateau.
    config = CrossBlockConfig(width=32, layers=2, heads=2, dropout=0.0, epochs=40, patience=40, batch_size=32, lr=6e-3, seeds=(0, 1, 2), importance_mask_draws=2)
    return fit_cross_block(InMemoryEmbeddingStore(data, meta), config)


def test_store_reads_files_and_names_subjects(tmp_path, tiny):
    data, meta = tiny
    store = BlockEmbeddingStore(_write_store(tmp_path, data, meta), meta)
    assert (store.n_subjects, store.n_blocks, store.k_max) == (60, 6, 3)
    assert store.subject_ids[0] == "id0"
    np.testing.assert_allclose(store.get([5, 0, 3]), data[[5, 0, 3]])


def test_store_pads_blocks_of_different_latent_size(tmp_path, tiny):
    data, meta = tiny
    paths = _write_store(tmp_path, data, meta)
    np.save(paths[4] / "embedding.npy", data[:, 4, :2])
    store = BlockEmbeddingStore(paths, meta)
    assert store.dims.tolist() == [3, 3, 3, 3, 2, 3]
    assert np.all(store.get(np.arange(4))[:, 4, 2] == 0)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: (p / "embedding.npy").unlink(), "missing"),
        (lambda p: (p / "embedding.npy").write_bytes(b"not an npy"), "cannot read"),
        (lambda p: np.save(p / "embedding.npy", np.zeros((59, 3), np.float32)), "has 59 rows, expected 60"),
    ],
    ids=["missing", "unreadable", "wrong_rows"],
)
def test_store_error_names_the_block(tmp_path, tiny, damage, message):
    data, meta = tiny
    paths = _write_store(tmp_path, data, meta)
    damage(paths[3])
    with pytest.raises(CohortInputError, match=rf"block {meta['block_id'][3]}.*{message}"):
        BlockEmbeddingStore(paths, meta)


def test_store_names_block_with_non_finite_values(tmp_path, tiny):
    data, meta = tiny
    bad = data.copy()
    bad[7, 4, 1] = np.nan
    store = BlockEmbeddingStore(_write_store(tmp_path, bad, meta), meta)
    with pytest.raises(CohortInputError, match=f"block {meta['block_id'][4]}.*NaN"):
        store.block_stats()


def test_shared_axes_find_ancestry_not_the_stratum():
    data, meta, _ = synthetic_block_embeddings(400, 20, 4, strong_blocks=PLANTED, ancestry_effect=1.5, strong_effect=2.5, seed=3)
    store = InMemoryEmbeddingStore(data, meta)
    standardize = Standardizer(store, np.arange(400))
    standardize.shared, _ = shared_axes(standardize(store.get(np.arange(400))), standardize.active, None)
    assert standardize.shared.shape == (80, 2)  # the 2-D ancestry, spread over all blocks
    np.testing.assert_allclose(standardize.shared.T @ standardize.shared, np.eye(2), atol=1e-5)
    # After removal, planted blocks still inform each other and background blocks do not.
    z = standardize(store.get(np.arange(400)))

    def link(a, b):
        return np.abs(np.corrcoef(z[:, a, :].T, z[:, b, :].T)[:4, 4:]).max()

    planted = np.mean([link(a, b) for a, b in [(2, 7), (2, 13), (7, 13)]])
    background = np.mean([link(a, b) for a, b in [(0, 1), (5, 9), (11, 17), (4, 19)]])
    assert planted > 0.3 and background < 0.2


def test_mask_hides_between_one_and_all_but_one():
    mask = draw_block_mask(200, 5, 0.15, 0.3, torch.Generator().manual_seed(0))
    counts = mask.sum(dim=1)
    assert counts.min() >= 1 and counts.max() <= 4


def test_forward_shapes():
    config = CrossBlockConfig(width=16, layers=2, heads=4)
    model = CrossBlockTransformer([3, 2, 3], [0, 5, 22], [1.0, 50.0, 120.0], config)
    x = torch.randn(7, 3, 3)
    out = model(x, torch.zeros(7, 3, dtype=torch.bool), return_attention=True, query_weight=torch.ones(7, 3))
    assert out.token_pred.shape == out.cls_pred.shape == (7, 3, 3)
    assert out.cls.shape == (7, 16)
    assert out.cls_attention.shape == out.received_attention.shape == (7, 2, 4, 3)


def test_fit_tiny_store_shapes_and_finite(tmp_path, tiny):
    data, meta = tiny
    store = BlockEmbeddingStore(_write_store(tmp_path, data, meta), meta)
    result = fit_cross_block(store, TINY, device="cpu")
    # two seeds' 16-dimensional CLS embeddings side by side
    assert result.subject_embeddings.shape == (60, 1 + 2 * 16)
    assert len(result.metrics["seed_scales"]) == 2 and result.metrics["embedding_width"] == 16
    assert result.subject_embeddings["subject_id"].iloc[0] == "id0"
    assert np.isfinite(result.subject_embeddings.drop(columns="subject_id").to_numpy()).all()
    assert result.importance_by_seed.shape == (2, 6)
    np.testing.assert_allclose(result.importance_by_seed.sum(axis=1), 1.0, atol=1e-9)
    table = result.block_importance
    assert {"block_id", "chrom", "start", "end", "importance_mean", "importance_std", "importance_seed_std", "rank"} | NEW_COLUMNS <= set(table)
    # importance on a test split that neither fitted nor early-stopped the models
    assert (result.metrics["n_train"], result.metrics["n_val"], result.metrics["importance_subjects"]) == (45, 6, 9)
    assert table["importance_mean"].sum() == pytest.approx(1.0)
    assert sorted(table["rank"]) == list(range(1, 7))
    assert set(result.curves["seed"]) == {0, 1}
    assert np.isfinite(result.curves[["train_loss", "val_loss"]].to_numpy()).all()
    assert len(result.state_dicts) == 2
    assert np.isfinite([result.rank_stability, result.distance_correlation, result.metrics["final_val_loss"]]).all()


def test_fit_is_reproducible(tiny):
    data, meta = tiny
    store = InMemoryEmbeddingStore(data, meta)
    config = TINY.with_overrides(seeds=(4,))
    first, second = fit_cross_block(store, config), fit_cross_block(store, config)
    pd.testing.assert_frame_equal(first.subject_embeddings, second.subject_embeddings)
    np.testing.assert_array_equal(first.importance_by_seed, second.importance_by_seed)


def test_planted_blocks_rank_top_and_beat_the_null(planted_result):
    table = planted_result.block_importance
    print(table[["block_id", "rank", "importance_r2", "importance_r2_distal", "importance_z", "importance_p", "importance_q", "ld_only"]])
    assert sorted(table.loc[list(PLANTED), "rank"]) == [1, 2, 3]
    assert (table.loc[list(PLANTED), "importance_p"] < 0.01).all()
    assert (table.loc[list(PLANTED), "importance_q"] < 0.05).all()
    assert not table.loc[list(PLANTED), "ld_only"].any()
    # Not carried by one lucky seed: every seed puts the planted blocks above uniform.
    assert (planted_result.importance_by_seed[:, list(PLANTED)].mean(axis=1) > 1.5 / len(table)).all()
    assert planted_result.metrics["shared_factors_removed"] >= 1  # ancestry found and regressed out


def test_null_blocks_roughly_calibrated(planted_result):
    table = planted_result.block_importance
    null = table.drop(index=list(PLANTED) + list(LD_PAIR))
    assert (null["importance_p"] < 0.05).mean() < 0.2
    assert (null["importance_q"] >= 0.05).all()
    assert ((null["importance_p_empirical"] > 0) & (null["importance_p_empirical"] <= 1)).all()


def test_adjacent_pair_is_ld_only(planted_result):
    table = planted_result.block_importance
    pair = table.loc[list(LD_PAIR)]
    # They do predict each other (the full test alone would call them important) ...
    print("pair full p", planted_result.importance.p[list(LD_PAIR)], "distal p", planted_result.importance.p_distal[list(LD_PAIR)])
    assert (planted_result.importance.p[list(LD_PAIR)] < 0.01).all()
    # ... but only through LD: flagged, judged on the distal statistic, not important.
    assert pair["ld_only"].all() and (pair["ld_neighbours"] == 1).all()
    assert (pair["importance_p"] >= 0.05).all() and (pair["importance_q"] >= 0.05).all()
    assert (pair["rank"] > len(PLANTED)).all()
    assert np.allclose(pair["importance_z"], planted_result.importance.z_distal[list(LD_PAIR)])


def test_beats_null_check_fails_without_structure():
    from genoembed_assets.defs.models.cross_block import _beats_null_check, _valid_check

    data, meta, _ = synthetic_block_embeddings(300, 10, 4, strong_blocks=(), seed=5)
    config = CrossBlockConfig(width=16, layers=1, heads=2, dropout=0.0, epochs=8, patience=8, batch_size=32, seeds=(0, 1), importance_mask_draws=2)
    result = fit_cross_block(InMemoryEmbeddingStore(data, meta), config)
    check = _beats_null_check(result.block_importance)
    assert not check.passed
    assert "no block's importance exceeds its permutation null" in check.metadata["message"].value
    assert _valid_check(result.block_importance, result.importance_by_seed).passed
    assert np.isnan(result.metrics["top_block_agreement"])
    broken = result.block_importance.assign(importance_p=np.nan)
    assert not _valid_check(broken, result.importance_by_seed).passed


def test_ld_neighbours_by_chromosome_and_gap():
    meta = pd.DataFrame({"block_id": list("abcde"), "chrom": ["6", "chr6", "6", "5", "6"],
                         "start": [30_000_000, 31_000_000, 33_200_000, 31_000_000, 40_000_000],
                         "end": [31_000_000, 31_500_000, 33_500_000, 31_500_000, 41_000_000]})
    near = ld_neighbours(meta, 2.0)
    assert near[0, 1] and near[1, 2] and not near[0, 2]  # touching; 1.7 Mb apart; 2.2 Mb apart
    assert not near[1, 3]  # same interval, other chromosome
    assert not near[:, 4].any() and not near.diagonal().any() and (near == near.T).all()
    assert not ld_neighbours(meta, 0.0)[1, 2] and ld_neighbours(meta, 0.0)[0, 1]


def test_closed_masks_hide_neighbours_too():
    near = np.zeros((6, 6), bool)
    near[0, 1] = near[1, 0] = True
    plain, closed = importance_masks(300, near, CrossBlockConfig(importance_mask_draws=3), 0)
    assert plain.shape == closed.shape == (3, 300, 6)
    assert (closed >= plain).all()
    assert (closed[..., 0] == closed[..., 1]).all()  # a neighbour pair is always hidden together
    assert (closed[..., 2:] == plain[..., 2:]).all()


def test_null_permutes_each_block_independently():
    perms = null_permutations(50, 4, 3, 0)
    assert perms.shape == (3, 50, 4)
    assert all(sorted(perms[r, :, b]) == list(range(50)) for r in range(3) for b in range(4))
    assert not (perms[0, :, 0] == perms[0, :, 1]).all()


def test_target_only_null_equals_shuffling_the_block():
    """A hidden block's prediction ignores its own value: re-pairing targets is the same as shuffling that block."""
    torch.manual_seed(0)
    model = CrossBlockTransformer([3, 3, 3, 3], [0, 0, 1, 2], [1.0, 2.0, 3.0, 4.0], CrossBlockConfig(width=16, layers=1, heads=2, dropout=0.0))
    x, weight = torch.randn(10, 4, 3), torch.ones(4, 3)
    masks = torch.rand(2, 10, 4) < 0.3
    perms = null_permutations(10, 4, 3, 0)
    r2 = heldout_r2(model, x, weight, [masks], perms)
    with torch.no_grad():
        for r in range(3):
            for b in range(4):
                shuffled = x.clone()
                shuffled[:, b] = x[torch.from_numpy(perms[r][:, b]), b]
                sse = ss = 0.0
                for mask in masks:
                    pred = model(shuffled, mask).token_pred
                    sse += float((((pred - shuffled) ** 2).sum(-1) * mask)[:, b].sum())
                    ss += float(((shuffled**2).sum(-1) * mask)[:, b].sum())
                assert r2[0, r + 1, b] == pytest.approx(1 - sse / ss, abs=1e-5)


def test_seed_agreement_on_the_blocks_that_matter():
    from genoembed_assets.defs.models.cross_block import _stability_check

    by_seed = np.array([[0.5, 0.3, 0.0, 0.2], [0.4, 0.5, 0.1, 0.0], [0.2, 0.1, 0.7, 0.0]])
    significant = np.array([True, True, False, False])
    assert top_block_agreement(by_seed, significant) == pytest.approx((1 + 1 + 0.5) / 3)
    assert np.isnan(top_block_agreement(by_seed, np.zeros(4, bool)))
    # noise order among unimportant blocks does not make the ranking "unstable" ...
    assert _stability_check(0.1, 1.0).passed
    # ... seeds that disagree on the leaders do; without a significant block Spearman decides
    assert not _stability_check(0.9, 0.5).passed
    assert not _stability_check(0.3, float("nan")).passed and _stability_check(0.6, float("nan")).passed


def test_seed_ensemble_weighs_seeds_equally():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 4)) * 10.0, rng.normal(size=(50, 3)) * 0.1
    joined, scales = seed_ensemble([a.astype(np.float32), b.astype(np.float32)])
    assert joined.shape == (50, 7) and joined.dtype == np.float32
    # each seed's block has unit mean variance whatever its own scale, its geometry kept
    assert joined[:, :4].var(axis=0).mean() == pytest.approx(1.0, rel=1e-4)
    assert joined[:, 4:].var(axis=0).mean() == pytest.approx(1.0, rel=1e-4)
    np.testing.assert_allclose(joined[:, 4:], b * scales[1], rtol=1e-5)
    # given the factors (projection), new subjects are scaled exactly as the training ones were
    again, same = seed_ensemble([a[:10].astype(np.float32), b[:10].astype(np.float32)], scales)
    np.testing.assert_array_equal(again, joined[:10])
    assert same == scales
    with pytest.raises(ValueError, match="2 seed scales for 1"):
        seed_ensemble([a.astype(np.float32)], scales)
    # a constant seed (collapsed) is kept as is rather than divided by zero
    const, scales = seed_ensemble([np.ones((5, 2), np.float32)])
    assert np.isfinite(const).all() and scales == [1.0]


def test_bh_qvalues():
    q = bh_qvalues(np.array([0.01, 0.04, 0.03, 0.5]))
    np.testing.assert_allclose(q, [0.04, 0.16 / 3, 0.16 / 3, 0.5], atol=1e-12)
    assert (bh_qvalues(np.array([0.9, 0.95])) <= 1).all()


def test_no_collapse_on_synthetic(planted_result):
    embedding = planted_result.subject_embeddings.drop(columns="subject_id").to_numpy()
    assert effective_rank(embedding) > 4
    assert planted_result.metrics["embedding_dim_variance_min"] > 0


def test_importance_sums_to_one_per_seed(planted_result):
    np.testing.assert_allclose(planted_result.importance_by_seed.sum(axis=1), 1.0, atol=1e-9)
    assert -1.0 <= planted_result.rank_stability <= 1.0


def test_save_and_plot(tmp_path, planted_result):
    written = save_cross_block_result(planted_result, tmp_path)
    for name in ("subject_embeddings.parquet", "block_importance.parquet", "curve.csv", "metrics.json", "model_seed0.pt", "model_seed2.pt"):
        assert (tmp_path / name).exists(), name
    assert set(written) >= {"subject_embeddings", "block_importance", "metrics"}
    state = torch.load(tmp_path / "model_seed0.pt", weights_only=True)
    assert "cls_token" in state
    assert not list(tmp_path.glob(".*.tmp"))  # nothing half-written left behind
    png = plot_block_importance(planted_result.block_importance, tmp_path / "block_importance.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_effective_rank_bounds():
    rng = np.random.default_rng(0)
    assert effective_rank(np.outer(rng.normal(size=50), rng.normal(size=8))) == pytest.approx(1.0, abs=1e-6)
    assert effective_rank(rng.normal(size=(2000, 8))) > 7.5


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"width": 30, "heads": 4}, "divisible by heads"),
        ({"layers": 0}, "layers must be a positive integer"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"mask_fraction_min": 0.4, "mask_fraction_max": 0.2}, "mask_fraction_min/max"),
        ({"mask_fraction_max": 1.0}, "mask_fraction_min/max"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"val_fraction": 0.7}, "val_fraction"),
        ({"seeds": ()}, "seeds must be a non-empty"),
        ({"seeds": (1, 1)}, "distinct"),
        ({"shared_factors": -2}, "shared_factors"),
        ({"importance_permutations": 1}, "importance_permutations"),
        ({"importance_ld_window_mb": -1.0}, "importance_ld_window_mb"),
        ({"importance_fraction": 0.0}, "importance_fraction must be in"),
        ({"val_fraction": 0.3, "importance_fraction": 0.4}, "must be <= 0.6"),
    ],
)
def test_bad_config_raises(overrides, match):
    with pytest.raises(ValueError, match=match):
        CrossBlockConfig(**overrides).validate()


def test_unknown_override_and_presets():
    with pytest.raises(ValueError, match="unknown CrossBlockConfig fields"):
        CrossBlockConfig().with_overrides(depth=3)
    assert set(CROSS_BLOCK_PRESETS) == {"fast", "balanced", "genome", "thorough"}
    for config in CROSS_BLOCK_PRESETS.values():
        config.validate()


def test_fit_needs_two_blocks(tiny):
    data, meta = tiny
    with pytest.raises(ValueError, match="at least 2 blocks"):
        fit_cross_block(InMemoryEmbeddingStore(data[:, :1], meta.iloc[:1]), TINY)


def test_genes_hg19_names_and_hg38_ids():
    blocks = pd.DataFrame({
        "block_id": ["hla", "pde4d", "empty"],
        "chrom": ["6", "chr5", "1"],
        "start": [32_400_000, 58_000_000, 1],
        "end": [32_700_000, 59_000_000, 2],
    })
    hg19 = annotate_blocks_with_genes(blocks, "hg19")
    hla = hg19.iloc[0].split(",")
    assert "HLA-DRB1" in hla and len(set(hla)) == len(hla)
    assert "PDE4D" in hg19.iloc[1].split(",")
    assert hg19.iloc[2] == "" and hg19.name == "genes"
    hg38 = annotate_blocks_with_genes(blocks, "hg38")
    assert hg38.iloc[0].startswith("ENSG")
    with pytest.raises(ValueError, match="unknown genome build"):
        annotate_blocks_with_genes(blocks, "hg17")
