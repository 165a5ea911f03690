"""Phase 2 as a cohort-level multi-asset: subject embeddings and block importance.

Depends on every block partition of its cohort. Block embeddings are streamed
from the per-block files (memory-mapped), never gathered through an IO manager.
"""

import os
from typing import Optional

import dagster as dg
import numpy as np

from ...analysis import png_preview_markdown
from ...genotypes import layout
from ...genotypes.errors import CohortInputError
from ...genotypes.genes import annotate_blocks_with_genes
from ...models import CROSS_BLOCK_PRESETS, BlockEmbeddingStore, fit_cross_block, plot_block_importance, save_cross_block_result
from ..automation.conditions import AFTER_EVERY_BLOCK
from ..metadata import markdown_table
from ..partitions import all_blocks_of_cohort, cohort_partitions
from ..resources import ComputeResource, GenoembedStorage

MIN_EFFECTIVE_RANK = 2.0
MIN_DIM_VARIANCE = 1e-6
MIN_RANK_STABILITY = 0.5


class CrossBlockAssetConfig(dg.Config):
    """Phase 2 settings: a named preset, with any field overridden.

    ``preset`` left empty takes ``$GENOEMBED_PHASE2_PRESET`` (default ``balanced``).
    """

    preset: Optional[str] = None
    width: Optional[int] = None
    layers: Optional[int] = None
    heads: Optional[int] = None
    epochs: Optional[int] = None
    seeds: Optional[list[int]] = None

    def to_model_config(self):
        preset = self.preset or os.environ.get("GENOEMBED_PHASE2_PRESET", "balanced")
        if preset not in CROSS_BLOCK_PRESETS:
            raise ValueError(f"unknown Phase 2 preset {preset!r}; choose one of {sorted(CROSS_BLOCK_PRESETS)}")
        overrides = {k: v for k, v in self.model_dump().items() if k != "preset" and v is not None}
        if "seeds" in overrides:
            overrides["seeds"] = tuple(overrides["seeds"])
        return CROSS_BLOCK_PRESETS[preset].with_overrides(**overrides)


def _build(storage: GenoembedStorage, cohort: str) -> str:
    return layout.read_cohort_settings(storage.input_dir(cohort)).get("build", "hg19")


def open_phase1_store(storage: GenoembedStorage, cohort: str) -> BlockEmbeddingStore:
    """The cohort's Phase 1 embeddings as a streaming store; names any block not trained."""
    inp = storage.input_dir(cohort)
    manifest = layout.read_manifest(inp, check_files=False)
    missing = [b for b in manifest["block_id"] if not (storage.phase1_dir(cohort, b) / "embedding.npy").exists()]
    if missing:
        raise CohortInputError(
            storage.phase1_dir(cohort),
            f"Phase 1 embeddings missing for {len(missing)} of {len(manifest)} block(s): {', '.join(missing[:10])}"
            f"{' ...' if len(missing) > 10 else ''}. Materialize block_embeddings for these partitions "
            f"(or rerun the failed ones) before Phase 2.",
            where=f"cohort {cohort}",
        )
    return BlockEmbeddingStore.from_phase1_dir(storage.phase1_dir(cohort), manifest[["block_id", "chrom", "start", "end"]],
                                               layout.read_subjects(inp))


