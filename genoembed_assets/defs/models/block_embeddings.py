"""Phase 1 as a partitioned asset: one beta-VAE per (cohort, block).

A run may hold any set of block keys (a backfill range, a few scattered blocks,
several cohorts); the body groups them by cohort and trains all of them in one
process with the stacked trainer. A block whose artifacts already exist for the
same input file and configuration is not retrained (resume after a killed run):
the check takes the file's content hash from the ingest record (written once at
ingest), so a resumed run reads no block contents unless a file changed.
"""

import dataclasses
import hashlib
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Optional

import dagster as dg
import numpy as np

from ... import storage as atomic
from ...genotypes import ingest_record, layout
from ...models import PRESETS, BlockFit, BlockVAEConfig, save_block_fit, train_blocks
from ..metadata import markdown_table
from ..partitions import block_backfill_policy, cohort_block_partitions, group_by_cohort, multi_key, run_partition_keys
from ..resources import ComputeResource, GenoembedStorage
from . import projection

FINGERPRINT = "fingerprint.json"
PHASE1_CHECKS = [
    ("embeddings_finite", "Every embedding and training metric in the run is finite."),
    ("beats_mode_baseline", "Held-out masked accuracy of every block is at least its per-variant mode baseline (warning)."),
    ("active_latent_units", "Every block keeps at least one active latent unit."),
    ("beats_pca_baseline", "Held-out masked accuracy of every block model (the VAE with its local LD head) is above "
     "a rank-k PCA reconstruction of its genotypes, k = latent size (warning)."),
    ("imputer_beats_pca", "Held-out masked accuracy of every block's LD-neighbour imputer (blended with the VAE "
     "by imputed_genotypes) is above the rank-k PCA reconstruction (warning)."),
]


class BlockEmbeddingConfig(dg.Config):
    """Phase 1 settings: a named preset, with any field overridden.

    ``preset`` left empty takes ``$GENOEMBED_PHASE1_PRESET`` (default ``balanced``), so
    daemon and UI backfills, which carry no run config, follow the deployment's choice.
    """

    preset: Optional[str] = None
    latent_size: Optional[int] = None
    hidden_widths: Optional[list[int]] = None
    beta: Optional[float] = None
    beta_schedule: Optional[str] = None
    max_epochs: Optional[int] = None
    patience: Optional[int] = None
    mask_rate_min: Optional[float] = None
    mask_rate_max: Optional[float] = None
    focal_gamma: Optional[float] = None
    batch_size: Optional[int] = None
    seed: Optional[int] = None
    # project onto this cohort's frozen models instead of training (else cohort.json's "reference", if any)
    reference: Optional[str] = None

    @property
    def preset_name(self) -> str:
        return self.preset or os.environ.get("GENOEMBED_PHASE1_PRESET", "balanced")

    def to_model_config(self) -> BlockVAEConfig:
        if self.preset_name not in PRESETS:
            raise ValueError(f"unknown Phase 1 preset {self.preset_name!r}; choose one of {sorted(PRESETS)}")
        overrides = {k: v for k, v in self.model_dump().items() if k not in ("preset", "reference") and v is not None}
        if "hidden_widths" in overrides:
            overrides["hidden_widths"] = tuple(overrides["hidden_widths"])
        # BlockVAEConfig validates in __post_init__: a bad value fails here, before training
        return dataclasses.replace(PRESETS[self.preset_name], **overrides)


def _fingerprint(content_sha256: str, config: BlockVAEConfig) -> str:
    """Resume key of one block: its file's content hash (from the ingest record) and the config."""
    return hashlib.sha256(f"{content_sha256}\n{_config_json(config)}".encode()).hexdigest()


def _config_json(config: BlockVAEConfig) -> str:
    return json.dumps(dataclasses.asdict(config), sort_keys=True)


