"""Materialize one cohort's whole graph without a daemon (README's run command, tests).

The daemon path (sensor -> runs -> declarative automation) does the same work;
this module drives it in-process in three stages, because cohort-level and
block-level assets have different partitions and cannot share one run:

1. cohort-level inputs (``cohort_input``, ``phenotypes``, ``ancestry_pcs``),
2. every block partition of the cohort in one range run (QC, Phase 1),
3. everything downstream at cohort level (Phase 2, analyses).

A stage whose blocking checks fail stops the pipeline with the checks' messages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping

import dagster as dg

from .defs.partitions import cohort_block_partitions, cohort_partitions, cohort_range_tags, register_cohort
from .genotypes.ingest import scan_cohort

INPUT_GROUP = "inputs"


@dataclass
class StageResult:
    name: str
    asset_keys: list[str]
    seconds: float
    failed_checks: list[str]


class PipelineError(RuntimeError):
    """A stage failed or a blocking check did not pass."""


def _stages(defs: dg.Definitions) -> list[tuple[str, list[dg.AssetKey]]]:
    graph = defs.resolve_asset_graph()
    cohort_inputs, blocks, downstream = [], [], []
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if not node.is_materializable:
            continue
        if node.partitions_def == cohort_block_partitions:
            blocks.append(key)
        elif node.partitions_def == cohort_partitions:
            (cohort_inputs if node.group_name == INPUT_GROUP else downstream).append(key)
    return [(n, sorted(k, key=lambda a: a.to_user_string())) for n, k in
            (("cohort inputs", cohort_inputs), ("blocks", blocks), ("cohort analyses", downstream)) if k]


def materialize_cohort(
    cohort: str,
    *,
    instance: dg.DagsterInstance,
    defs: dg.Definitions | None = None,
    resources: Mapping[str, object] | None = None,
    run_config: Mapping | None = None,
    stages: set[str] | None = None,
    log: Callable[[str], None] = print,
) -> list[StageResult]:
    """Register ``cohort`` (from its folder under the cohorts root) and materialize its graph."""
    if defs is None:
        from .definitions import defs as default_defs

        defs = default_defs
    resources = {**defs.resources, **(resources or {})}
    storage = resources["storage"]
    scan = scan_cohort(storage.source_dir(cohort))
    new = register_cohort(instance, cohort, list(scan.blocks["block_id"]))
    log(f"cohort {cohort!r}: {scan.format} layout, {scan.n_subjects} subjects, {len(scan.blocks)} blocks ({len(new)} new block keys)")

    all_assets = list(defs.assets or []) + list(defs.asset_checks or [])
    results = []
    for name, keys in _stages(defs):
        if stages is not None and name not in stages:
            continue
        partition_args = (
            {"tags": cohort_range_tags(instance, cohort)} if name == "blocks" else {"partition_key": cohort}
        )
        log(f"stage '{name}': {', '.join(k.to_user_string() for k in keys)}")
        start = time.perf_counter()
        result = dg.materialize(
            all_assets, instance=instance, resources=resources, run_config=_stage_config(run_config, {defs.resolve_assets_def(k).node_def.name for k in keys}),
            selection=keys, raise_on_error=False, **partition_args,
        )
        seconds = time.perf_counter() - start
        if not result.success:
            raise PipelineError(f"stage '{name}' failed for cohort {cohort!r}: {failure_message(result)}")
        failed = [
            f"{e.asset_key.to_user_string()}:{e.check_name}: {_message(e)}"
            for e in result.get_asset_check_evaluations()
            if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
        ]
        results.append(StageResult(name, [k.to_user_string() for k in keys], seconds, failed))
        log(f"stage '{name}' done in {seconds:.1f} s")
        if failed:
            raise PipelineError(f"blocking checks failed in stage '{name}': " + "; ".join(failed))
    return results


def _stage_config(run_config: Mapping | None, op_names: set[str]) -> dict | None:
    """Keep only the op config of this stage's ops (Dagster rejects config for absent ops)."""
    if not run_config:
        return None
    ops = {name: cfg for name, cfg in run_config.get("ops", {}).items() if name in op_names}
    return {**{k: v for k, v in run_config.items() if k != "ops"}, **({"ops": ops} if ops else {})}


def fast_run_config() -> dict:
    """Run config selecting the fastest presets of every configurable training asset."""
    return preset_run_config("fast")


def preset_run_config(preset: str) -> dict:
    """Run config selecting ``preset`` for the training assets."""
    return {"ops": {name: {"config": {"preset": preset}} for name in ("block_embeddings", "cross_block_embeddings")}}


def _message(evaluation) -> str:
    entry = evaluation.metadata.get("message")
    return getattr(entry, "value", entry) or "failed"


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """The first failed step and its error chain's messages (the user's message is the innermost cause)."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            err, parts = event.step_failure_data.error, []
            while err is not None:
                parts.append(err.message.strip())
                err = err.cause
            return f"step {event.step_key}: " + " <- ".join(parts)
    return "see the run's event log"
