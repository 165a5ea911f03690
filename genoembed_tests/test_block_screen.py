"""The linear cross-block screen that focuses genome-wide Phase 2 training (models/_screen.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genoembed_assets.models._cross_block import CROSS_BLOCK_PRESETS, DENSE_ATTENTION_MAX_BLOCKS, CrossBlockConfig
from genoembed_assets.models._embedding_store import synthetic_block_embeddings
from genoembed_assets.models._importance import ld_neighbours
from genoembed_assets.models._screen import cross_block_screen, focus_weights


def _meta(n_blocks: int, spacing: float = 5e6) -> pd.DataFrame:
    """One chromosome, blocks ``spacing`` apart (no LD neighbours at the default 2 Mb window)."""
    start = np.arange(n_blocks) * spacing
    return pd.DataFrame({"block_id": [f"b{i:04d}" for i in range(n_blocks)], "chrom": "1",
                         "start": start.astype(int), "end": (start + 1e6).astype(int)})


def test_screen_finds_the_planted_blocks_and_little_else():
    data, _, _ = synthetic_block_embeddings(800, 120, 4, strong_blocks=(5, 40, 90), ancestry_effect=0.0, seed=3)
    meta = _meta(120)
    screen = cross_block_screen(data, np.ones((120, 4)), ld_neighbours(meta, 2.0))
    assert set(np.flatnonzero(screen.candidates)) == {5, 40, 90}
    assert screen.partner[5] in (40, 90) and screen.z[5] > 10
    table = screen.table(meta["block_id"])
    assert list(table.columns) == ["block_id", "screen_z", "screen_p", "screen_q", "screen_partner"]
    assert table.loc[40, "screen_partner"] in ("b0005", "b0090")


def test_screen_is_calibrated_when_dimensions_correlate_within_blocks():
    # Independent blocks whose 6 dimensions are strongly correlated within each block
    # (as ridge-whitened VAE latents can be): the pair statistic must stay chi-square.
    rng = np.random.default_rng(0)
    n, n_blocks, k = 600, 200, 6
    mix = rng.normal(size=(n_blocks, k, k)) + 3.0 * np.eye(k)[None] + 2.0
    x = np.einsum("nbk,bkj->nbj", rng.normal(size=(n, n_blocks, k)), mix).astype(np.float32)
    screen = cross_block_screen(x, np.ones((n_blocks, k)), np.zeros((n_blocks, n_blocks), bool))
    assert screen.inflation < 1.1
    assert (screen.p < 0.05).mean() <= 0.12, f"{(screen.p < 0.05).mean():.2f} of null blocks at p < 0.05"
    assert screen.candidates.sum() <= 2


def test_screen_skips_ld_neighbours_and_inactive_blocks():
    rng = np.random.default_rng(1)
    n, n_blocks, k = 500, 40, 3
    x = rng.normal(size=(n, n_blocks, k)).astype(np.float32)
    x[:, 11] = x[:, 10] + 0.3 * rng.normal(size=(n, k))  # adjacent pair sharing everything (LD)
    meta = _meta(n_blocks)
    meta.loc[11, ["start", "end"]] = [meta.loc[10, "end"], meta.loc[10, "end"] + 1_000_000]
    active = np.ones((n_blocks, k))
    active[30] = 0  # a block whose latents all collapsed
    screen = cross_block_screen(x, active, ld_neighbours(meta, 2.0))
    assert not screen.candidates[[10, 11]].any(), "adjacent blocks that only share LD are not candidates"
    assert screen.p[30] == 1.0 and screen.partner[30] == -1


def test_focus_weights_balance_candidates_against_the_rest():
    data, _, _ = synthetic_block_embeddings(600, 60, 4, strong_blocks=(2, 30), ancestry_effect=0.0, seed=5)
    screen = cross_block_screen(data, np.ones((60, 4)), np.zeros((60, 60), bool))
    weights = focus_weights(screen)
    cand = screen.candidates
    assert cand.sum() == 2
    assert weights[~cand].tolist() == [1.0] * 58 and np.isclose(weights[cand].sum(), weights[~cand].sum())
    screen.q[:] = 1.0  # no candidate: training unchanged
    assert (focus_weights(screen) == 1.0).all()


def test_focus_is_automatic_only_where_attention_is_windowed():
    config = CROSS_BLOCK_PRESETS["genome"]
    assert not config.focus_for(30) and not config.focus_for(DENSE_ATTENTION_MAX_BLOCKS)
    assert config.focus_for(1703)
    assert config.with_overrides(screen_focus=1).focus_for(30)
    assert not config.with_overrides(screen_focus=0).focus_for(1703)
    with pytest.raises(ValueError, match="screen_focus must be -1"):
        CrossBlockConfig(screen_focus=2).validate()


def test_importance_head_is_best_only_where_training_focuses():
    config = CROSS_BLOCK_PRESETS["genome"]
    assert config.head_for(30) == "token" and config.head_for(1703) == "best"
    assert config.with_overrides(importance_head="best").head_for(30) == "best"
    assert config.with_overrides(importance_head="token").head_for(1703) == "token"
    with pytest.raises(ValueError, match="importance_head must be"):
        CrossBlockConfig(importance_head="cls").validate()


def test_best_head_keeps_the_null_calibrated_and_records_the_heads():
    import torch

    from genoembed_assets.models._cross_block_training import fit_cross_block
    from genoembed_assets.models._embedding_store import InMemoryEmbeddingStore

    torch.set_num_threads(1)
    data, meta, _ = synthetic_block_embeddings(400, 12, 4, strong_blocks=(), seed=7)
    config = CrossBlockConfig(width=16, layers=1, heads=2, dropout=0.0, epochs=8, patience=8, batch_size=32, seeds=(0, 1),
                              importance_mask_draws=2, screen_focus=1, importance_head="best")
    result = fit_cross_block(InMemoryEmbeddingStore(data, meta), config)
    table = result.block_importance
    assert result.metrics["importance_head"] == "best" and result.metrics["screen"]["focus"]
    assert table["importance_cls_head"].isin([0.0, 0.5, 1.0]).all()
    # Choosing the better head on validation subjects must not make null blocks significant.
    assert (table["importance_q"] >= 0.05).all()
    assert (table["importance_p"] < 0.05).mean() <= 0.25


def test_screen_finds_the_stratum_blocks_among_1703():
    # The genome-wide shape: 3 stratum blocks among 1,703 (HLA DR/DQ and DP adjacent, so
    # linked to the genome only through PDE4D on chromosome 5), 450 training subjects.
    from genoembed_assets.analysis.synthetic import _NAMED_BLOCKS, synthetic_cohort
    from genoembed_assets.models._cross_block_training import _screen_training, phase2_input_space
    from genoembed_assets.models._embedding_store import InMemoryEmbeddingStore

    cohort = synthetic_cohort(n_subjects=600, n_background=1703 - len(_NAMED_BLOCKS), latent_dim=8, random_state=0)
    blocks = cohort.blocks[["block_id", "chrom", "start", "end"]]
    data = np.stack([cohort.block_embeddings[b].drop(columns="subject_id").to_numpy(np.float32) for b in blocks["block_id"]], 1)
    store = InMemoryEmbeddingStore(data, blocks, cohort.subjects["subject_id"])
    config = CROSS_BLOCK_PRESETS["genome"]
    standardize, (train, _, _), _ = phase2_input_space(store, config)
    screen, metrics = _screen_training(store, standardize, train, config, None)
    found = set(np.asarray(store.block_ids)[screen.candidates])
    assert found == set(cohort.truth["structure_blocks"]), sorted(found)
    assert metrics["focus"] and metrics["candidates"] == 3 and metrics["subjects"] == train.size