def _legacy_fingerprint(block_file: Path, config: BlockVAEConfig) -> str:
    """The key markers written before the ingest record had: a hash over the file's bytes and the config."""
    with open(block_file, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256")
    digest.update(_config_json(config).encode())
    return digest.hexdigest()


def resume_keys(folder: Path, files: dict[str, str], config: BlockVAEConfig) -> tuple[dict[str, str], dict[str, str]]:
    """Resume key of each block (``block -> key``) and the files whose contents had to be hashed.

    ``files`` maps block IDs to manifest ``file`` values in the ingested ``folder``. Hashes
    come from the ingest record where it still describes the file (no read); the second
    dict is ``file -> reason`` for the others (see :func:`.ingest_record.content_hashes`).
    """
    hashes, rehashed = ingest_record.content_hashes(folder, files.values())
    return {block: _fingerprint(hashes[rel], config) for block, rel in files.items()}, rehashed


def rehash_note(rehashed: dict[str, str]) -> str:
    """One log line for the block files the resume check had to read, with the reasons counted."""
    reasons = ", ".join(f"{n} {why}" for why, n in Counter(rehashed.values()).items())
    return (f"hashed {len(rehashed)} block file(s) for the resume check ({reasons}; e.g. {next(iter(rehashed))}); "
            "re-ingest the cohort to record them")


def is_complete(out: Path, fingerprint: str, block_file: Path, config: BlockVAEConfig) -> bool:
    """Whether ``out`` holds every artifact of a fit with this input and config.

    A marker from before the ingest record (no ``scheme``) is checked once against the
    old whole-file key and, when it matches, rewritten with the new one, so blocks
    trained by an older version are kept rather than retrained.
    """
    marker = out / FINGERPRINT
    if not marker.exists() or not all((out / f).exists() for f in ("embedding.parquet", "embedding.npy", "model.pt", "metrics.json")):
        return False
    stored = json.loads(marker.read_text())
    if stored.get("fingerprint") == fingerprint:
        return True
    if "scheme" not in stored and stored.get("fingerprint") == _legacy_fingerprint(block_file, config):
        mark_complete(out, fingerprint)
        return True
    return False


def mark_complete(out: Path, fingerprint: str) -> None:
    """Write the marker; written after every other artifact, so its presence means the fit is complete."""
    atomic.write_json(out / FINGERPRINT, {"fingerprint": fingerprint, "scheme": "content-sha256+config"})


def _block_summary(metrics: dict) -> dict:
    # heldout_accuracy: the block model (VAE + local head); vae_heldout_accuracy: the VAE alone (the embedding's)
    keep = ["heldout_accuracy", "vae_heldout_accuracy", "mode_baseline_accuracy", "pca_baseline_accuracy", "knn_baseline_accuracy",
            "ld_imputer_accuracy", "heldout_r2", "pca_baseline_r2", "recon_loss", "kl", "active_units", "epochs_run", "n_snps"]
    return {k: metrics[k] for k in keep if k in metrics}


@dg.asset(
    partitions_def=cohort_block_partitions,
    backfill_policy=block_backfill_policy,
    group_name="phase1",
    deps=["block_genotypes"],
    pool="gpu",
    kinds={"pytorch"},
    check_specs=[dg.AssetCheckSpec(name, asset="block_embeddings", description=d)
                 for name, d in PHASE1_CHECKS + projection.PROJECTION_CHECKS],
    description="Phase 1: a beta-VAE per LD block; per subject the posterior-mean latent vector "
    "(results/<cohort>/phase1/<block>/embedding.parquet), weights, training curve and metrics.",
)
def block_embeddings(
    context: dg.AssetExecutionContext, config: BlockEmbeddingConfig, storage: GenoembedStorage, compute: ComputeResource
) -> dg.MaterializeResult:
    model_config = config.to_model_config()
    device = compute.torch_device()
    keys = run_partition_keys(context)
    context.log.info(f"Phase 1 on {device}: {len(keys)} block partition(s), preset {config.preset_name!r}")
    rows, skipped, absent = [], [], []
    projected, lineage = [], {}
    start = time.perf_counter()
    for cohort, blocks in group_by_cohort(keys).items():
        reference = projection.cohort_reference(storage, cohort, config.reference)
        if reference is not None:
            done, lacking, snapshot = projection.project_cohort_blocks(context, storage, cohort, reference, blocks)
            projected += done
            absent += lacking
            lineage = projection.lineage(snapshot)
            continue
        projection.forget_projection(storage, cohort)
        inp = storage.input_dir(cohort)
        manifest = layout.read_manifest(inp).set_index("block_id")
        subjects = layout.read_subjects(inp)
        todo = []
        prints, rehashed = resume_keys(inp, {b: manifest.at[b, "file"] for b in blocks if b in manifest.index}, model_config)
        if rehashed:
            context.log.info(f"{cohort}: {rehash_note(rehashed)}")  # one line per run, not one per block
        for block in blocks:
            if block not in manifest.index:
                absent.append(block)
                context.log_event(dg.AssetObservation("block_embeddings", partition=str(multi_key(cohort, block)),
                                                      metadata={"present": False}))
                continue
            out = storage.phase1_dir(cohort, block)
            if is_complete(out, prints[block], inp / manifest.at[block, "file"], model_config):
                skipped.append(block)
                rows.append({"cohort": cohort, "block_id": block, "trained": False,
                             **_block_summary(json.loads((out / "metrics.json").read_text()))})
                continue
            todo.append((block, layout.load_block(inp, {"block_id": block, "file": manifest.at[block, "file"],
                                                         "n_snps": manifest.at[block, "n_snps"]}, len(subjects))))
        if skipped:
            context.log.info(f"{cohort}: {len(skipped)} block(s) already trained with this input and config, not retrained")

        def save(fit: BlockFit, cohort=cohort, subjects=subjects, prints=prints) -> None:
            out = storage.phase1_dir(cohort, fit.block_id)
            save_block_fit(fit, out, subjects)
            mark_complete(out, prints[fit.block_id])
            summary = _block_summary(fit.metrics)
            rows.append({"cohort": cohort, "block_id": fit.block_id, "trained": True, **summary,
                         "finite": bool(np.isfinite(fit.embedding).all() and np.isfinite(
                             [v for k, v in summary.items() if "r2" not in k]).all())})  # r2 is NaN on a constant truth
            context.log_event(dg.AssetObservation(
                "block_embeddings", partition=str(multi_key(cohort, fit.block_id)),
                metadata={"present": True, "path": dg.MetadataValue.path(str(out)), **summary},
            ))
            context.log.info(f"{cohort}/{fit.block_id}: held-out accuracy {summary['heldout_accuracy']:.3f} "
                             f"(mode baseline {summary['mode_baseline_accuracy']:.3f}), {summary['active_units']} active units")

        if todo:
            train_blocks(todo, model_config, device=device, log=context.log.info, on_fit=save)
    seconds = time.perf_counter() - start
    return dg.MaterializeResult(
        metadata={
            "n_partitions": len(keys),
            "n_trained": sum(1 for r in rows if r.get("trained")),
            "skipped_blocks": dg.MetadataValue.json(skipped),
            "absent_blocks": dg.MetadataValue.json(absent),
            "device": device,
            "seconds": round(seconds, 1),
            "config": dg.MetadataValue.json(dataclasses.asdict(model_config)),
            "blocks": markdown_table(_table(rows)),
            **({"n_projected": len(projected), **lineage,
                "projected_blocks": markdown_table(projection.projection_table(projected))} if projected else {}),
        },
        check_results=_checks(rows + projected) + projection.projection_checks(projected),
    )


def _table(rows: list[dict]):
    import pandas as pd

    return pd.DataFrame(rows).drop(columns=["finite"], errors="ignore")


def _at_or_below_pca(rows: list[dict], key: str) -> list[str]:
    """'block (score <= pca)' for each row whose ``key`` accuracy does not beat its PCA baseline."""
    return [f"{r['block_id']} ({r[key]:.3f} <= {r['pca_baseline_accuracy']:.3f})"
            for r in rows if r.get("pca_baseline_accuracy", -1.0) >= r[key]]


def _checks(rows: list[dict]) -> list[dg.AssetCheckResult]:
    present = [r for r in rows if "heldout_accuracy" in r]
    nonfinite = [r["block_id"] for r in rows if not r.get("finite", True)]  # projected blocks too
    below = [f"{r['block_id']} ({r['heldout_accuracy']:.3f} < {r['mode_baseline_accuracy']:.3f})"
             for r in present if r["heldout_accuracy"] < r["mode_baseline_accuracy"]]
    dead = [r["block_id"] for r in present if r["active_units"] < 1]
    under_pca = _at_or_below_pca(present, "heldout_accuracy")
    scored = [r for r in present if "ld_imputer_accuracy" in r]
    imputer_under = _at_or_below_pca(scored, "ld_imputer_accuracy")
    worst = min((r["heldout_accuracy"] - r["mode_baseline_accuracy"] for r in present), default=0.0)
    return [
        dg.AssetCheckResult(check_name="embeddings_finite", passed=not nonfinite,
                            metadata={"message": f"non-finite blocks: {nonfinite}" if nonfinite else f"{len(present)} block(s) finite"}),
        # a block under its mode baseline is worth a look, not a reason to stop the cohort (a WARN)
        dg.AssetCheckResult(check_name="beats_mode_baseline", passed=not below, severity=dg.AssetCheckSeverity.WARN,
                            metadata={"message": "below baseline: " + ", ".join(below) if below else "every block at or above its mode baseline",
                                      "min_margin": float(worst)}),
        dg.AssetCheckResult(check_name="active_latent_units", passed=not dead,
                            metadata={"message": f"no active unit in {dead}" if dead else "every block has an active latent unit"}),
        dg.AssetCheckResult(check_name="beats_pca_baseline", passed=not under_pca, severity=dg.AssetCheckSeverity.WARN,
                            metadata={"message": f"{len(under_pca)}/{len(present)} block(s) at or below PCA: " + ", ".join(under_pca[:20])
                                      if under_pca else f"every block model above its rank-k PCA baseline ({len(present)})"}),
        dg.AssetCheckResult(check_name="imputer_beats_pca", passed=not imputer_under, severity=dg.AssetCheckSeverity.WARN,
                            metadata={"message": f"{len(imputer_under)}/{len(scored)} block(s) at or below PCA: "
                                      + ", ".join(imputer_under[:20]) if imputer_under
                                      else f"every block's imputer above its rank-k PCA baseline ({len(scored)})"}),
    ]
