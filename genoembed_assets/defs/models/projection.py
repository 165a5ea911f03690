"""The projection branch of the model assets: encode a cohort with a reference's frozen models.

A cohort names its reference in ``cohort.json`` (``{"reference": "<cohort>"}``,
copied into ``input/cohort.json`` by ingestion) or in the ``reference`` field
of ``block_embeddings``' run config (UI launchpad, ``genoembed project``).
Phase 1 then freezes the reference's models into a versioned snapshot
(``results/<cohort>/reference/<reference>-<version>/``), encodes the blocks
with it and writes ``results/<cohort>/projection.json``, which Phase 2 and
``subject_clusters`` follow: they use the same snapshot, never the
reference's live files. A cohort trained on its own genotypes has no
``projection.json`` (training removes a stale one).
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from ... import storage as atomic
from ...genotypes import layout
from ...genotypes.errors import CohortInputError
from ...models._reference_snapshot import ReferenceSnapshot, freeze_reference, open_snapshot
from ...models.projection import project_blocks, project_subjects, save_block_projection
from ..partitions import multi_key
from ..resources import GenoembedStorage

PROJECTION = "projection.json"
#: Below this share of a block's reference variants matched, the block's projection is a WARN.
MIN_MATCHED_FRACTION = 0.5
PROJECTION_CHECKS = [
    ("variants_matched", "Every projected block has at least one of the reference's variants (passes when training)."),
    ("matched_fraction_above_threshold", f"Every projected block matches at least {MIN_MATCHED_FRACTION:.0%} of the "
     "reference's variants (warning; passes when training)."),
]


def cohort_reference(storage: GenoembedStorage, cohort: str, configured: str | None) -> str | None:
    """The reference a cohort projects onto: the run config's, else its ``cohort.json``'s, else None."""
    reference = configured or layout.read_cohort_settings(storage.input_dir(cohort)).get("reference")
    if reference is not None and (not isinstance(reference, str) or reference == cohort):
        raise CohortInputError(storage.input_dir(cohort) / "cohort.json", f"'reference' must name another cohort, got {reference!r}",
                               where="key 'reference'")
    return reference


def projection_record(storage: GenoembedStorage, cohort: str) -> dict | None:
    path = storage.cohort_dir(cohort) / PROJECTION
    return json.loads(path.read_text()) if path.exists() else None


def forget_projection(storage: GenoembedStorage, cohort: str) -> None:
    """A cohort trained on its own genotypes: its Phase 2 and clusters no longer follow a reference."""
    (storage.cohort_dir(cohort) / PROJECTION).unlink(missing_ok=True)


def snapshot_of(storage: GenoembedStorage, cohort: str) -> ReferenceSnapshot | None:
    record = projection_record(storage, cohort)
    return None if record is None else open_snapshot(record["snapshot"])


def lineage(snapshot: ReferenceSnapshot) -> dict:
    """Metadata naming the reference and the exact snapshot used."""
    return {"reference": snapshot.reference, "reference_version": snapshot.version,
            "reference_snapshot": dg.MetadataValue.path(str(snapshot.folder))}


def project_cohort_blocks(context, storage: GenoembedStorage, cohort: str, reference: str, blocks: list[str]) -> tuple[list[dict], list[str], ReferenceSnapshot]:
    """Encode the requested blocks of ``cohort`` with ``reference``'s frozen models.

    Returns per projected block a row (matched counts), the requested blocks
    the reference lacks, and the snapshot used.
    """
    ref_dir = storage.cohort_dir(reference)
    if not ref_dir.is_dir():
        raise CohortInputError(ref_dir, f"no results for the reference cohort {reference!r}: materialize it first",
                               where=f"cohort {cohort}")
    snapshot = freeze_reference(ref_dir, reference, storage.cohort_dir(cohort) / "reference")
    atomic.write_json(storage.cohort_dir(cohort) / PROJECTION,
                      {"reference": reference, "version": snapshot.version, "snapshot": str(snapshot.folder)})
    known = set(snapshot.manifest["block_id"])
    wanted, absent = [b for b in blocks if b in known], [b for b in blocks if b not in known]
    subjects = layout.read_subjects(storage.input_dir(cohort))
    rows = []
    context.log.info(f"{cohort}: projecting {len(wanted)} block(s) onto {snapshot.label}")
    for projected in project_blocks(snapshot, storage.input_dir(cohort), wanted, log=context.log.info):
        out = storage.phase1_dir(cohort, projected.block_id)
        save_block_projection(projected, out, subjects, snapshot)
        for stale in ("model.pt", "fingerprint.json", "metrics.json", "curve.csv"):  # a trained block's files do not apply
            (out / stale).unlink(missing_ok=True)
        counts = projected.counts
        row = {"cohort": cohort, "block_id": projected.block_id, "projected": True, "reference": reference,
               "variants_file": str(storage.input_dir(cohort) / "variants.parquet"),
               "finite": bool(np.isfinite(projected.embedding).all()), **counts}
        rows.append(row)
        context.log_event(dg.AssetObservation(
            "block_embeddings", partition=str(multi_key(cohort, projected.block_id)),
            metadata={"present": True, "path": dg.MetadataValue.path(str(out)), "matched_fraction": counts["matched_fraction"],
                      "n_matched": counts["n_matched"], "reference": reference, "reference_version": snapshot.version}))
    return rows, absent, snapshot


def projection_table(rows: list[dict]) -> pd.DataFrame:
    keep = ["block_id", "n_reference", "n_matched", "matched_fraction", "exact", "swapped", "strand_flipped",
            "strand_flipped_swapped", "by_order", "ambiguous_dropped", "n_ambiguous_kept", "allele_mismatch", "absent"]
    return pd.DataFrame(rows)[keep] if rows else pd.DataFrame(columns=keep)


def projection_checks(rows: list[dict]) -> list[dg.AssetCheckResult]:
    """ERROR when a projected block matched no variant; WARN below ``MIN_MATCHED_FRACTION``."""
    if not rows:
        return [dg.AssetCheckResult(check_name=name, passed=True, severity=severity,
                                    metadata={"message": "no block projected in this run (trained on its own genotypes)"})
                for (name, _), severity in zip(PROJECTION_CHECKS, (dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN))]
    none = [r["block_id"] for r in rows if r["n_matched"] == 0]
    low = [f"{r['block_id']} ({r['matched_fraction']:.0%})" for r in rows if r["matched_fraction"] < MIN_MATCHED_FRACTION]
    worst = min(r["matched_fraction"] for r in rows)
    return [
        dg.AssetCheckResult(check_name="variants_matched", passed=not none, metadata={
            "message": f"{rows[0]['variants_file']}: no variant matches the reference {rows[0]['reference']!r} in block(s) "
            f"{', '.join(none[:10])}; expected the reference's build and chromosome naming" if none else f"every one of {len(rows)} projected block(s) has matched variants", "blocks_without_match": none}),
        dg.AssetCheckResult(check_name="matched_fraction_above_threshold", passed=not low, severity=dg.AssetCheckSeverity.WARN,
                            metadata={"message": f"below {MIN_MATCHED_FRACTION:.0%} matched: {', '.join(low[:10])}" if low
                                      else f"every projected block matches >= {MIN_MATCHED_FRACTION:.0%} of its reference variants",
                                      "min_matched_fraction": float(worst)}),
    ]


def projected_subject_embeddings(storage: GenoembedStorage, cohort: str, snapshot: ReferenceSnapshot) -> pd.DataFrame:
    """Phase 2 of a projected cohort with the snapshot's frozen Transformer; names a block projected with another version."""
    phase1 = storage.phase1_dir(cohort)
    for block in snapshot.manifest["block_id"]:
        record = phase1 / block / "projection.json"
        version = json.loads(record.read_text()).get("reference_version") if record.exists() else None
        if version != snapshot.version:
            raise CohortInputError(record, f"block projected with reference version {version}, the cohort's snapshot is "
                                   f"{snapshot.version}: rematerialize block_embeddings of {cohort!r}", where=f"block {block}")
    return project_subjects(snapshot, phase1, layout.read_subjects(storage.input_dir(cohort)))


