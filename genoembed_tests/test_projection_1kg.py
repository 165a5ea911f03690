"""Projection on real haplotypes: 1000 Genomes chr20, reference.vcf.gz -> unphased.vcf.gz (issue 13).

Phase 1 is trained on the 300-sample reference panel and on all 503 samples;
the 203 other samples are projected onto the reference's frozen block models.
Per block: the matched-variant fraction, and the Procrustes correlation of
the projected embeddings with the same 203 samples' embeddings from models
trained on all 503 (bench/bench_projection_1kg.py, docs/projection.md: median
0.869, where two all-503 trainings differing only in the seed agree at 0.863).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_projection_1kg.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_projection_1kg", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_projected_1kg_embeddings_agree_with_models_trained_on_everyone(tmp_path):
    bench = _bench()
    if not (bench.KG / "reference.vcf.gz").exists():
        pytest.skip(f"1000 Genomes panels not found in {bench.KG}")
    rows = bench.build(tmp_path, seed_baseline=False, log=lambda _m: None)
    assert len(rows) >= 10 and rows["procrustes_r"].notna().all(), rows
    # every reference block finds most of its variants in the other panel (the rest fail its own MAF filter)
    assert (rows["matched_fraction"] > 0.7).all() and rows["matched_fraction"].median() > 0.85, rows
    assert (rows["n_matched"] <= rows["n_reference"]).all()
    # frozen reference models place the 203 samples as models trained on them would (up to rotation)
    r = rows["procrustes_r"].to_numpy()
    assert np.median(r) > 0.8 and r.min() > 0.6, rows[["block_id", "matched_fraction", "procrustes_r"]]
