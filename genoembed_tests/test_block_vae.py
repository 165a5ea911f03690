"""Unit tests of the Phase 1 block VAE, its schedules and its trainer (tiny data, CPU)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from genoembed_assets.models import (
    METRIC_KEYS,
    PRESETS,
    TENSOR_KEYS,
    BlockVAE,
    BlockVAEConfig,
    kl_weight,
    learning_rate,
    load_block_model,
    mode_baseline,
    one_hot_genotypes,
    save_block_fit,
    synthetic_genotypes,
    train_blocks,
    vae_loss,
)

TINY = BlockVAEConfig(latent_size=4, hidden_widths=(32,), max_epochs=3, patience=2, batch_size=64, seed=7)
# Enough epochs for the haplotype structure to be learned, still a few seconds.
SHORT = PRESETS["fast"].replace(max_epochs=25, patience=25, batch_size=64, val_fraction=0.2, seed=3)


@pytest.fixture(autouse=True)
def one_thread():
    # Small ops on a shared CPU run faster (and deterministically) on one thread.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def haplotype_blocks():
    return [(f"chr1_b{i:04d}", synthetic_genotypes(400, 30 + 8 * i, 4, seed=i, missing_rate=0.03)) for i in range(3)]


@pytest.fixture(scope="module")
def stacked_fits(haplotype_blocks):
    torch.set_num_threads(1)
    return train_blocks(haplotype_blocks, SHORT)


# ---------------------------------------------------------------- model


def test_forward_shapes_and_finite_loss():
    genotypes = torch.as_tensor(synthetic_genotypes(20, 7, 2, seed=0, missing_rate=0.1))
    model = BlockVAE.from_config(TINY, n_snps=7)
    observed = genotypes >= 0
    inference, generative = model(genotypes, observed)
    assert inference[TENSOR_KEYS.Z].shape == (20, TINY.latent_size)
    assert generative[TENSOR_KEYS.LOGITS].shape == (20, 3, 7)
    terms = model.loss(genotypes, observed, inference, generative, kl_weight=0.5)
    for value in (terms.loss, terms.reconstruction, terms.kl, terms.weighted_kl):
        assert value.shape == () and torch.isfinite(value)
    assert torch.allclose(terms.loss, terms.reconstruction + terms.weighted_kl)
    assert torch.allclose(terms.weighted_kl, 0.5 * terms.kl)
    assert int(terms.n_targets) == int(observed.sum())


def test_missing_is_an_empty_channel_not_dosage_zero():
    genotypes = torch.tensor([[-1, 0, 1, 2]])
    hot = one_hot_genotypes(genotypes, genotypes >= 0).view(3, 4)
    assert hot[:, 0].sum() == 0  # missing: no class lit
    assert hot[:, 1].tolist() == [1, 0, 0]  # dosage 0 is class 0, distinct from missing


@pytest.mark.parametrize("hidden_value", [0, 1, 2])
def test_loss_ignores_the_value_behind_a_missing_entry(hidden_value):
    torch.manual_seed(0)
    truth = torch.as_tensor(synthetic_genotypes(8, 5, 2, seed=1, missing_rate=0.0))
    target = torch.ones_like(truth, dtype=torch.bool)
    target[3, 2] = False  # entry (3, 2) is missing
    variant = truth.clone()
    variant[3, 2] = hidden_value
    model = BlockVAE.from_config(TINY, n_snps=5)
    losses = []
    for genotypes in (truth, variant):
        inference = model.inference(genotypes, target, sample=False)
        generative = model.generative(inference[TENSOR_KEYS.Z])
        losses.append(model.loss(genotypes, target, inference, generative, kl_weight=1.0).loss)
    assert torch.equal(losses[0], losses[1])


def test_mode_baseline_skips_missing():
    genotypes = np.array([[-1, 1], [-1, 1], [-1, 0], [2, 0], [2, 0]], dtype=np.int8)
    assert mode_baseline(genotypes).tolist() == [2, 0]


def test_focal_loss_downweights_confident_entries():
    logits = torch.tensor([[[4.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])  # (1 subject, 3 classes, 2 variants)
    genotypes = torch.tensor([[0, 0]])
    zeros = torch.zeros(1, 1)
    plain = vae_loss(logits, genotypes, genotypes >= 0, zeros, zeros, 1.0, focal_gamma=0.0)
    focal = vae_loss(logits, genotypes, genotypes >= 0, zeros, zeros, 1.0, focal_gamma=2.0)
    assert focal.reconstruction < plain.reconstruction
    assert math.isclose(float(plain.kl), 0.0, abs_tol=1e-7)


# ---------------------------------------------------------------- schedules


@pytest.mark.parametrize(
    ("epoch", "schedule", "warmup", "expected"),
    [
        (0.0, "constant", 10, 2.0),
        (5.0, "constant", 10, 2.0),
        (0.0, "linear", 10, 0.0),
        (2.5, "linear", 10, 0.5),
        (5.0, "linear", 10, 1.0),
        (10.0, "linear", 10, 2.0),
        (30.0, "linear", 10, 2.0),
        (3.0, "linear", 0, 2.0),
        # cyclic: max_epochs 40, 4 cycles -> period 10, cosine ramp over the first 5 epochs
        (0.0, "cyclic", 10, 0.0),
        (2.5, "cyclic", 10, 1.0),
        (5.0, "cyclic", 10, 2.0),
        (9.9, "cyclic", 10, 2.0),
        (10.0, "cyclic", 10, 0.0),
        (12.5, "cyclic", 10, 1.0),
        (35.0, "cyclic", 10, 2.0),
    ],
)
def test_kl_weight_table(epoch, schedule, warmup, expected):
    got = kl_weight(epoch, beta=2.0, schedule=schedule, warmup_epochs=warmup, max_epochs=40, n_cycles=4)
    assert got == pytest.approx(expected, abs=1e-9)


def test_kl_weight_rejects_unknown_schedule():
    with pytest.raises(ValueError, match="unknown beta schedule 'step'"):
        kl_weight(1.0, beta=1.0, schedule="step", warmup_epochs=1, max_epochs=10)


@pytest.mark.parametrize(
    ("step", "expected"),
    [(0, 0.25), (3, 1.0), (4, 1.0), (9, 0.5), (14, 0.0), (100, 0.0)],
)
def test_learning_rate_table(step, expected):
    assert learning_rate(step, lr=1.0, warmup_steps=4, total_steps=14) == pytest.approx(expected)


# ---------------------------------------------------------------- config validation


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"latent_size": 0}, "latent_size must be at least 1"),
        ({"hidden_widths": ()}, "hidden_widths"),
        ({"mask_rate_max": 1.5}, r"mask_rate_max must be in \[0, 1\)"),
        ({"mask_rate_min": 0.3, "mask_rate_max": 0.2}, "must not exceed mask_rate_max"),
        ({"beta": -1.0}, "beta must be"),
        ({"beta_schedule": "step"}, "beta_schedule must be one of"),
        ({"max_epochs": 0}, "max_epochs must be at least 1"),
        ({"val_fraction": 0.0}, r"val_fraction must be in \(0, 1\)"),
        ({"heldout_fraction": 1.0}, r"heldout_fraction must be in \(0, 1\)"),
        ({"focal_gamma": -0.5}, "focal_gamma"),
    ],
)
def test_bad_config_raises(changes, match):
    with pytest.raises(ValueError, match=match):
        BlockVAEConfig(**changes)


def test_presets_are_valid_and_distinct():
    assert set(PRESETS) == {"fast", "balanced", "thorough", "impute"}
    assert PRESETS["balanced"] == BlockVAEConfig()
    assert PRESETS["fast"].max_epochs < PRESETS["balanced"].max_epochs < PRESETS["thorough"].max_epochs


@pytest.mark.parametrize(
    ("blocks", "match"),
    [
        ([("chr1_b0001", np.zeros((1, 5), np.int8))], "block 'chr1_b0001' has 1 subject"),
        ([("chr1_b0002", np.full((4, 3), 3, np.int8))], r"block 'chr1_b0002': genotypes must be in"),
        ([("chr1_b0003", np.full((4, 3), -1, np.int8))], "block 'chr1_b0003' has no observed genotype"),
        ([("chr1_b0004", np.zeros((4, 0), np.int8))], "block 'chr1_b0004' has no variants"),
        ([("x", np.zeros((4, 2), np.int8)), ("x", np.zeros((4, 2), np.int8))], "block 'x' is given twice"),
        ([("chr1_b0005", np.zeros(5, np.int8))], "expected a 2-D"),
    ],
)
def test_bad_blocks_raise_before_training(blocks, match):
    calls = []
    with pytest.raises(ValueError, match=match):
        train_blocks(blocks, TINY, log=calls.append)
    assert calls == []  # nothing started


# ---------------------------------------------------------------- training


def test_same_seed_same_embeddings():
    blocks = [("b0", synthetic_genotypes(60, 12, 3, seed=0)), ("b1", synthetic_genotypes(60, 9, 3, seed=1))]
    first = train_blocks(blocks, TINY)
    second = train_blocks(blocks, TINY)
    other = train_blocks(blocks, TINY.replace(seed=8))
    for a, b in zip(first, second):
        assert a.embedding.dtype == np.float32 and a.embedding.shape == (60, TINY.latent_size)
        assert np.array_equal(a.embedding, b.embedding)
        # every column but the wall-clock seconds is reproducible
        pd.testing.assert_frame_equal(a.curve.drop(columns="seconds"), b.curve.drop(columns="seconds"))
    assert not np.array_equal(first[0].embedding, other[0].embedding)


def test_heldout_accuracy_beats_mode_baseline(stacked_fits):
    for fit in stacked_fits:
        metrics = fit.metrics
        assert metrics[METRIC_KEYS.N_HELDOUT] > 0
        assert metrics[METRIC_KEYS.HELDOUT_ACCURACY] > metrics[METRIC_KEYS.MODE_BASELINE_ACCURACY] + 0.05, metrics
        assert metrics[METRIC_KEYS.ACTIVE_UNITS] >= 1
        assert list(fit.curve.columns) == ["epoch", "train_loss", "val_loss", "recon", "kl", "beta", "lr", "heldout_acc",
                                          "seconds"]
        assert len(fit.curve) == metrics[METRIC_KEYS.EPOCHS_RUN]
        assert 0 <= metrics[METRIC_KEYS.BEST_EPOCH] < metrics[METRIC_KEYS.EPOCHS_RUN]


def test_stacked_training_matches_single_block_quality(haplotype_blocks, stacked_fits):
    assert [f.block_id for f in stacked_fits] == [b for b, _ in haplotype_blocks]
    gaps = []
    for (block_id, genotypes), stacked in zip(haplotype_blocks, stacked_fits):
        (single,) = train_blocks([(block_id, genotypes)], SHORT)
        # Same held-out entries and baseline, whatever else trained beside the block.
        assert single.metrics[METRIC_KEYS.MODE_BASELINE_ACCURACY] == stacked.metrics[METRIC_KEYS.MODE_BASELINE_ACCURACY]
        assert single.metrics[METRIC_KEYS.N_HELDOUT] == stacked.metrics[METRIC_KEYS.N_HELDOUT]
        assert single.state_dict.keys() == stacked.state_dict.keys()
        gaps.append(single.metrics[METRIC_KEYS.HELDOUT_ACCURACY] - stacked.metrics[METRIC_KEYS.HELDOUT_ACCURACY])
    # A few hundred held-out entries per block: allow sampling noise per block, less on the mean.
    assert max(abs(g) for g in gaps) < 0.06 and abs(np.mean(gaps)) < 0.03, gaps


def test_early_stopping_freezes_finished_blocks():
    blocks = [("b0", synthetic_genotypes(80, 10, 2, seed=0)), ("b1", synthetic_genotypes(80, 12, 2, seed=1))]
    fits = train_blocks(blocks, TINY.replace(max_epochs=60, patience=1, lr=0.05))
    for fit in fits:
        assert fit.metrics[METRIC_KEYS.EPOCHS_RUN] < 60
        assert fit.metrics[METRIC_KEYS.EPOCHS_RUN] == fit.metrics[METRIC_KEYS.BEST_EPOCH] + 2


def test_save_load_round_trip(tmp_path, stacked_fits, haplotype_blocks):
    fit = stacked_fits[1]
    genotypes = haplotype_blocks[1][1]
    ids = [f"s{i}" for i in range(genotypes.shape[0])]
    paths = save_block_fit(fit, tmp_path / fit.block_id, ids)
    assert {p.name for p in paths.values()} == {
        "embedding.parquet", "embedding.npy", "model.pt", "curve.csv", "metrics.json"}
    table = pd.read_parquet(paths["embedding"])
    assert list(table.columns) == ["subject_id"] + [f"z{i}" for i in range(SHORT.latent_size)]
    assert table["subject_id"].tolist() == ids
    assert np.array_equal(np.load(paths["embedding_npy"]), fit.embedding)
    metrics = json.loads(paths["metrics"].read_text())
    assert metrics["block_id"] == fit.block_id and metrics["config"]["latent_size"] == SHORT.latent_size
    assert list(pd.read_csv(paths["curve"]).columns) == list(fit.curve.columns)

    model = load_block_model(tmp_path / fit.block_id, SHORT, n_snps=genotypes.shape[1])
    x = torch.as_tensor(genotypes)
    with torch.no_grad():
        z = model.inference(x, x >= 0, sample=False)[TENSOR_KEYS.Z_MEAN].numpy()
    np.testing.assert_allclose(z, fit.embedding, rtol=1e-5, atol=1e-5)


def test_save_rejects_wrong_number_of_ids(tmp_path, stacked_fits):
    with pytest.raises(ValueError, match="subject ids for an embedding of 400 rows"):
        save_block_fit(stacked_fits[0], tmp_path, ["a", "b"])


def test_blocks_finishing_at_different_epochs_leave_the_stack():
    # Identical blocks but one has far fewer variants: with patience 1 they stop at different epochs,
    # so the stack shrinks while the rest keep training.
    blocks = [(f"b{i}", synthetic_genotypes(80, 10 + i, 2, seed=i)) for i in range(5)]
    config = TINY.replace(max_epochs=40, patience=1, lr=0.02)
    fits = train_blocks(blocks, config)
    epochs = [fit.metrics[METRIC_KEYS.EPOCHS_RUN] for fit in fits]
    assert len(set(epochs)) > 1, epochs
    for (block_id, genotypes), fit in zip(blocks, fits):
        (alone,) = train_blocks([(block_id, genotypes)], config)
        assert fit.metrics[METRIC_KEYS.MODE_BASELINE_ACCURACY] == alone.metrics[METRIC_KEYS.MODE_BASELINE_ACCURACY]
        model = BlockVAE.from_config(config, genotypes.shape[1])
        model.load_state_dict(fit.state_dict)
        x = torch.as_tensor(genotypes)
        with torch.no_grad():
            z = model.inference(x, x >= 0, sample=False)[TENSOR_KEYS.Z_MEAN].numpy()
        np.testing.assert_allclose(z, fit.embedding, rtol=1e-5, atol=1e-5)
