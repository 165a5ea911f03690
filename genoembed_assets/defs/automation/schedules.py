"""The nightly refresh: what the sensor did not catch (it was stopped, a run failed, code changed).

``cohort_refresh_schedule`` runs at 03:00 every day (cron ``0 3 * * *``, timezone of
the deployment's ``execution_timezone``, UTC by default) and, for every registered
cohort whose folder is still under the cohorts root:

* inputs changed: the folder's fingerprint differs from the one its last
  ``cohort_input`` materialization was made from -> an ``inputs`` run (the cohort
  sensor then requests the block runs, as for a new folder);
* inputs current but blocks stale: some block partition of the cohort was not
  materialized after the inputs -> block range runs;
* analyses stale: a cohort-level asset below the blocks (Phase 2, analyses) was never
  materialized, or some parent (a block partition or cohort-level asset of the
  cohort) was materialized after it -> one run of the stale assets and everything
  downstream of them at cohort level.

Requests carry the same ``genoembed/*`` tags as the sensor's, and nothing already
queued or running for the same cohort, stage and fingerprint is requested again.
"""


from pathlib import Path

import dagster as dg

from ..partitions import BLOCKS, COHORTS, cohort_block_partitions
from ..resources import GenoembedStorage
from . import cohorts as c

REFRESH_CRON = "0 3 * * *"


def _latest_storage_id(instance: dg.DagsterInstance, asset: dg.AssetKey, partition: str) -> int | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset, asset_partitions=[partition]), limit=1
    ).records
    return records[0].storage_id if records else None


def stale_downstream(instance: dg.DagsterInstance, asset_graph, cohort: str, downstream: list[dg.AssetKey]) -> list[dg.AssetKey]:
    """Cohort-level assets below the blocks that are missing or older than a parent (for ``cohort``)."""
    block_keys = set(c.cohort_block_keys(instance, cohort))
    stale: set[dg.AssetKey] = set()
    for key in downstream:
        mine = _latest_storage_id(instance, key, cohort)
        if mine is None:
            stale.add(key)
            continue
        for parent in asset_graph.get(key).parent_keys:
            node = asset_graph.get(parent)
            if not node.is_materializable:
                continue
            if node.partitions_def == cohort_block_partitions:
                newer = instance.get_materialized_partitions(parent, after_cursor=mine)
                if newer & block_keys:
                    stale.add(key)
                    break
            else:
                theirs = _latest_storage_id(instance, parent, cohort)
                if theirs is not None and theirs > mine:
                    stale.add(key)
                    break
    # everything below a stale asset is stale too
    closure = set(stale)
    changed = True
    while changed:
        changed = False
        for key in downstream:
            if key not in closure and any(up in closure for up in asset_graph.get(key).parent_keys):
                closure.add(key)
                changed = True
    return [k for k in downstream if k in closure]


def evaluate_refresh(context: dg.ScheduleEvaluationContext, storage: GenoembedStorage) -> list[dg.RunRequest] | dg.SkipReason:
    instance = context.instance
    asset_graph = context.repository_def.asset_graph
    stages = c.graph_stages(asset_graph)
    root = Path(storage.cohorts_root)
    requests: list[dg.RunRequest] = []
    registered = set(instance.get_dynamic_partitions(COHORTS))
    for folder in c.inspect_folders(root, settle_seconds=0):
        name = folder.name
        if folder.status != "ready" or name not in registered:
            continue  # new or unfinished folders are the sensor's
        fp = folder.fingerprint
        ingested = c.last_ingested(instance, name)
        if ingested is None or ingested.fingerprint != fp:
            if not c.pending_or_done(c.stage_runs(instance, name, c.INPUTS, fp)):
                context.log.info(f"cohort {name!r}: inputs changed since they were last materialized")
                requests.append(c.inputs_request(name, fp, stages, reason="schedule: inputs changed"))
            continue
        if stages.blocks and c.blocks_outdated(instance, name, stages.blocks, ingested):
            if not c.in_flight(c.stage_runs(instance, name, c.BLOCK_STAGE, fp)):
                block_ids = list(instance.get_dynamic_partitions(BLOCKS))
                context.log.info(f"cohort {name!r}: block partitions stale, requesting {len(block_ids)}")
                requests += c.block_requests(name, fp, block_ids, stages, reason="schedule: blocks stale")
            continue
        stale = stale_downstream(instance, asset_graph, name, stages.downstream)
        if stale:
            context.log.info(f"cohort {name!r}: stale analyses {[k.to_user_string() for k in stale]}")
            requests.append(dg.RunRequest(
                run_key=None,
                asset_selection=stale,
                partition_key=name,
                tags={c.COHORT_TAG: name, c.STAGE_TAG: c.DOWNSTREAM, c.FINGERPRINT_TAG: fp,
                      "genoembed/reason": "schedule: analyses stale"},
            ))
    if not requests:
        return dg.SkipReason("every registered cohort is up to date")
    return requests


@dg.schedule(
    cron_schedule=REFRESH_CRON,
    job_name=c.ASSET_JOB,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Nightly: reruns cohorts whose folder changed since their inputs were materialized, "
    "stale block partitions, and stale Phase 2 / analysis assets.",
)
def cohort_refresh_schedule(context: dg.ScheduleEvaluationContext, storage: GenoembedStorage):
    return evaluate_refresh(context, storage)
