"""Genome-wide shape, cheaply: Phase 2 on 1,703 blocks x 200 subjects x 8 latent dimensions in bounded memory.

The Phase 2 fit runs in a subprocess so its peak RSS is its own: dense
attention over 1,703 tokens needed 21.5 GB per training step (issue 12); the
windowed attention must stay within a small multiple of the data.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from genoembed_assets.models._cross_block import AUTO_ATTENTION_WINDOW

pytestmark = pytest.mark.slow

N_BLOCKS, N_SUBJECTS, K = 1703, 200, 8
# Windowed: ~1.5 GB above the data on this machine. Dense attention at this shape
# holds (64 x 2 x 1704 x 1704) floats per layer and copy, > 6 GB.
MAX_RSS_GROWTH_GB = 3.0

SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    import torch
    from genoembed_assets.models._embedding_store import InMemoryEmbeddingStore, synthetic_block_embeddings
    from genoembed_assets.models._cross_block import CROSS_BLOCK_PRESETS
    from genoembed_assets.models._cross_block_training import fit_cross_block, save_cross_block_result, plot_block_importance

    out = sys.argv[1]
    torch.set_num_threads(2)
    data, meta, strata = synthetic_block_embeddings({n}, {blocks}, {k}, seed=0)
    store = InMemoryEmbeddingStore(data, meta)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    config = CROSS_BLOCK_PRESETS["genome"].with_overrides(epochs=2, seeds=(0,), importance_permutations=8)
    result = fit_cross_block(store, config)
    save_cross_block_result(result, out)
    plot_block_importance(result.block_importance, out + "/block_importance.png")
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    json.dump({{"before_kb": before, "after_kb": after, "window": result.metrics["attention_window"]}}, open(out + "/rss.json", "w"))
    """
)


@pytest.fixture(scope="module")
def genome_phase2(tmp_path_factory):
    out = tmp_path_factory.mktemp("genome_phase2")
    script = SCRIPT.format(n=N_SUBJECTS, blocks=N_BLOCKS, k=K)
    done = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_phase2_memory_stays_bounded_at_1703_blocks(genome_phase2):
    rss = json.loads((genome_phase2 / "rss.json").read_text())
    assert rss["window"] == AUTO_ATTENTION_WINDOW
    growth_gb = (rss["after_kb"] - rss["before_kb"]) / 1e6
    assert growth_gb < MAX_RSS_GROWTH_GB, f"Phase 2 peak RSS grew by {growth_gb:.2f} GB at {N_BLOCKS} blocks"


def test_phase2_outputs_are_complete_at_1703_blocks(genome_phase2):
    embeddings = pd.read_parquet(genome_phase2 / "subject_embeddings.parquet")
    assert len(embeddings) == N_SUBJECTS and embeddings["subject_id"].is_unique
    values = embeddings.drop(columns="subject_id").to_numpy()
    assert np.isfinite(values).all() and (values.var(axis=0) > 0).all()
    importance = pd.read_parquet(genome_phase2 / "block_importance.parquet")
    assert len(importance) == N_BLOCKS and importance["block_id"].is_unique
    assert sorted(importance["rank"]) == list(range(1, N_BLOCKS + 1))
    for column in ("importance_p", "importance_q"):
        assert importance[column].between(0, 1).all(), column
    assert np.isclose(importance["importance_mean"].sum(), 1.0)
    assert np.isclose(importance["attention_mean"].sum(), 1.0) and (importance["attention_mean"] > 0).all()
    metrics = json.loads((genome_phase2 / "metrics.json").read_text())
    assert metrics["n_blocks"] == N_BLOCKS and metrics["attention_window"] == AUTO_ATTENTION_WINDOW
    assert (genome_phase2 / "block_importance.png").stat().st_size > 10_000
