"""Windowed (block-sparse) attention of the Phase 2 Transformer, against a brute-force reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genoembed_assets.models._attention import attend
from genoembed_assets.models._cross_block import (
    AUTO_ATTENTION_WINDOW,
    CROSS_BLOCK_PRESETS,
    DENSE_ATTENTION_MAX_BLOCKS,
    CrossBlockConfig,
    CrossBlockTransformer,
    draw_block_mask,
)


def _identity(a):
    return a


def _qkv(n=3, heads=2, blocks=50, dh=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, heads, blocks + 1, dh, generator=g) for _ in range(3))


def _reference(q, k, v, window, query_weight):
    """Dense attention with the window pattern as an explicit mask: what windowed attention must equal."""
    blocks = q.shape[2] - 1
    win = torch.arange(blocks) // window
    allowed = torch.ones(blocks + 1, blocks + 1, dtype=torch.bool)
    allowed[1:, 1:] = (win[:, None] - win[None, :]).abs() <= 1
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    attn = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    received = torch.einsum("nhij,ni->nhj", attn[:, :, 1:, 1:], query_weight)
    return attn @ v, attn[:, :, 0, 1:], received


@pytest.mark.parametrize("window", [7, 10, 16])
def test_windowed_attention_equals_masked_dense_reference(window):
    q, k, v = _qkv()
    weight = torch.rand(q.shape[0], q.shape[2] - 1, generator=torch.Generator().manual_seed(1))
    got = attend(q, k, v, window, _identity, return_attention=True, query_weight=weight)
    want = _reference(q, k, v, window, weight)
    for name, a, b in zip(("mixed", "cls_row", "received"), got, want):
        assert a.shape == b.shape, name
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=f"{name} differs from the reference")


def test_one_window_over_every_block_is_dense_attention():
    q, k, v = _qkv(blocks=30)
    weight = torch.rand(3, 30)
    dense = attend(q, k, v, 0, _identity, return_attention=True, query_weight=weight)
    windowed = attend(q, k, v, 64, _identity, return_attention=True, query_weight=weight)
    for a, b in zip(dense, windowed):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_fused_training_path_matches_the_weights_path():
    q, k, v = _qkv(blocks=45)
    fused, _, _ = attend(q, k, v, 8, _identity)
    explicit, _, _ = attend(q, k, v, 8, _identity, return_attention=True)
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)


def test_a_block_token_does_not_see_blocks_beyond_the_neighbour_windows():
    q, k, v = _qkv(blocks=50)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 50] += 5.0  # block 49, in window 4 of 10-block windows
    v2[:, :, 50] += 5.0
    before, _, _ = attend(q, k, v, 10, _identity)
    after, _, _ = attend(q, k2, v2, 10, _identity)
    assert torch.equal(before[:, :, 1:31], after[:, :, 1:31]), "blocks 0-29 (windows 0-2) must not see block 49"
    assert not torch.allclose(before[:, :, 0], after[:, :, 0]), "the CLS token sees every block"
    assert not torch.allclose(before[:, :, 31:], after[:, :, 31:])


def test_window_choice():
    auto = CrossBlockConfig()
    assert auto.window_for(DENSE_ATTENTION_MAX_BLOCKS) == 0
    assert auto.window_for(DENSE_ATTENTION_MAX_BLOCKS + 1) == AUTO_ATTENTION_WINDOW
    assert auto.window_for(1703) == AUTO_ATTENTION_WINDOW
    assert CrossBlockConfig(attention_window=0).window_for(1703) == 0
    assert CrossBlockConfig(attention_window=16).window_for(32) == 0  # two windows or fewer: dense is as cheap
    assert CrossBlockConfig(attention_window=16).window_for(33) == 16
    with pytest.raises(ValueError, match="attention_window"):
        CrossBlockConfig(attention_window=-2).validate()
    assert CROSS_BLOCK_PRESETS["genome"].validate().window_for(1703) == AUTO_ATTENTION_WINDOW


def test_windowed_model_trains_and_reports_attention():
    blocks, n = 300, 16
    config = CROSS_BLOCK_PRESETS["genome"]
    model = CrossBlockTransformer([8] * blocks, np.repeat(np.arange(3), 100), np.arange(blocks) * 2.0, config)
    assert model.window == AUTO_ATTENTION_WINDOW
    x = torch.randn(n, blocks, 8)
    mask = draw_block_mask(n, blocks, 0.15, 0.3, torch.Generator().manual_seed(0))
    out = model(x, mask, return_attention=True, query_weight=mask.float())
    assert out.token_pred.shape == (n, blocks, 8) and out.cls.shape == (n, config.width)
    assert out.cls_attention.shape == (n, config.layers, config.heads, blocks)
    assert out.received_attention.shape == (n, config.layers, config.heads, blocks)
    share = out.cls_attention.sum(-1)  # the CLS token's attention to blocks (its self-attention is the rest)
    assert ((share > 0.9) & (share <= 1 + 1e-5)).all()
    loss = model.masked_loss(out, x, mask, torch.ones(blocks, 8), 1.0)["loss"]
    loss.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.in_weight.grad.abs().sum() > 0


def test_closed_masks_on_a_dense_map_hide_about_the_plain_share():
    from genoembed_assets.genotypes.blockmap import read_block_map
    from genoembed_assets.models._importance import importance_masks, ld_neighbours
    from genoembed_assets.paths import block_map_path

    blocks = read_block_map(block_map_path("hg19"))
    near = ld_neighbours(blocks, 2.0)
    assert near.sum(axis=1).mean() > 2  # contiguous blocks: several neighbours each
    plain, closed = importance_masks(40, near, CrossBlockConfig(importance_mask_draws=2), 0)
    assert (closed.sum(-1) >= 1).all()
    share = float(closed.float().mean())
    assert 0.15 <= share <= 0.4, f"closed masks hide {share:.0%} of blocks"
    # Unthinned, closing would hide most blocks: the reason for the thinning.
    assert float((plain | ((plain.float() @ torch.from_numpy(near).float()) > 0)).float().mean()) > 0.6


def test_ld_groups_are_local_on_a_contiguous_map():
    from genoembed_assets.models._importance_stats import _distally_linked

    near = np.zeros((6, 6), bool)
    for i in range(5):  # a chain: 0-1-2-3-4-5, one connected component
        near[i, i + 1] = near[i + 1, i] = True
    p = np.full(6, 0.5)
    p[0] = 1e-6
    linked = _distally_linked(near, p)
    assert linked.tolist() == [True, True, False, False, False, False], "only block 0's neighbourhood shares its link"