def reference_tables(snapshot: ReferenceSnapshot) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The reference's subject embedding and cluster labels, from the snapshot."""
    embedding, clusters = snapshot.phase2_dir / "subject_embeddings.parquet", snapshot.folder / "analysis" / "subject_clusters.parquet"
    for path in (embedding, clusters):
        if not Path(path).exists():
            raise CohortInputError(path, f"missing in the snapshot of {snapshot.reference!r}: materialize the reference's "
                                   "subject_clusters before projecting clusters")
    return pd.read_parquet(embedding), pd.read_parquet(clusters)


def projected_phase2(context, storage: GenoembedStorage, cohort: str, snapshot: ReferenceSnapshot, check_names: dict):
    """What ``cross_block_embeddings`` yields for a projected cohort: no training, the reference's importance.

    ``check_names`` maps each of the multi-asset's check names to its asset key.
    """
    from ...models._cross_block_training import effective_rank

    embedding = projected_subject_embeddings(storage, cohort, snapshot)
    out = storage.phase2_dir(cohort)
    path = atomic.write_parquet(out / "subject_embeddings.parquet", embedding)
    importance = pd.read_parquet(snapshot.phase2_dir / "block_importance.parquet")
    importance_path = atomic.write_parquet(out / "block_importance.parquet", importance)
    values = embedding.drop(columns="subject_id").to_numpy()
    finite = bool(np.isfinite(values).all())
    rank = effective_rank(values) if finite else float("nan")
    context.log.info(f"{cohort}: Phase 2 with the frozen Transformer of {snapshot.label}: {len(embedding)} subjects, "
                     f"effective rank {rank:.2f}")
    yield dg.MaterializeResult(asset_key="subject_embeddings", metadata={
        "path": dg.MetadataValue.path(str(path)), "n_subjects": len(embedding), "dim": values.shape[1],
        "effective_rank": float(rank), "projected": True, **lineage(snapshot)})
    yield dg.MaterializeResult(asset_key="block_importance", metadata={
        "path": dg.MetadataValue.path(str(importance_path)), "projected": True,
        "note": f"the reference's block importance ({snapshot.label}); a projected cohort trains no Transformer",
        **lineage(snapshot)})
    for name, asset in check_names.items():
        if asset == "subject_embeddings":
            yield dg.AssetCheckResult(asset_key=asset, check_name=name, passed=bool(finite and values.var(axis=0).min() > 0),
                                      metadata={"message": f"projected embedding: finite={finite}, effective rank {rank:.2f}"})
        else:
            yield dg.AssetCheckResult(asset_key=asset, check_name=name, passed=True,
                                      metadata={"message": f"projected: the reference's block importance ({snapshot.label}) was checked when it trained"})


#: What a reference must have before a cohort is projected onto it (so the snapshot holds Phase 2 and clusters too).
REFERENCE_READY = ("phase2/subject_embeddings.parquet", "analysis/subject_clusters.parquet")


def reference_pending(storage: GenoembedStorage, folder: Path) -> str | None:
    """Why the cohort folder's blocks must wait for its reference (None: no reference, or it is ready)."""
    reference = layout.read_cohort_settings(folder).get("reference")
    if not reference:
        return None
    missing = [rel for rel in REFERENCE_READY if not (storage.cohort_dir(reference) / rel).exists()]
    if not missing:
        return None
    return f"projects onto {reference!r}, which is not materialized yet (no {missing[0]})"
