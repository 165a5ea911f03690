"""The LD-weighted neighbour rule and its blend with the block VAE (models._ld_neighbours, models._impute)."""

from __future__ import annotations

import numpy as np
import pytest

from genoembed_assets.models._baselines import BASELINES, minor_allele_frequency, score_calls
from genoembed_assets.models._impute import BLEND_GRID, blend_weight, impute_block
from genoembed_assets.models._ld_neighbours import LDNeighbourConfig, ld_neighbour_probs


def _mosaic(n_subjects=300, n_snps=240, n_founders=12, segment=40, seed=0):
    """Genotypes whose haplotypes copy a different founder every ``segment`` variants.

    Recombination makes the structure local: no low-rank picture of the whole
    block holds it, the variants next to a call do.
    """
    rng = np.random.default_rng(seed)
    founders = (rng.random((n_founders, n_snps)) < rng.uniform(0.05, 0.5, n_snps)).astype(np.int8)
    n_segments = -(-n_snps // segment)
    choice = rng.integers(0, n_founders, size=(n_subjects, 2, n_segments))
    copied = np.repeat(choice, segment, axis=2)[..., :n_snps]
    haplotypes = founders[copied, np.arange(n_snps)]
    haplotypes ^= (rng.random(haplotypes.shape) < 0.005).astype(np.int8)  # mutation
    return haplotypes.sum(1).astype(np.int8)


def _hide(truth, rate=0.05, seed=1):
    rng = np.random.default_rng(seed)
    shown = truth.copy()
    hidden = rng.random(truth.shape) < rate
    shown[hidden] = -1
    return shown, hidden


def test_probabilities_only_where_hidden_and_they_sum_to_one():
    truth = _mosaic()
    shown, hidden = _hide(truth)
    gp = ld_neighbour_probs(shown)
    assert gp.shape == (*truth.shape, 3) and gp.dtype == np.float32
    np.testing.assert_allclose(gp[hidden].sum(-1), 1.0, atol=1e-5)
    assert (gp[~hidden] == 0).all()
    assert np.isfinite(gp).all()


def test_local_structure_is_imputed_better_than_pca_and_knn():
    truth = _mosaic()
    shown, hidden = _hide(truth)
    gp = ld_neighbour_probs(shown)
    maf = np.broadcast_to(minor_allele_frequency(shown), truth.shape)[hidden]
    ours = score_calls(truth[hidden], (gp[..., 1] + 2 * gp[..., 2])[hidden], maf, calls=gp.argmax(-1)[hidden])
    peers = {name: score_calls(truth[hidden], fill(shown, rank=8)[hidden], maf)["concordance"]
             for name, fill in BASELINES.items()}
    assert ours["concordance"] > 0.95, ours
    assert ours["concordance"] > max(peers.values()) + 0.05, (ours["concordance"], peers)


def test_voters_must_have_observed_the_call():
    truth = _mosaic(n_subjects=60, n_snps=50)
    shown = truth.copy()
    shown[:, 10] = -1
    shown[0, 10] = 2  # the only subject that observed variant 10
    gp = ld_neighbour_probs(shown)
    assert (gp[1:, 10].argmax(-1) == 2).all()
    nobody = truth.copy()
    nobody[:, 20] = -1  # nobody observed it: the prior, no NaN
    assert np.isfinite(ld_neighbour_probs(nobody)[:, 20]).all()


def test_visible_mask_hides_observed_calls_and_chunks_agree(monkeypatch):
    truth = _mosaic(n_subjects=120, n_snps=90)
    _, hidden = _hide(truth, seed=4)
    full = ld_neighbour_probs(truth, visible=~hidden)
    np.testing.assert_allclose(full[hidden].sum(-1), 1.0, atol=1e-5)
    import genoembed_assets.models._ld_neighbours as module

    monkeypatch.setattr(module, "_BUDGET", 1)  # one variant per chunk: the same probabilities
    np.testing.assert_allclose(ld_neighbour_probs(truth, visible=~hidden, config=LDNeighbourConfig(tile=7)), full,
                               atol=1e-6)


def test_config_rejects_nonsense():
    with pytest.raises(ValueError, match="n_neighbours must be >= 1"):
        LDNeighbourConfig(n_neighbours=0)
    with pytest.raises(ValueError, match="tau must be > 0"):
        LDNeighbourConfig(tau=0)
    with pytest.raises(ValueError, match="ld_power must be > 0"):
        LDNeighbourConfig(ld_power=0)
    with pytest.raises(ValueError, match="passes must be >= 1"):
        LDNeighbourConfig(passes=0)


def test_second_pass_reads_first_pass_calls_and_keeps_accuracy():
    truth = _mosaic(seed=5)
    shown, hidden = _hide(truth, rate=0.1, seed=6)
    one = ld_neighbour_probs(shown)
    two = ld_neighbour_probs(shown, config=LDNeighbourConfig(passes=2))
    np.testing.assert_allclose(two[hidden].sum(-1), 1.0, atol=1e-5)
    assert (two[~hidden] == 0).all() and not np.allclose(one[hidden], two[hidden])
    accuracy = [(p.argmax(-1)[hidden] == truth[hidden]).mean() for p in (one, two)]
    assert accuracy[1] >= accuracy[0] - 0.005, accuracy


def test_blend_keeps_observed_calls_and_reports_its_weight():
    import torch

    from genoembed_assets.models import BlockVAE, PRESETS

    torch.manual_seed(0)
    truth = _mosaic(n_subjects=200, n_snps=80)
    shown, hidden = _hide(truth, seed=2)
    untrained = BlockVAE.from_config(PRESETS["fast"], 80)  # knows nothing: the LD rule should carry the blend
    weight = blend_weight(untrained, shown, LDNeighbourConfig())
    assert weight in BLEND_GRID and weight <= 0.2
    calls = impute_block(untrained, shown)
    assert calls.vae_weight == weight
    np.testing.assert_array_equal(calls.gt[~hidden], shown[~hidden])
    assert (calls.gt[hidden] == truth[hidden]).mean() > 0.9
    alone = impute_block(None, shown)
    assert alone.vae_weight == 0.0
    with pytest.raises(ValueError, match="needs a block model, the LD-neighbour rule, or both"):
        impute_block(None, shown, local=None)


def test_voters_capped_at_max_voters_keep_accuracy():
    truth = _mosaic(n_subjects=400, seed=7)
    shown, hidden = _hide(truth, seed=8)
    every = ld_neighbour_probs(shown)
    capped = ld_neighbour_probs(shown, config=LDNeighbourConfig(max_voters=200))
    np.testing.assert_allclose(capped[hidden].sum(-1), 1.0, atol=1e-5)
    assert not np.allclose(every[hidden], capped[hidden])  # the cap is applied
    accuracy = [(p.argmax(-1)[hidden] == truth[hidden]).mean() for p in (every, capped)]
    assert accuracy[1] > 0.9 and accuracy[1] >= accuracy[0] - 0.03, accuracy
