"""What the cohort sensor and the refresh schedule share: where a cohort stands, and its runs.

A cohort goes through two stages of runs, because its assets have two partitions
definitions and one run cannot mix them:

1. ``inputs``: the cohort-level input assets (group ``inputs``, partitioned by cohort),
2. ``blocks``: every block-level asset (cohort x block), as range runs of at most
   ``max_partitions_per_run`` keys (the block assets' backfill policy).

Everything downstream at cohort level (Phase 2, analyses) follows by declarative
automation. Every run requested here is tagged with the cohort, the stage and the
fingerprint of the cohort folder it was requested for (``genoembed/*`` tags), so the
sensor and the schedule never request the same work twice, whoever asked first.

Where a cohort stands is read from the instance, not from a cursor: the
fingerprint its last ``cohort_input`` materialization was made from (metadata
``fingerprint``, else the run's fingerprint tag) and whether every block partition
of the cohort was materialized after that.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import dagster as dg

from ...genotypes import ingest
from ...genotypes.errors import CohortInputError
from ...genotypes.sources import ENTRY_SUFFIXES
from ..partitions import BLOCKS, BLOCKS_PER_RUN, COHORTS, check_cohort_name, cohort_block_partitions, cohort_partitions, multi_key

COHORT_TAG = "genoembed/cohort"
STAGE_TAG = "genoembed/stage"
FINGERPRINT_TAG = "genoembed/fingerprint"
INPUTS, BLOCK_STAGE, DOWNSTREAM = "inputs", "blocks", "downstream"
INPUT_ASSET = dg.AssetKey("cohort_input")
INPUT_GROUP = "inputs"

# The job every run request targets: Dagster's implicit job holding every asset.
# A sensor's own anonymous job cannot hold assets with different partitions
# definitions, so the sensor names this one and each request selects a subset.
ASSET_JOB = "__ASSET_JOB"

# Set GENOEMBED_GPU_RUNS=1 on a Kubernetes deployment: block-stage runs then ask the
# K8sRunLauncher for one GPU (see deploy/README.md). Read at tick time.
GPU_RUNS_ENV = "GENOEMBED_GPU_RUNS"
GPU_K8S_CONFIG = {
    "container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}, "requests": {"nvidia.com/gpu": "1"}}},
    "pod_spec_config": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
}

# Files that mark a folder as holding a whole genotype set (one per accepted layout):
# the readers' own list, so a new format (PLINK 2 .pgen) is never missed here.
_ENTRY_SUFFIXES = ENTRY_SUFFIXES


# ------------------------------------------------------------------ the graph


@dataclass(frozen=True)
class Stages:
    """The asset keys of each stage, read from the asset graph."""

    inputs: list[dg.AssetKey]
    blocks: list[dg.AssetKey]
    downstream: list[dg.AssetKey]
    blocks_per_run: int


def graph_stages(asset_graph) -> Stages:
    """Sort the graph's materializable assets into the three stages."""
    inputs, blocks, downstream = [], [], []
    per_run = BLOCKS_PER_RUN
    for key in sorted(asset_graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = asset_graph.get(key)
        if not node.is_materializable:
            continue
        if node.partitions_def == cohort_block_partitions:
            blocks.append(key)
            policy = node.backfill_policy
            if policy is not None and policy.max_partitions_per_run:
                per_run = min(per_run, policy.max_partitions_per_run)
        elif node.partitions_def == cohort_partitions:
            (inputs if node.group_name == INPUT_GROUP else downstream).append(key)
    return Stages(inputs, blocks, downstream, per_run)


# ------------------------------------------------------------------ folders


@dataclass(frozen=True)
class Folder:
    """One sub-folder of the cohorts root and what the sensor makes of it."""

    name: str
    path: Path
    status: str  # "ready", "writing" or "invalid"
    reason: str = ""
    fingerprint: str = ""


def newest_mtime(folder: Path) -> float:
    newest = folder.stat().st_mtime
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith("."):
                try:
                    newest = max(newest, (Path(root) / name).stat().st_mtime)
                except FileNotFoundError:  # removed while we looked: still being written
                    return time.time()
    return newest


def _has_entry_file(folder: Path) -> bool:
    if (folder / "manifest.tsv").exists():
        return True
    return any(p.name.lower().endswith(_ENTRY_SUFFIXES) for p in folder.iterdir() if p.is_file())


def inspect_folders(root: Path, *, settle_seconds: float, now: float | None = None) -> list[Folder]:
    """Every sub-folder of ``root`` (sorted), classified without reading genotypes.

    A folder is ``writing`` while it has no manifest (nor a PLINK/VCF file) yet or
    while any file in it changed within the last ``settle_seconds``; ``invalid``
    when its name is not a usable partition key; else ``ready`` with its fingerprint.
    """
    now = time.time() if now is None else now
    found = []
    if not root.is_dir():
        return found
    for path in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            check_cohort_name(path.name)
        except ValueError as exc:
            found.append(Folder(path.name, path, "invalid", str(exc)))
            continue
        if not _has_entry_file(path):
            found.append(Folder(path.name, path, "writing", "no manifest.tsv, .bed or VCF/BCF file yet"))
            continue
        age = now - newest_mtime(path)
        if age < settle_seconds:
            found.append(Folder(path.name, path, "writing", f"changed {age:.0f} s ago (waiting {settle_seconds:.0f} s)"))
            continue
        found.append(Folder(path.name, path, "ready", fingerprint=ingest.fingerprint(path)))
    return found


def scan(folder: Folder):
    """``scan_cohort`` of a ready folder, or the CohortInputError saying why it is unusable."""
    try:
        return ingest.scan_cohort(folder.path), None
    except CohortInputError as exc:
        return None, exc


# ------------------------------------------------------------------ instance state


@dataclass(frozen=True)
class Ingested:
    """The cohort's last ``cohort_input`` materialization."""

    fingerprint: str | None
    storage_id: int
    timestamp: float


def last_ingested(instance: dg.DagsterInstance, cohort: str) -> Ingested | None:
    if not instance.has_dynamic_partition(COHORTS, cohort):
        return None
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=INPUT_ASSET, asset_partitions=[cohort]), limit=1
    ).records
    if not records:
        return None
    record = records[0]
    entry = record.asset_materialization.metadata.get("fingerprint")
    fingerprint = getattr(entry, "value", entry)
    if fingerprint is None:
        run = instance.get_run_by_id(record.run_id)
        fingerprint = run.tags.get(FINGERPRINT_TAG) if run else None
    return Ingested(fingerprint, record.storage_id, record.timestamp)