@dg.multi_asset(
    specs=[
        dg.AssetSpec("subject_embeddings", group_name="phase2", kinds={"pytorch", "parquet"},
                     automation_condition=AFTER_EVERY_BLOCK,
                     deps=[dg.AssetDep("block_embeddings", partition_mapping=all_blocks_of_cohort)],
                     description="Phase 2: one embedding per subject from the cross-block Transformer "
                     "(results/<cohort>/phase2/subject_embeddings.parquet)."),
        dg.AssetSpec("block_importance", group_name="phase2", kinds={"parquet"},
                     automation_condition=AFTER_EVERY_BLOCK,
                     deps=[dg.AssetDep("block_embeddings", partition_mapping=all_blocks_of_cohort)],
                     description="Attention-derived importance of each block, with genes, spread across "
                     "subjects, heads and seeds, rank, and rank stability across seeds."),
    ],
    partitions_def=cohort_partitions,
    pool="gpu",
    check_specs=[
        dg.AssetCheckSpec("embedding_finite_and_not_collapsed", asset="subject_embeddings",
                          description="Finite values, every dimension varies, effective rank above a floor."),
        dg.AssetCheckSpec("importance_normalized", asset="block_importance",
                          description="Finite importance that sums to 1 over blocks for every seed."),
        dg.AssetCheckSpec("rank_stable_across_seeds", asset="block_importance",
                          description=f"Mean pairwise Spearman of block importance across seeds >= {MIN_RANK_STABILITY} (warning)."),
    ],
)
def cross_block_embeddings(context: dg.AssetExecutionContext, config: CrossBlockAssetConfig, storage: GenoembedStorage,
                           compute: ComputeResource):
    cohort = context.partition_key
    model_config = config.to_model_config()
    store = open_phase1_store(storage, cohort)
    device = compute.torch_device()
    context.log.info(f"Phase 2 on {device}: {store.n_subjects} subjects x {store.n_blocks} blocks, seeds {model_config.seeds}")
    result = fit_cross_block(store, model_config, device=device, log=context.log.info)
    result.block_importance.insert(4, "genes", annotate_blocks_with_genes(result.block_importance, _build(storage, cohort)).to_numpy())
    out = storage.phase2_dir(cohort)
    paths = save_cross_block_result(result, out)
    figure = plot_block_importance(result.block_importance, out / "block_importance.png")
    m = result.metrics

    emb = result.subject_embeddings.drop(columns="subject_id").to_numpy()
    finite = bool(np.isfinite(emb).all())
    collapsed = m["embedding_dim_variance_min"] < MIN_DIM_VARIANCE or m["embedding_effective_rank"] < MIN_EFFECTIVE_RANK
    sums = result.importance_by_seed.sum(axis=1)
    normalized = bool(np.isfinite(result.importance_by_seed).all() and np.allclose(sums, 1.0, atol=1e-4))
    top = result.block_importance.sort_values("rank").head(10)
    yield dg.MaterializeResult(
        asset_key="subject_embeddings",
        metadata={
            "path": dg.MetadataValue.path(str(paths["subject_embeddings"])),
            "n_subjects": store.n_subjects,
            "dim": emb.shape[1],
            "effective_rank": float(m["embedding_effective_rank"]),
            "phase1_phase2_distance_correlation": float(result.distance_correlation),
            "distance_correlation_spearman": float(m["distance_correlation_spearman"]),
            "seconds": round(float(m["seconds"]), 1),
            "device": device,
        },
    )
    yield dg.MaterializeResult(
        asset_key="block_importance",
        metadata={
            "path": dg.MetadataValue.path(str(paths["block_importance"])),
            "figure": dg.MetadataValue.path(str(figure)),
            "preview": dg.MetadataValue.md(png_preview_markdown(figure)),
            "rank_stability_spearman": float(result.rank_stability),
            "leading_block": str(top.iloc[0]["block_id"]),
            "top_blocks": markdown_table(top[["rank", "block_id", "chrom", "start", "end", "genes", "importance_mean", "importance_std"]]),
        },
    )
    yield dg.AssetCheckResult(
        asset_key="subject_embeddings", check_name="embedding_finite_and_not_collapsed", passed=finite and not collapsed,
        metadata={"message": "finite and not collapsed" if finite and not collapsed else
                  f"finite={finite}, min dim variance {m['embedding_dim_variance_min']:.2e}, effective rank {m['embedding_effective_rank']:.2f}",
                  "effective_rank": float(m["embedding_effective_rank"]), "min_dim_variance": float(m["embedding_dim_variance_min"])},
    )
    yield dg.AssetCheckResult(
        asset_key="block_importance", check_name="importance_normalized", passed=normalized,
        metadata={"message": "each seed's importance sums to 1" if normalized else f"seed sums {sums.tolist()}"},
    )
    stable = result.rank_stability >= MIN_RANK_STABILITY
    yield dg.AssetCheckResult(
        asset_key="block_importance", check_name="rank_stable_across_seeds", passed=bool(stable),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"message": f"rank stability (Spearman across seeds) {result.rank_stability:.3f}"
                  + ("" if stable else f" < {MIN_RANK_STABILITY}: treat the importance ranking with caution"),
                  "rank_stability": float(result.rank_stability)},
    )
