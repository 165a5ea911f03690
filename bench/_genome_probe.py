"""What bench_genome.py measures around a live ``dagster dev``: process memory, runs, daemon ticks.

* :class:`TreeSampler` polls the process tree of the ``dagster dev`` process
  group (read from ``/proc``: psutil is not a dependency of the project) and
  keeps, per process, the peak RSS of it plus its descendants (a run worker's
  subtree holds its step processes).
* :func:`run_summaries` reads the cohort's runs from the instance and ties each to
  its worker process through the pid Dagster logs when it starts the run
  ("Started process for run (pid: N)"): run workers are ``multiprocessing``
  children of the code server and their command line does not name the run.
* :func:`tick_summaries` reads the sensor and schedule ticks the daemon recorded.

RSS sums count pages shared between processes once per process, so a subtree's
figure is an upper bound of what it needs.
"""

from __future__ import annotations

import os
import re
import statistics
import threading
import time
from dataclasses import dataclass, field

from pathlib import Path

GB = 1024**3
_PID = re.compile(r"\(pid: (\d+)\)")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, RSS bytes) of every process /proc shows now."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            rss_pages = int((entry / "statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # exited meanwhile
        fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces
        out[int(entry.name)] = (int(fields[1]), rss_pages * _PAGE)
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()[:300]
    except OSError:
        return ""


@dataclass
class _Seen:
    cmdline: str
    peak_own: int = 0
    peak_tree: int = 0


@dataclass
class TreeSampler:
    """Peak RSS per process of the tree under ``root_pid``, sampled every ``interval`` s in a thread."""

    root_pid: int
    interval: float = 0.5
    seen: dict[int, _Seen] = field(default_factory=dict)
    peak_total: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> "TreeSampler":
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        procs = _processes()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in procs.items():
            children.setdefault(ppid, []).append(pid)
        tree_rss: dict[int, int] = {}

        def walk(pid: int) -> int:  # RSS of pid and all its descendants
            total = procs[pid][1] + sum(walk(c) for c in children.get(pid, ()))
            tree_rss[pid] = total
            return total

        if self.root_pid not in procs:
            return
        walk(self.root_pid)
        for pid, total in tree_rss.items():
            entry = self.seen.get(pid)
            if entry is None:
                entry = self.seen[pid] = _Seen(_cmdline(pid))
            entry.peak_own = max(entry.peak_own, procs[pid][1])
            entry.peak_tree = max(entry.peak_tree, total)
        self.peak_total = max(self.peak_total, tree_rss[self.root_pid])
        self.samples += 1

    def peak_tree_gb(self, pids) -> float | None:
        peaks = [self.seen[p].peak_tree for p in pids if p in self.seen]
        return round(max(peaks) / GB, 3) if peaks else None

    def roles(self) -> dict[str, float]:
        """Peak own RSS (GB) of the long-lived processes, by what their command line says they are."""
        out: dict[str, float] = {}
        for entry in self.seen.values():
            cmd = entry.cmdline
            # dagster dev starts ``python -m dagster_webserver`` and ``python -m dagster._daemon run``.
            role = ("webserver" if "dagster_webserver" in cmd or "dagster-webserver" in cmd
                    else "daemon" if "dagster._daemon" in cmd or "dagster-daemon" in cmd
                    else "code_server" if "api grpc" in cmd else None)
            if role:
                out[role] = max(out.get(role, 0.0), round(entry.peak_own / GB, 3))
        return out


# ------------------------------------------------------------------ the instance


def run_pids(instance, run_id: str) -> set[int]:
    """Pids named in the run's engine events (its worker, its step processes)."""
    import dagster as dg

    pids = set()
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        message = entry.dagster_event.message if entry.dagster_event else entry.user_message
        pids.update(int(p) for p in _PID.findall(message or ""))
    return pids


