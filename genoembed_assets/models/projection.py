"""Projection of a new cohort onto a frozen reference (pure torch/numpy, no Dagster).

Phase 1: each reference block's model encodes the new cohort's genotypes,
matched to the reference's variants (:mod:`..genotypes.variant_match`), as
posterior means with every observed entry visible: exactly how training
computes the reference's own embeddings, so a reference projected onto its
own models reproduces them bit for bit. Phase 2: every seed's Transformer of the
reference, side by side with the reference's per-seed factors (as its own
subject embeddings are built, ``seed_ensemble``), applied in the reference's input space (standardizer rebuilt from the snapshot's Phase 1
embeddings, deterministic given its config). Nothing is trained.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from .. import storage
from ..genotypes import layout
from ..genotypes.errors import CohortInputError
from ..genotypes.variant_match import VariantMatch, gather_block, match_variants
from ._block_artifacts import load_block_model
from ._block_protocol import _posterior_means
from ._block_vae import BlockVAEConfig
from ._cross_block import CrossBlockConfig, CrossBlockTransformer
from ._cross_block_training import _encode, phase2_input_space, seed_ensemble
from ._embedding_store import BlockEmbeddingStore
from ._reference_snapshot import ReferenceSnapshot

__all__ = ["BlockProjection", "block_config", "match_cohort", "project_blocks", "project_subjects", "save_block_projection"]

PROJECTION_JSON = "projection.json"


@dataclass
class BlockProjection:
    """One reference block encoded for the new cohort: embedding rows in the new cohort's subject order."""

    block_id: str
    embedding: np.ndarray
    counts: dict


def block_config(snapshot: ReferenceSnapshot, block: str) -> tuple[BlockVAEConfig, int]:
    """The block's training config and variant count, from its frozen ``metrics.json``."""
    metrics = json.loads((snapshot.phase1_dir(block) / "metrics.json").read_text())
    config = dict(metrics["config"])
    config["hidden_widths"] = tuple(config["hidden_widths"])
    return BlockVAEConfig(**config), int(metrics["n_snps"])


def _target_variants(input_dir: Path) -> pd.DataFrame:
    path = input_dir / "variants.parquet"
    if not path.exists():
        raise CohortInputError(path, "missing: projection matches variants by chrom/pos/alleles from the ingested "
                               "variant table; ingest the cohort first")
    table = pd.read_parquet(path)
    table["block_id"] = table["block_id"].astype(str)
    table["column"] = table.groupby("block_id", sort=False).cumcount()
    return table


def match_cohort(snapshot: ReferenceSnapshot, input_dir: str | Path) -> tuple[VariantMatch, pd.DataFrame]:
    """Match an ingested cohort's variants to the snapshot's; returns the match and the cohort's variant table."""
    target = _target_variants(Path(input_dir))
    return match_variants(snapshot.variants, target), target


@torch.no_grad()
def encode(model, config: BlockVAEConfig, genotypes: np.ndarray) -> np.ndarray:
    """Posterior means of a frozen block model (every observed entry visible), as in training."""
    model.eval()
    x = torch.as_tensor(np.ascontiguousarray(genotypes, dtype=np.int8))
    return _posterior_means(model, x, x >= 0, config.batch_size)


def project_blocks(
    snapshot: ReferenceSnapshot,
    input_dir: str | Path,
    blocks: Sequence[str] | None = None,
    *,
    log: Callable[[str], None] | None = None,
) -> Iterator[BlockProjection]:
    """Encode an ingested cohort (``input_dir``) with the snapshot's block models, block by block.

    Parameters
    ----------
    blocks
        Reference blocks to encode (default all, reference order); an unknown
        id raises.

    Yields
    ------
    BlockProjection
        Also for a block with no matched variant (its embedding is then the
        model's answer to an all-missing input; the caller's check fails it).
    """
    input_dir = Path(input_dir)
    reference_blocks = list(snapshot.manifest["block_id"])
    wanted = reference_blocks if blocks is None else list(blocks)
    unknown = [b for b in wanted if b not in set(reference_blocks)]
    if unknown:
        raise CohortInputError(snapshot.folder / "input" / "manifest.tsv", f"the reference {snapshot.reference!r} "
                               f"has no block {unknown[0]}", where=f"block {unknown[0]}")
    match, target = match_cohort(snapshot, input_dir)
    manifest = layout.read_manifest(input_dir).set_index("block_id")
    n_subjects = len(layout.read_subjects(input_dir))
    cache: dict[str, np.ndarray] = {}

    def load(block: str) -> np.ndarray:
        if block not in cache:
            row = {"block_id": block, "file": manifest.at[block, "file"], "n_snps": manifest.at[block, "n_snps"]}
            cache.clear()  # consecutive reference blocks mostly read the same new block: keep one
            cache[block] = layout.load_block(input_dir, row, n_subjects)
        return cache[block]

    for block in wanted:
        config, n_snps = block_config(snapshot, block)
        genotypes = gather_block(match, block, target, load, n_subjects)
        if genotypes.shape[1] != n_snps:
            raise CohortInputError(snapshot.folder / "input" / "variants.parquet", f"lists {genotypes.shape[1]} variants "
                                   f"but the block model expects {n_snps}", where=f"block {block}")
        model = load_block_model(snapshot.phase1_dir(block), config, n_snps)
        counts = match.counts(block)
        if log is not None:
            log(f"{block}: {counts['n_matched']}/{counts['n_reference']} reference variants matched "
                f"({counts['swapped'] + counts['strand_flipped_swapped']} recoded 2-g, {counts['ambiguous_dropped']} ambiguous dropped)")
        yield BlockProjection(block, encode(model, config, genotypes), counts)


