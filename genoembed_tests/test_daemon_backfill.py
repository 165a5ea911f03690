"""Backfills through a real daemon: launched from the asset (GraphQL), grouped by the backfill policy.

A live ``dagster dev`` (webserver + daemon) runs on a copy of the demo pipeline's
instance. Each test cohort holds the first registered block keys (a contiguous
range), 300 subjects, with its inputs already materialized.
"""

import json
import math

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from genoembed_tests.live_dagster import LiveSession, live_session, wait_for

pytestmark = pytest.mark.slow

PHASE1 = "block_embeddings"
FALLBACK = "block_genotypes"


@pytest.fixture(scope="session")
def live(request) -> LiveSession:
    return live_session(request)


@pytest.fixture(scope="module")
def backfills(live) -> dict[str, str]:
    """Both backfills launched together, so the daemon's polling delays overlap.

    The fault test runs first (it must catch its run mid-training); the basic one
    is usually finished by the time its test looks.
    """
    asset = block_asset()
    return {cohort: live.dagster.launch_backfill(asset, keys_of(live, cohort)) for cohort in ("bf_fault", "bf_basic")}


def block_asset() -> str:
    """The Phase 1 training asset once it exists, else the block QC asset."""
    from genoembed_assets.defs.automation.cohorts import graph_stages
    from genoembed_assets.definitions import defs

    keys = {k.to_user_string() for k in graph_stages(defs.resolve_asset_graph()).blocks}  # materializable ones
    return PHASE1 if PHASE1 in keys else FALLBACK


def max_per_run(asset: str) -> int:
    from genoembed_assets.definitions import defs

    return defs.resolve_asset_graph().get(dg.AssetKey(asset)).backfill_policy.max_partitions_per_run


def keys_of(live: LiveSession, cohort: str) -> list[str]:
    return [f"{b}|{cohort}" for b in live.cohorts[cohort]]


def materialized(live: LiveSession, asset: str, keys: list[str]) -> set[str]:
    with live.instance() as instance:
        return instance.get_materialized_partitions(dg.AssetKey(asset)) & set(keys)


def backfill_runs(live: LiveSession, backfill_id: str) -> list[dict]:
    return live.dagster.runs({"dagster/backfill": backfill_id})


def assert_artifacts_load(live: LiveSession, cohort: str) -> int:
    """Every non-hidden artifact under the cohort's results loads (temp files are hidden)."""
    root = live.results_root / cohort
    n = 0
    for path in root.rglob("*"):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if path.suffix == ".npy":
            np.load(path, allow_pickle=False)
        elif path.suffix == ".parquet":
            pd.read_parquet(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())
        else:
            continue
        n += 1
    return n


def phase1_done_blocks(live: LiveSession, cohort: str) -> dict[str, float]:
    """Blocks whose Phase 1 artifacts are complete, with the embedding file's mtime."""
    base = live.results_root / cohort / "phase1"
    done = {}
    for block in live.cohorts[cohort]:
        metrics, embedding = base / block / "metrics.json", base / block / "embedding.parquet"
        if metrics.exists() and embedding.exists():
            done[block] = embedding.stat().st_mtime_ns
    return done


def test_killed_backfill_run_then_retry_of_failed_keys_completes(live, backfills):
    asset = block_asset()
    cohort = "bf_fault"
    keys = keys_of(live, cohort)
    backfill_id = backfills[cohort]

    def started_run():
        runs = backfill_runs(live, backfill_id)
        return next((r for r in runs if r["status"] == "STARTED"), None)

    run = wait_for("the backfill's run to start", started_run, timeout=240, interval=1)
    if asset == PHASE1:  # let some blocks finish training first
        wait_for("a first trained block", lambda: phase1_done_blocks(live, cohort), timeout=900, interval=0.5)
    assert live.dagster.terminate_run(run["runId"]) == "TerminateRunSuccess"
    status = live.dagster.wait_backfill(backfill_id, timeout=240)
    first_runs = backfill_runs(live, backfill_id)
    assert any(r["status"] in {"CANCELED", "FAILURE"} for r in first_runs), (status, first_runs)
    done_before = materialized(live, asset, keys)
    finished_blocks = phase1_done_blocks(live, cohort) if asset == PHASE1 else {}
    assert done_before != set(keys), "the run finished before it was terminated"
    assert_artifacts_load(live, cohort)  # nothing half-written is left where a reader looks

    failed = [k for k in keys if k not in done_before]
    retry_id = live.dagster.launch_backfill(asset, failed)
    status = live.dagster.wait_backfill(retry_id, timeout=360)
    assert status in {"COMPLETED", "COMPLETED_SUCCESS"}, (status, backfill_runs(live, retry_id), live.dagster.log_tail())
    assert materialized(live, asset, keys) == set(keys)
    assert assert_artifacts_load(live, cohort) > 0

    if asset == PHASE1:
        after = phase1_done_blocks(live, cohort)
        assert set(after) == set(live.cohorts[cohort])
        # blocks trained before the kill were not trained again: same files, and the run says so
        assert {b: after[b] for b in finished_blocks} == finished_blocks
        with live.instance() as instance:
            record = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[keys[0]]), limit=1).records[0]
        skipped = record.asset_materialization.metadata["skipped_blocks"].value
        assert set(finished_blocks) <= set(skipped)


def test_backfill_from_the_asset_runs_in_as_few_runs_as_the_policy_allows(live, backfills):
    asset = block_asset()
    keys = keys_of(live, "bf_basic")
    assert len(keys) >= 8
    backfill_id = backfills["bf_basic"]
    status = live.dagster.wait_backfill(backfill_id, timeout=360)
    runs = backfill_runs(live, backfill_id)
    assert status in {"COMPLETED", "COMPLETED_SUCCESS"}, (status, runs, live.dagster.log_tail())
    assert materialized(live, asset, keys) == set(keys)
    assert len(runs) == math.ceil(len(keys) / max_per_run(asset))
    assert all(r["status"] == "SUCCESS" for r in runs)
    assert_artifacts_load(live, "bf_basic")