def cohort_block_keys(instance: dg.DagsterInstance, cohort: str) -> list[str]:
    """Every registered block key of ``cohort``, in registration (genomic) order."""
    return [str(multi_key(cohort, b)) for b in instance.get_dynamic_partitions(BLOCKS)]


def blocks_outdated(instance: dg.DagsterInstance, cohort: str, block_assets: Iterable[dg.AssetKey], since: Ingested) -> bool:
    """Whether any block partition of ``cohort`` was not materialized after ``since``."""
    keys = set(cohort_block_keys(instance, cohort))
    for asset in block_assets:
        done = instance.get_materialized_partitions(asset, after_cursor=since.storage_id)
        if not keys <= done:
            return True
    return False


def stage_runs(instance: dg.DagsterInstance, cohort: str, stage: str, fingerprint: str) -> list[dg.DagsterRun]:
    """Runs already requested for this cohort, stage and folder fingerprint (any status)."""
    return list(instance.get_runs(dg.RunsFilter(tags={COHORT_TAG: cohort, STAGE_TAG: stage, FINGERPRINT_TAG: fingerprint})))


def pending_or_done(runs: Sequence[dg.DagsterRun]) -> bool:
    """True when one of ``runs`` is queued, running or succeeded (a failure may be retried)."""
    return any(r.status not in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED) for r in runs)


def in_flight(runs: Sequence[dg.DagsterRun]) -> bool:
    """True when one of ``runs`` has not finished yet."""
    return any(not r.is_finished for r in runs)


# ------------------------------------------------------------------ run requests


def _tags(cohort: str, stage: str, fingerprint: str) -> dict[str, str]:
    return {COHORT_TAG: cohort, STAGE_TAG: stage, FINGERPRINT_TAG: fingerprint}


def inputs_request(cohort: str, fingerprint: str, stages: Stages, *, reason: str) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=f"{cohort}:{INPUTS}:{fingerprint[:16]}",
        asset_selection=stages.inputs,
        partition_key=cohort,
        tags={**_tags(cohort, INPUTS, fingerprint), "genoembed/reason": reason},
    )


def chunk(keys: Sequence[str], size: int) -> list[Sequence[str]]:
    return [keys[i:i + size] for i in range(0, len(keys), size)]


def block_requests(cohort: str, fingerprint: str, block_ids: Sequence[str], stages: Stages, *, reason: str) -> list[dg.RunRequest]:
    """Range runs over ``block_ids`` (registration order), at most ``blocks_per_run`` keys each."""
    tags = {**_tags(cohort, BLOCK_STAGE, fingerprint), "genoembed/reason": reason}
    if os.environ.get(GPU_RUNS_ENV, "").strip() not in ("", "0", "false"):
        tags["dagster-k8s/config"] = json.dumps(GPU_K8S_CONFIG)
    requests = []
    for i, part in enumerate(chunk(list(block_ids), stages.blocks_per_run)):
        requests.append(dg.RunRequest(
            run_key=f"{cohort}:{BLOCK_STAGE}:{fingerprint[:16]}:{i}",
            asset_selection=stages.blocks,
            tags={
                **tags,
                "dagster/asset_partition_range_start": str(multi_key(cohort, part[0])),
                "dagster/asset_partition_range_end": str(multi_key(cohort, part[-1])),
            },
        ))
    return requests
