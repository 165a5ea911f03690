"""Materialize one cohort's whole graph without a daemon (README's run command, tests).

The daemon path (sensor -> runs -> declarative automation) does the same work;
this module drives it in-process in three stages, because cohort-level and
block-level assets have different partitions and cannot share one run:

1. cohort-level inputs (``cohort_input``, ``phenotypes``, ``ancestry_pcs``),
2. every block partition of the cohort in one range run (QC, Phase 1),
3. everything downstream at cohort level (Phase 2, analyses).

A stage whose blocking checks fail stops the pipeline with the checks' messages.

Dagster's console log goes to stdout at ``console_level`` (INFO by default; DEBUG
shows every event), so stderr is left to the command line's one-line errors. At
INFO the per-epoch training lines are left to the progress display (and to the
run's event log); failures are reported once, by :class:`PipelineError`.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import dagster as dg

from .defs.partitions import cohort_block_partitions, cohort_partitions, cohort_range_tags, register_cohort
from .genotypes.ingest import scan_cohort
from .progress import ProgressDisplay, parse_progress

INPUT_GROUP = "inputs"


@dataclass
class StageResult:
    name: str
    asset_keys: list[str]
    seconds: float
    failed_checks: list[str]
    warned_checks: list[str] = field(default_factory=list)  # WARN checks that did not pass, with their messages


class PipelineError(RuntimeError):
    """A stage failed or a blocking check did not pass.

    ``str(error)`` is the full account (stage, step, error chain); ``user_message`` the
    one line a user acts on (the innermost error, or the failed checks' messages);
    ``input_error`` whether the cohort's input is at fault (a fix in the folder), not
    the code; ``details`` the stack of the failure, for ``--debug``.
    """

    def __init__(self, message: str, *, user_message: str | None = None, input_error: bool = False, details: str = ""):
        super().__init__(message)
        self.user_message = user_message or message
        self.input_error = input_error
        self.details = details


#: Error classes (by name: a run's errors arrive serialized) that mean the input is at fault.
INPUT_ERROR_CLASSES = ("CohortInputError",)
#: Checks outside the input stage whose failure is still the input's fault (projection: no variant matched).
INPUT_CHECKS = ("variants_matched",)
#: Dagster events the runner reports itself (as PipelineError) rather than on the console.
_FAILURE_EVENTS = ("STEP_FAILURE", "RUN_FAILURE")


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
    console_level: str = "INFO",
    progress: ProgressDisplay | None = None,
) -> list[StageResult]:
    """Register ``cohort`` (from its folder under the cohorts root) and materialize its graph.

    ``console_level``: threshold of Dagster's console log (stdout); ``progress``: a
    display fed with each stage, step and log line (None: none).
    """
    if defs is None:
        from .definitions import defs as default_defs

        defs = default_defs
    resources = {**defs.resources, **(resources or {})}
    storage = resources["storage"]
    scan = scan_cohort(storage.source_dir(cohort))
    new = register_cohort(instance, cohort, list(scan.blocks["block_id"]))
    log(f"cohort {cohort!r}: {scan.format} layout, {scan.n_subjects} subjects, {len(scan.blocks)} blocks ({len(new)} new block keys)")

    all_assets = list(defs.assets or []) + list(defs.asset_checks or [])
    loggers = {"console": _console_logger(console_level), "genoembed_progress": _progress_logger(progress)}
    logger_config = {"console": {"config": {"log_level": console_level}}, "genoembed_progress": {"config": {}}}
    planned = [(n, k) for n, k in _stages(defs) if stages is None or n in stages]
    results = []
    for index, (name, keys) in enumerate(planned, start=1):
        partition_args = (
            {"tags": cohort_range_tags(instance, cohort)} if name == "blocks" else {"partition_key": cohort}
        )
        op_names = {defs.resolve_assets_def(k).node_def.name for k in keys}
        log(f"stage '{name}': {', '.join(k.to_user_string() for k in keys)}")
        if progress is not None:
            progress.stage(name, index, len(planned), sorted(op_names))
        start = time.perf_counter()
        config = {**(_stage_config(run_config, op_names) or {}), "loggers": logger_config}
        result = _execute(all_assets, keys, instance=instance, resources=resources, run_config=config, loggers=loggers,
                          **partition_args)
        seconds = time.perf_counter() - start
        evaluations = result.get_asset_check_evaluations()
        failed = [
            f"{e.asset_key.to_user_string()}:{e.check_name}: {_message(e)}"
            for e in evaluations
            if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
        ]
        if not result.success:
            raise _stage_failure(cohort, name, result, failed)
        warned = [f"{e.asset_key.to_user_string()}:{e.check_name}: {_message(e)}"
                  for e in evaluations if not e.passed and e.severity == dg.AssetCheckSeverity.WARN]
        results.append(StageResult(name, [k.to_user_string() for k in keys], seconds, failed, warned))
        log(f"stage '{name}' done in {seconds:.1f} s")
        for line in warned:
            log(f"  WARN {line}")
        if failed:
            by_input = name == "cohort inputs" or any(e.check_name in INPUT_CHECKS and not e.passed for e in evaluations)
            raise PipelineError(f"blocking checks failed in stage '{name}': " + "; ".join(failed),
                                user_message="check failed: " + "; ".join(failed), input_error=by_input)
    return results


def _execute(assets, selection, *, instance, resources, run_config, loggers, partition_key=None, tags=None):
    """``dg.materialize`` with this runner's loggers (materialize takes no logger definitions)."""
    job_name = "__ephemeral_asset_job__"  # the name dg.materialize gives its runs
    stage_defs = dg.Definitions(jobs=[dg.define_asset_job(job_name, selection=selection)], assets=assets,
                                resources=resources, loggers=loggers)
    return stage_defs.resolve_job_def(job_name).execute_in_process(
        run_config=run_config, instance=instance, partition_key=partition_key, raise_on_error=False, tags=tags,
    )


def _stage_failure(cohort: str, stage: str, result: dg.ExecuteInProcessResult, failed_checks: list[str]) -> PipelineError:
    """A failed stage as one error: failed blocking checks by their messages, else the step's innermost error."""
    if failed_checks:  # a failed blocking check fails its step with a message naming only the check
        return PipelineError(f"stage '{stage}' failed for cohort {cohort!r}: blocking checks failed: " + "; ".join(failed_checks),
                             user_message="check failed: " + "; ".join(failed_checks), input_error=stage == "cohort inputs")
    error = _first_failure(result)
    innermost = error
    while innermost is not None and innermost.cause is not None:
        innermost = innermost.cause
    return PipelineError(
        f"stage '{stage}' failed for cohort {cohort!r}: {failure_message(result)}",
        user_message=_without_class(innermost) if innermost is not None else f"stage '{stage}' failed for cohort {cohort!r}",
        input_error=innermost is not None and innermost.cls_name in INPUT_ERROR_CLASSES,
        details=error.to_string() if error is not None else "",
    )


def _without_class(error) -> str:
    """A serialized error's message without its ``module.Class: `` prefix."""
    message = error.message.strip()
    head, sep, rest = message.partition(": ")
    return rest if sep and head.split(".")[-1] == error.cls_name else message


def _first_failure(result: dg.ExecuteInProcessResult):
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            return event.step_failure_data.error
    return None


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at the time (a progress display may redirect it)."""

    def __init__(self):
        super().__init__(sys.stdout)

    def emit(self, record):
        self.stream = sys.stdout
        super().emit(record)


class _ConsoleFilter(logging.Filter):
    """Above DEBUG: no per-epoch lines (the progress display has them) and no failure events (PipelineError has them)."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record):
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        if self.level <= logging.DEBUG:
            return True
        if event is not None and event.event_type_value in _FAILURE_EVENTS:
            return False
        parsed = parse_progress(meta.get("orig_message", ""))
        return parsed is None or parsed[0] not in ("group_epoch", "seed_epoch")


def _console_logger(level: str) -> dg.LoggerDefinition:
    """Dagster's console log, on stdout, as ``time level step - message``."""

    def build(init_context) -> logging.Logger:
        threshold = logging.getLevelName(str(init_context.logger_config.get("log_level", level)).upper())
        logger = logging.Logger("genoembed.console", level=threshold)
        handler = _StdoutHandler()
        handler.setFormatter(_ConsoleFormatter())
        handler.addFilter(_ConsoleFilter(threshold))
        logger.addHandler(handler)
        return logger

    return dg.LoggerDefinition(build, config_schema={"log_level": dg.Field(str, is_required=False, default_value=level)},
                               description="genoembed's console log (stdout)")


class _ConsoleFormatter(logging.Formatter):
    def format(self, record):
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        where = meta.get("step_key") or "run"
        what = f"{event.event_type_value} - " if event is not None else ""
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        return f"{stamp} {record.levelname:<7} {where} - {what}{meta.get('orig_message', record.getMessage())}"


def _progress_logger(progress: ProgressDisplay | None) -> dg.LoggerDefinition:
    """Hands every log line and step event of the run to ``progress``."""

    class Forward(logging.Handler):
        def emit(self, record):
            if progress is None:
                return
            meta = getattr(record, "dagster_meta", None) or {}
            event, step = meta.get("dagster_event"), meta.get("step_key")
            kind = event.event_type_value if event is not None else None
            if kind == "STEP_START":
                progress.step_started(step)
            elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
                progress.step_finished(step)
            elif event is None:
                progress.message(step, meta.get("orig_message", ""))

    def build(_init_context) -> logging.Logger:
        logger = logging.Logger("genoembed.progress", level=logging.DEBUG)
        logger.addHandler(Forward())
        return logger

    return dg.LoggerDefinition(build, config_schema={}, description="feeds genoembed's progress display")


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
