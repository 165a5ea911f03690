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
from . import projection

MIN_EFFECTIVE_RANK = 2.0
MIN_DIM_VARIANCE = 1e-6
MIN_RANK_STABILITY = 0.5
# Share of the significant blocks that each seed ranks on top (see models._importance.top_block_agreement).
MIN_TOP_AGREEMENT = 0.75
# FDR level at which a block's importance counts as beating its permutation null.
IMPORTANCE_Q = 0.05
# Each check of the multi-asset and the asset it checks (the projection branch reports all of them).
PHASE2_CHECK_ASSETS = {"embedding_finite_and_not_collapsed": "subject_embeddings", "importance_beats_null": "block_importance",
                       "importance_valid": "block_importance", "rank_stable_across_seeds": "block_importance"}


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
    importance_permutations: Optional[int] = None

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
                     description="Importance of each block: its held-out predictability from the other "
                     "blocks (R2 when hidden; distal R2 for blocks dependent only through LD), tested "
                     "against a permutation null (z, p, BH q), with genes, rank, per-seed values and "
                     "the prediction-weighted attention (results/<cohort>/phase2/block_importance.parquet)."),
    ],
    partitions_def=cohort_partitions,
    pool="gpu",
    check_specs=[
        dg.AssetCheckSpec("embedding_finite_and_not_collapsed", asset="subject_embeddings",
                          description="Finite values, every dimension varies, effective rank above a floor."),
        dg.AssetCheckSpec("importance_beats_null", asset="block_importance",
                          description=f"At least one block's importance beats its permutation null at BH q < {IMPORTANCE_Q} "
                          "(warning: otherwise Phase 2 found no cross-block structure)."),
        dg.AssetCheckSpec("importance_valid", asset="block_importance",
                          description="p and q values finite and in [0, 1]; importance sums to 1 overall and per seed."),
        dg.AssetCheckSpec("rank_stable_across_seeds", asset="block_importance",
                          description=f"Seeds agree on the blocks that beat the null: on average >= {MIN_TOP_AGREEMENT:.0%} of "
                          f"them in each seed's top k; with none, mean pairwise Spearman across seeds >= {MIN_RANK_STABILITY} (warning)."),
    ],
)
def cross_block_embeddings(context: dg.AssetExecutionContext, config: CrossBlockAssetConfig, storage: GenoembedStorage,
                           compute: ComputeResource):
    cohort = context.partition_key
    snapshot = projection.snapshot_of(storage, cohort)
    if snapshot is not None:  # projected cohort: the reference's frozen Transformer, nothing trained
        yield from projection.projected_phase2(context, storage, cohort, snapshot, PHASE2_CHECK_ASSETS)
        return
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
    table = result.block_importance
    top = table.sort_values("rank").head(10)
    beats = _beats_null_check(table)
    valid = _valid_check(table, result.importance_by_seed)
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
            "top_block_agreement": float(m["top_block_agreement"]),
            "leading_block": str(top.iloc[0]["block_id"]),
            "significant_blocks": int((table["importance_q"] < IMPORTANCE_Q).sum()),
            "ld_only_blocks": int(table["ld_only"].sum()),
            "null_permutations": int(model_config.importance_permutations),
            "importance_subjects": int(m["importance_subjects"]),
            "importance_seconds": round(float(m["importance_seconds"]), 1),
            "top_blocks": markdown_table(top[["rank", "block_id", "chrom", "start", "end", "genes", "importance_mean", "importance_r2",
                                              "importance_z", "importance_p", "importance_q", "ld_only"]]),
        },
    )
    yield dg.AssetCheckResult(
        asset_key="subject_embeddings", check_name="embedding_finite_and_not_collapsed", passed=finite and not collapsed,
        metadata={"message": "finite and not collapsed" if finite and not collapsed else
                  f"finite={finite}, min dim variance {m['embedding_dim_variance_min']:.2e}, effective rank {m['embedding_effective_rank']:.2f}",
                  "effective_rank": float(m["embedding_effective_rank"]), "min_dim_variance": float(m["embedding_dim_variance_min"])},
    )
    yield beats
    yield valid
    yield _stability_check(result.rank_stability, float(m["top_block_agreement"]))


def _beats_null_check(table) -> dg.AssetCheckResult:
    """WARN unless some block beats its permutation null at q < IMPORTANCE_Q; names the leaders."""
    hits = table[table["importance_q"] < IMPORTANCE_Q].sort_values("rank")
    if len(hits):
        named = ", ".join(f"{r.block_id} (z {r.importance_z:.1f}, q {r.importance_q:.2g})" for r in hits.head(5).itertuples())
        message = f"{len(hits)} block(s) beat the permutation null at q < {IMPORTANCE_Q}: {named}"
    else:
        best = table.sort_values("rank").iloc[0]
        message = (f"no block's importance exceeds its permutation null: Phase 2 found no cross-block structure "
                   f"(best {best['block_id']}: z {best['importance_z']:.1f}, q {best['importance_q']:.2g})")
    return dg.AssetCheckResult(
        asset_key="block_importance", check_name="importance_beats_null", passed=bool(len(hits)),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"message": message, "significant_blocks": int(len(hits)),
                  "min_q": float(table["importance_q"].min())},
    )


def _valid_check(table, by_seed) -> dg.AssetCheckResult:
    """ERROR when a p or q value is not a finite number in [0, 1] or importance does not sum to 1."""
    problems = []
    for column in ("importance_p", "importance_p_empirical", "importance_q"):
        values = table[column].to_numpy(float)
        if not (np.isfinite(values).all() and ((values >= 0) & (values <= 1)).all()):
            problems.append(f"{column} outside [0, 1] or not finite")
    total = float(table["importance_mean"].sum())
    if not np.isclose(total, 1.0, atol=1e-4):
        problems.append(f"importance_mean sums to {total:.6f}")
    sums = np.asarray(by_seed).sum(axis=1)
    if not (np.isfinite(by_seed).all() and np.allclose(sums, 1.0, atol=1e-4)):
        problems.append(f"per-seed sums {np.round(sums, 6).tolist()}")
    return dg.AssetCheckResult(
        asset_key="block_importance", check_name="importance_valid", passed=not problems,
        metadata={"message": "; ".join(problems) if problems else "p and q in [0, 1]; importance sums to 1 overall and per seed"},
    )


def _stability_check(spearman: float, agreement: float) -> dg.AssetCheckResult:
    """WARN when seeds disagree on the leading blocks.

    Judged on the blocks that beat the null when there are any: Spearman over
    every block mostly measures the order of blocks without signal, which is
    noise (0.34 on the demo, every seed with the same three blocks on top).
    """
    if np.isfinite(agreement):
        stable = agreement >= MIN_TOP_AGREEMENT
        message = (f"seeds put {agreement:.0%} of the significant blocks in their top k (Spearman over all blocks {spearman:.3f})"
                   + ("" if stable else f" < {MIN_TOP_AGREEMENT:.0%}: treat the importance ranking with caution"))
    else:
        stable = spearman >= MIN_RANK_STABILITY
        message = (f"no significant block; rank stability (Spearman across seeds) {spearman:.3f}"
                   + ("" if stable else f" < {MIN_RANK_STABILITY}: treat the importance ranking with caution"))
    return dg.AssetCheckResult(
        asset_key="block_importance", check_name="rank_stable_across_seeds", passed=bool(stable),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"message": message, "rank_stability": float(spearman),
                  "top_block_agreement": float(agreement) if np.isfinite(agreement) else None},
    )