def save_block_projection(projection: BlockProjection, out_dir: str | Path, subject_ids: Sequence[str],
                          snapshot: ReferenceSnapshot) -> dict[str, Path]:
    """Write ``embedding.parquet``, ``embedding.npy`` and ``projection.json`` (counts, reference, version, model hash)."""
    out_dir = Path(out_dir)
    frame = pd.DataFrame(projection.embedding, columns=[f"z{i}" for i in range(projection.embedding.shape[1])])
    frame.insert(0, "subject_id", [str(s) for s in subject_ids])
    block = projection.block_id
    record = {"block_id": block, "reference": snapshot.reference, "reference_version": snapshot.version,
              "snapshot": str(snapshot.folder), "model_sha256": snapshot.info["files"].get(f"phase1/{block}/model.pt"),
              "training_fingerprint": snapshot.info.get("block_fingerprints", {}).get(block), **projection.counts}
    return {
        "embedding": storage.write_parquet(out_dir / "embedding.parquet", frame),
        "embedding_npy": storage.write_npy(out_dir / "embedding.npy", projection.embedding.astype(np.float32)),
        "projection": storage.write_json(out_dir / PROJECTION_JSON, record),
    }


def _phase2_config(snapshot: ReferenceSnapshot) -> tuple[CrossBlockConfig, list[float]]:
    """The reference's Phase 2 config and the factor of each seed's block in its subject embedding."""
    path = snapshot.phase2_dir / "metrics.json"
    if not path.exists():
        raise CohortInputError(path, f"missing: the reference {snapshot.reference!r} has no Phase 2 model; "
                               "materialize its subject_embeddings before projecting Phase 2")
    metrics = json.loads(path.read_text())
    config = dict(metrics["config"])
    config["seeds"] = tuple(config["seeds"])
    fields = {f.name for f in dataclasses.fields(CrossBlockConfig)}
    config = CrossBlockConfig(**{k: v for k, v in config.items() if k in fields})
    scales = metrics.get("seed_scales")
    if scales is None or len(scales) != len(config.seeds):
        raise CohortInputError(path, f"the reference {snapshot.reference!r} was trained before subject embeddings "
                               "joined every seed (no seed_scales); rematerialize its subject_embeddings")
    return config, [float(s) for s in scales]


def project_subjects(snapshot: ReferenceSnapshot, phase1_dir: str | Path, subject_ids: Sequence[str]) -> pd.DataFrame:
    """Phase 2 subject embeddings (``subject_id, e0..``) of projected Phase 1 embeddings in ``phase1_dir``."""
    config, scales = _phase2_config(snapshot)
    meta = snapshot.manifest[["block_id", "chrom", "start", "end"]]
    reference_ids = layout.read_subjects(snapshot.folder / "input")
    reference = BlockEmbeddingStore.from_phase1_dir(snapshot.folder / "phase1", meta, reference_ids)
    new = BlockEmbeddingStore.from_phase1_dir(phase1_dir, meta, subject_ids)
    standardize, _, _ = phase2_input_space(reference, config)
    per_seed = []
    for seed in config.seeds:
        model = CrossBlockTransformer(reference.dims, reference.chrom_index(), reference.position_mb(), config)
        weights = snapshot.phase2_dir / f"model_seed{seed}.pt"
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        per_seed.append(_encode(model, new, standardize, np.arange(new.n_subjects), config.batch_size, torch.device("cpu")))
    embedding, _ = seed_ensemble(per_seed, scales)  # the reference's own factors, not the new cohort's
    frame = pd.DataFrame(embedding, columns=[f"e{i}" for i in range(embedding.shape[1])])
    frame.insert(0, "subject_id", new.subject_ids)
    return frame
