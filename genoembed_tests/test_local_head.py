"""The block model's local imputation head (models._local_head) and what it changes in training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genoembed_assets.models import BlockVAE, BlockVAEConfig, load_block_model, save_block_fit, train_blocks
from genoembed_assets.models._block_vae import one_hot_genotypes
from genoembed_assets.models._impute import impute_block
from genoembed_assets.models._ld_neighbours import ld_partners
from genoembed_assets.models._local_head import StackedLocalHead, _bf16_native, local_logits

from .test_ld_neighbours import _mosaic

# small and quick; the head's learning rate and penalty are the defaults
FAST = BlockVAEConfig(hidden_widths=(64,), max_epochs=25, patience=5, kl_warmup_epochs=5, batch_size=64)


def test_partners_are_the_strongest_ld_others_and_never_the_variant_itself():
    truth = _mosaic(n_subjects=200, n_snps=80)
    partners = ld_partners(truth, 6)
    assert partners.shape == (80, 6) and partners.dtype == np.int64
    assert not (partners == np.arange(80)[:, None]).any()
    with np.errstate(invalid="ignore", divide="ignore"):  # monomorphic variants have no r²
        r2 = np.nan_to_num(np.corrcoef(truth.T.astype(float)) ** 2)
    np.fill_diagonal(r2, -1)
    # the first partner is the variant's strongest-r² other variant (ties aside)
    best = r2.max(1)
    assert np.allclose(r2[np.arange(80), partners[:, 0]], best, atol=1e-4)


def test_narrow_blocks_repeat_the_strongest_partner_and_a_lone_variant_has_none():
    truth = _mosaic(n_subjects=50, n_snps=4)
    partners = ld_partners(truth, 6)
    assert partners.shape == (4, 6)
    assert (partners[:, 3:] == partners[:, :1]).all()
    assert ld_partners(truth[:, :1], 6).shape == (1, 0)
    assert BlockVAE(1, 2, (4,), local_partners=6).local is None


@pytest.mark.parametrize("dense", [False, True])
def test_stacked_head_slices_back_to_the_single_block_head(dense):
    rng = np.random.default_rng(0)
    widths = [7, 5]
    partners = [rng.integers(0, w, size=(w, 3)) for w in widths]
    partners[1][:, 2] = partners[1][:, 0]  # a repeated partner (narrow blocks) must count twice in both ways
    stacked = StackedLocalHead(partners, width=7)
    stacked.dense = dense
    stacked._index_dense()
    with torch.no_grad():
        stacked.weight.normal_()
        stacked.bias.normal_()
    genotypes = torch.as_tensor(rng.integers(-1, 3, size=(2, 9, 7)), dtype=torch.int8)
    genotypes[1, :, 5:] = -1  # padding of the narrower block
    out = stacked(genotypes, genotypes >= 0)
    # the dense way may run its GEMM in bfloat16 (8 mantissa bits)
    tolerance = dict(atol=0.1, rtol=0.02) if dense and _bf16_native(torch.device("cpu")) else {}
    for g, w in enumerate(widths):
        single = BlockVAE(w, 2, (4,), local_partners=3)
        single.local.load_state_dict(stacked.block_state_dict(g))
        x = genotypes[g, :, :w]
        torch.testing.assert_close(single.local_logits(x, x >= 0), out[g, :, :, :w], **tolerance)


def test_head_is_a_logistic_regression_on_the_partners_one_hot_calls():
    rng = np.random.default_rng(1)
    n, n_var, k = 6, 5, 3
    genotypes = torch.as_tensor(rng.integers(-1, 3, size=(n, n_var)), dtype=torch.int8)
    partners = torch.as_tensor(rng.integers(0, n_var, size=(n_var, k)))
    weight, bias = torch.randn(n_var, k, 3, 3), torch.randn(3, n_var)
    hot = one_hot_genotypes(genotypes, genotypes >= 0).view(n, 3, n_var)  # class-major
    expected = torch.einsum("nckv,vkcd->ndv", hot[:, :, partners.T], weight) + bias
    torch.testing.assert_close(local_logits(genotypes, genotypes >= 0, partners, weight, bias), expected)


def test_a_hidden_partner_adds_nothing():
    partners = torch.tensor([[1], [0]])
    weight = torch.ones(2, 1, 3, 3)
    genotypes = torch.tensor([[2, -1]], dtype=torch.int8)
    logits = local_logits(genotypes, genotypes >= 0, partners, weight, torch.zeros(3, 2))
    assert logits[0, :, 0].abs().sum() == 0  # variant 0 reads variant 1, which is missing
    assert (logits[0, :, 1] == 1).all()  # variant 1 reads variant 0 (observed)


@pytest.fixture(scope="module")
def mosaic_fits():
    truth = _mosaic(n_subjects=400, n_snps=120, seed=3)
    blocks = [("m0", truth[:, :60]), ("m1", truth[:, 60:])]
    return blocks, train_blocks(blocks, FAST, device="cpu"), train_blocks(blocks, FAST.replace(local_partners=0),
                                                                          device="cpu")


def test_head_lifts_the_block_model_above_pca_and_leaves_the_embedding_alone(mosaic_fits):
    blocks, with_head, without = mosaic_fits
    for fit, plain in zip(with_head, without):
        m = fit.metrics
        assert m["local_partners"] == 32  # 60-variant blocks: the dense head reads local_partners
        # the embedding and the VAE's own prediction are exactly what they are without the head
        np.testing.assert_array_equal(fit.embedding, plain.embedding)
        assert m["vae_heldout_accuracy"] == plain.metrics["heldout_accuracy"]
        assert m["heldout_accuracy"] > m["pca_baseline_accuracy"] + 0.02, m
        assert m["heldout_accuracy"] > m["knn_baseline_accuracy"], m
        assert m["heldout_accuracy"] > m["vae_heldout_accuracy"] + 0.02, m
        # the learning curve scores the block model on the same held-out calls after every epoch
        curve = fit.curve
        assert curve["heldout_acc"].between(0, 1).all() and curve["seconds"].is_monotonic_increasing
        assert curve["heldout_acc"].max() > m["pca_baseline_accuracy"]
        assert curve["heldout_acc"].iloc[0] < curve["heldout_acc"].max()


def test_saved_head_reloads_and_imputes_as_trained(mosaic_fits, tmp_path):
    blocks, with_head, _ = mosaic_fits
    fit, (_, genotypes) = with_head[0], blocks[0]
    save_block_fit(fit, tmp_path, [f"s{i}" for i in range(genotypes.shape[0])])
    model = load_block_model(tmp_path, FAST, genotypes.shape[1])
    assert model.local is not None
    torch.testing.assert_close(model.local.weight, fit.state_dict["local.weight"])
    shown = genotypes.copy()
    hidden = np.random.default_rng(5).random(shown.shape) < 0.05
    shown[hidden] = -1
    calls = impute_block(model, shown, local=None)
    assert (calls.gt[~hidden] == genotypes[~hidden]).all()
    assert (calls.gt[hidden] == genotypes[hidden]).mean() > 0.9


def test_partner_count_follows_the_head_path_and_groups_never_mix_the_two():
    config = BlockVAEConfig()
    assert (config.local_partners, config.local_partners_wide) == (32, 16)
    assert [config.head_partners(n) for n in (1, 2, 512, 513, 5000)] == [0, 32, 32, 16, 16]
    assert config.replace(local_partners=0).head_partners(100) == 0
    assert config.replace(local_partners_wide=0).head_partners(900) == 0
    from genoembed_assets.models._block_training import _group_blocks

    widths = [400, 500, 520, 600]  # within 1.5x of each other, but two dense and two wide
    groups = _group_blocks(widths, [300] * 4)
    assert sorted(sorted(widths[i] for i in g) for g in groups) == [[400, 500], [520, 600]]


def test_a_model_loads_with_the_partner_count_it_was_saved_with(mosaic_fits, tmp_path):
    blocks, with_head, _ = mosaic_fits
    fit, (_, genotypes) = with_head[1], blocks[1]
    save_block_fit(fit, tmp_path, [f"s{i}" for i in range(genotypes.shape[0])])
    # whatever today's configuration asks for, the saved head decides (a model trained with 16 partners still loads)
    model = load_block_model(tmp_path, FAST.replace(local_partners=7), genotypes.shape[1])
    assert model.local.partners.shape == (genotypes.shape[1], 32)
    torch.testing.assert_close(model.local.weight, fit.state_dict["local.weight"])


def test_a_model_saved_without_a_head_still_loads(mosaic_fits, tmp_path):
    blocks, _, without = mosaic_fits
    fit, (_, genotypes) = without[0], blocks[0]
    assert not any(key.startswith("local.") for key in fit.state_dict)
    save_block_fit(fit, tmp_path, [f"s{i}" for i in range(genotypes.shape[0])])
    # the configuration asks for a head (today's default); the saved weights have none
    model = load_block_model(tmp_path, FAST, genotypes.shape[1])
    assert model.local is None


@pytest.mark.parametrize("field, value", [("local_partners", -1), ("local_lr", 0.0), ("local_l2", -0.5)])
def test_config_rejects_bad_head_settings(field, value):
    with pytest.raises(ValueError, match=field):
        BlockVAEConfig(**{field: value})


def test_blend_weight_is_chosen_on_calls_the_model_never_trained_on(mosaic_fits, monkeypatch):
    import genoembed_assets.models._impute as impute

    blocks, with_head, _ = mosaic_fits
    (_, genotypes), fit = blocks[0], with_head[0]
    model = BlockVAE.from_config(FAST, genotypes.shape[1])
    model.load_state_dict(fit.state_dict)
    seen = {}
    real = impute.ld_neighbour_probs

    def spy(g, *, visible=None, config=None):
        seen["hidden"] = (g >= 0) & ~visible
        return real(g, visible=visible, config=config)

    monkeypatch.setattr(impute, "ld_neighbour_probs", spy)
    rows = np.arange(0, 400, 10)
    weight = impute.blend_weight(model, genotypes, impute.LDNeighbourConfig(), rows=rows)
    assert weight in impute.BLEND_GRID
    hidden_rows = np.flatnonzero(seen["hidden"].any(1))
    assert set(hidden_rows) <= set(rows) and len(hidden_rows) > len(rows) // 2
    assert seen["hidden"].sum() >= impute._CALIBRATION_MIN