def failure_message(instance, run_id: str) -> str:
    """The first step (else run) failure's message of a run, on one line."""
    import dagster as dg

    for kind in (dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE):
        for entry in instance.all_logs(run_id, of_type=kind):
            data = entry.dagster_event.event_specific_data if entry.dagster_event else None
            error = getattr(data, "error", None)
            while error is not None and error.cause is not None:  # the user code's error, not dagster's wrapper
                error = error.cause
            text = f"{error.cls_name}: {error.message}" if error is not None else (entry.dagster_event.message or "")
            return " ".join(str(text).split())[:400]
    return "no failure event recorded"


def cohort_runs(instance, cohort: str, since: float) -> list:
    """Run records created after ``since`` (epoch s), oldest first: the cohort's own and untagged automation runs."""
    records = [r for r in instance.get_run_records() if r.create_timestamp.timestamp() >= since]
    records = [r for r in records if r.dagster_run.tags.get("genoembed/cohort", cohort) == cohort]
    return sorted(records, key=lambda r: r.create_timestamp)


def stage_of(record) -> str:
    """``inputs``, ``blocks`` or ``downstream``: the sensor's tag, else what the run materializes."""
    tags = record.dagster_run.tags
    if tags.get("genoembed/stage"):
        return tags["genoembed/stage"]
    if "dagster/asset_partition_range_start" in tags or "|" in tags.get("dagster/partition", ""):
        return "blocks"
    return "downstream"


def run_summaries(instance, records, sampler: TreeSampler) -> list[dict]:
    out = []
    for r in records:
        run = r.dagster_run
        start, end = r.start_time, r.end_time
        pids = run_pids(instance, run.run_id)
        out.append({
            "run_id": run.run_id, "stage": stage_of(r), "status": run.status.value,
            "wall_s": round(end - start, 2) if start and end else None,
            "start": start, "end": end, "pids": sorted(pids), "peak_rss_gb": sampler.peak_tree_gb(pids),
            "partition_range": [run.tags.get("dagster/asset_partition_range_start"),
                                run.tags.get("dagster/asset_partition_range_end")],
            "backfill": run.tags.get("dagster/backfill"),
            "automation": run.tags.get("dagster/from_automation_condition") == "true",
            "sensor": run.tags.get("dagster/sensor_name"),
            "assets": sorted(k.to_user_string() for k in (run.asset_selection or ())),
        })
    return out


def tick_summaries(instance, since: float) -> dict[str, dict]:
    """Per sensor/schedule: completed ticks after ``since``, median and max duration, runs requested."""
    out = {}
    for state in instance.all_instigator_state():
        ticks = [t for t in instance.get_ticks(state.instigator_origin_id, state.selector_id, after=since)
                 if t.end_timestamp]
        if not ticks:
            continue
        durations = [t.end_timestamp - t.timestamp for t in ticks]
        slowest = max(ticks, key=lambda t: t.end_timestamp - t.timestamp)
        out[state.instigator_name] = {
            "type": state.instigator_type.value, "ticks": len(ticks),
            "median_s": round(statistics.median(durations), 3), "max_s": round(max(durations), 3),
            "runs_requested": sum(len(t.run_ids) for t in ticks),
            "slowest_tick_runs": len(slowest.run_ids),
            "partition_requests": sum(len(t.dynamic_partitions_request_results) for t in ticks),
        }
    return out


def first_tick_with_partitions(instance, name: str, since: float) -> dict | None:
    """The tick of sensor ``name`` that registered dynamic partitions: when, how long."""
    for state in instance.all_instigator_state():
        if state.instigator_name != name:
            continue
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, after=since)
        for t in sorted(ticks, key=lambda t: t.timestamp):
            if t.dynamic_partitions_request_results and t.end_timestamp:
                return {"timestamp": t.timestamp, "duration_s": round(t.end_timestamp - t.timestamp, 3),
                        "runs_requested": len(t.run_ids)}
    return None


def wait_until(what: str, predicate, *, timeout: float, interval: float = 2.0, progress=None, every: float = 30.0):
    """Poll ``predicate`` until truthy (returns it); ``progress()`` every ``every`` s; TimeoutError naming ``what``."""
    start = last = time.monotonic()
    while True:
        value = predicate()
        if value:
            return value
        now = time.monotonic()
        if now - start > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        if progress is not None and now - last >= every:
            progress()
            last = now
        time.sleep(interval)
