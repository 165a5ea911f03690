"""Scan what a Dagster instance stores for subject-level data (IDs, per-subject tables, genotype vectors).

What Dagster keeps (run tags and config, every event of every run, runless events, log
messages, metadata of materializations, observations and check results) ends up in
PostgreSQL in a deployment, readable by anyone with the UI. genoembed puts only aggregates
and file paths there; :func:`scan_instance` is how the tests hold it to that.

Every record is serialised with Dagster's own serdes (what the storage writes), so nothing
stored is missed; the JSON is then walked for long sequences and the text searched for IDs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import dagster as dg
from dagster._serdes import serialize_value

__all__ = ["Leak", "distinctive", "scan_instance", "scan_record"]


@dataclass(frozen=True)
class Leak:
    where: str  # the record: run id and event type
    problem: str


def distinctive(subject_ids: Iterable[str]) -> bool:
    """IDs a whole-token search can find without false hits: letters then at least 3 digits, 6+ chars."""
    return all(re.fullmatch(r"[A-Za-z]+[_-]?\d{3,}", s) and len(s) >= 6 for s in subject_ids)


def _id_pattern(subject_ids: Iterable[str]) -> re.Pattern:
    return re.compile(r"(?<![A-Za-z0-9_])(" + "|".join(map(re.escape, subject_ids)) + r")(?![A-Za-z0-9_])")


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")


def _table_rows(text: str) -> int:
    """Rows of the longest markdown table in ``text`` (header and separator not counted)."""
    best = run = 0
    for line in text.splitlines():
        run = run + 1 if line.lstrip().startswith("|") else 0
        best = max(best, run - 2)
    return best


def _genotype_run(text: str, n: int) -> bool:
    """A run of ``n`` or more 0/1/2 values separated by commas or blanks (a genotype vector as text)."""
    return re.search(r"(?<![\d.])(?:[012](?:\.0)?[,\s]+){%d,}[012](?![\d.])" % (n - 1), text) is not None


def scan_record(where: str, serialized: str, subject_ids: list[str], *, pattern: re.Pattern | None = None) -> list[Leak]:
    """Leaks in one serialised record: subject IDs, a sequence or table of >= n subjects, a genotype vector."""
    n = len(subject_ids)
    pattern = pattern or _id_pattern(subject_ids)
    leaks = []
    hit = pattern.search(serialized)
    if hit:
        start = max(hit.start() - 80, 0)
        leaks.append(Leak(where, f"subject ID {hit.group(1)!r} in ...{serialized[start:hit.end() + 40]}..."))
    for path, value in _walk(json.loads(serialized)):
        if isinstance(value, list) and len(value) >= n:
            kind = "genotype vector" if all(v in (0, 1, 2) for v in value if not isinstance(v, bool)) else "sequence"
            leaks.append(Leak(where, f"{kind} of {len(value)} >= {n} subjects at {path}"))
        elif isinstance(value, str) and _table_rows(value) >= n:
            leaks.append(Leak(where, f"table of {_table_rows(value)} rows >= {n} subjects at {path}"))
        elif isinstance(value, str) and _genotype_run(value, n):
            leaks.append(Leak(where, f"genotype vector as text (>= {n} values of 0/1/2) at {path}"))
    return leaks


def _records(instance: dg.DagsterInstance) -> Iterator[tuple[str, str]]:
    for run in instance.get_runs():
        yield f"run {run.run_id[:8]} (tags, config)", serialize_value(run)
        for entry in instance.all_logs(run.run_id):
            kind = entry.dagster_event.event_type_value if entry.dagster_event else "log message"
            yield f"run {run.run_id[:8]} {kind}", serialize_value(entry)
    # index shard: asset events, runless ones included (an SQLite instance keeps per-run events apart)
    for record_id, entry in instance.event_log_storage.get_logs_for_all_runs_by_log_id().items():
        kind = entry.dagster_event.event_type_value if entry.dagster_event else "log message"
        yield f"record {record_id} {kind}", serialize_value(entry)


def scan_instance(instance: dg.DagsterInstance, subject_ids: list[str]) -> tuple[int, list[Leak]]:
    """Every record the instance stores, scanned with :func:`scan_record`; returns (records scanned, leaks)."""
    pattern = _id_pattern(subject_ids)
    count, leaks = 0, []
    for where, serialized in _records(instance):
        count += 1
        leaks += scan_record(where, serialized, subject_ids, pattern=pattern)
    return count, leaks
