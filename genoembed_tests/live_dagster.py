"""A real ``dagster dev`` (webserver + daemon) for tests, and a small GraphQL client.

``dagster dev`` started from a non-interactive shell may ignore SIGINT/SIGTERM, so
the child gets default signal handlers and its own session (process group), and
is stopped by signalling that whole group: webserver, daemon, code server and any
run workers go together.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

PROJECT_ROOT = Path(__file__).resolve().parents[1]
LOCATION = "genoembed"
REPOSITORY = "__repository__"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _reset_signals() -> None:  # runs in the child before exec
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


class GraphQLError(RuntimeError):
    pass


def wait_for(what: str, predicate: Callable[[], object], *, timeout: float, interval: float = 1.0):
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, GraphQLError, urllib.error.URLError) as exc:
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))


@dataclass
class LiveDagster:
    """``dagster dev`` on a free loopback port against ``home`` (DAGSTER_HOME)."""

    home: Path
    env: Mapping[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home / "dagster_dev.log"

    def start(self, *, timeout: float = 240) -> "LiveDagster":
        self.launch()
        return self.wait_ready(timeout=timeout)

    def launch(self) -> "LiveDagster":
        """Start the process without waiting (prepare data meanwhile, then ``wait_ready``)."""
        exe = Path(sys.executable).with_name("dagster")
        env = {**os.environ, **self.env, "DAGSTER_HOME": str(self.home), "DAGSTER_DISABLE_TELEMETRY": "yes",
               "PYTHONUNBUFFERED": "1"}
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [str(exe), "dev", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=_reset_signals, start_new_session=True,
        )
        log.close()
        return self

    def wait_ready(self, *, timeout: float = 240) -> "LiveDagster":
        try:
            wait_for("the code location to load in dagster dev", self._location_loaded, timeout=timeout, interval=2)
        except Exception:
            self.stop()
            raise
        return self

    def _location_loaded(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"dagster dev exited with {self.process.returncode}:\n{self.log_tail()}")
        data = self.graphql("""{ workspaceOrError { __typename ... on Workspace { locationEntries {
            name locationOrLoadError { __typename ... on PythonError { message } } } } } }""")
        entries = data["workspaceOrError"].get("locationEntries", [])
        for entry in entries:
            kind = (entry["locationOrLoadError"] or {}).get("__typename")
            if kind == "PythonError":
                raise RuntimeError(f"code location failed to load: {entry['locationOrLoadError']['message']}")
            if entry["name"] == LOCATION and kind == "RepositoryLocation":
                return True
        return False

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, *, timeout: float = 30) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        pgid = os.getpgid(self.process.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        try:  # whatever is left in the group (code server, run workers)
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    # -------------------------------------------------------------- GraphQL

    def graphql(self, query: str, variables: Mapping | None = None, *, timeout: float = 60) -> dict:
        body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as exc:  # GraphQL errors come back as HTTP 500 with a body
            raise GraphQLError(f"HTTP {exc.code}: {exc.read().decode(errors='replace')[:2000]}") from None
        if payload.get("errors"):
            raise GraphQLError(json.dumps(payload["errors"])[:2000])
        return payload["data"]

    def launch_backfill(self, asset: str, partition_names: list[str], *, tags: Mapping[str, str] | None = None) -> str:
        """An asset backfill over ``partition_names`` (as from the asset page); returns its id."""
        data = self.graphql(
            """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
                __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message stack }
                ... on InvalidSubsetError { message } ... on UnauthorizedError { message } } }""",
            {"params": {"partitionNames": partition_names, "assetSelection": [{"path": [asset]}], "fromFailure": False,
                        "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}},
        )
        result = data["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise GraphQLError(f"backfill not launched: {result}")
        return result["backfillId"]

    def backfill_status(self, backfill_id: str) -> str:
        data = self.graphql("""query($id: String!) { partitionBackfillOrError(backfillId: $id) {
            __typename ... on PartitionBackfill { status } ... on PythonError { message } } }""", {"id": backfill_id})
        return data["partitionBackfillOrError"]["status"]

    def wait_backfill(self, backfill_id: str, *, timeout: float = 300) -> str:
        done = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
        return wait_for(f"backfill {backfill_id}", lambda: (s := self.backfill_status(backfill_id)) in done and s,
                        timeout=timeout, interval=2)

    def runs(self, tags: Mapping[str, str]) -> list[dict]:
        data = self.graphql("""query($filter: RunsFilter) { runsOrError(filter: $filter) { __typename
            ... on Runs { results { runId status tags { key value } } } } }""",
                            {"filter": {"tags": [{"key": k, "value": v} for k, v in tags.items()]}})
        return data["runsOrError"]["results"]

    def terminate_run(self, run_id: str) -> str:
        data = self.graphql("""mutation($id: String!) { terminateRun(runId: $id) { __typename
            ... on TerminateRunFailure { message } ... on PythonError { message } } }""", {"id": run_id})
        return data["terminateRun"]["__typename"]


# ------------------------------------------------------------------ the shared session


@dataclass
class LiveSession:
    """One ``dagster dev`` for the whole test session, on a copy of the demo pipeline's instance.

    The copy holds the demo cohort's materializations (so the UI shows every asset,
    partition and figure) without the tests below writing into the instance or
    results that other tests read. Cohorts prepared for backfills are registered
    and their inputs materialized in-process before the daemon sees them; the
    cohort sensor in the live deployment watches an empty folder so it stays out
    of the way (it is tested in test_sensor.py).
    """

    dagster: LiveDagster
    home: Path
    results_root: Path
    cohorts_root: Path
    block_ids: list[str]  # the first registered block keys: a contiguous range
    cohorts: dict[str, list[str]]  # backfill cohort -> its block ids

    def instance(self):
        import dagster as dg

        return dg.DagsterInstance.from_config(str(self.home))


# Training in the live deployment uses the fastest Phase 1 preset (backfills carry no run config).
LIVE_ENV = {"GENOEMBED_PHASE1_PRESET": "fast"}
BACKFILL_COHORTS = ("bf_basic", "bf_fault")
BACKFILL_BLOCKS = 8
BACKFILL_SUBJECTS = 300
_SESSION: dict[str, LiveSession] = {}


def live_session(request) -> LiveSession:
    """The shared live session (started on first use, stopped when pytest ends)."""
    if "live" not in _SESSION:
        _SESSION["live"] = _start_session(request)
    return _SESSION["live"]


def _start_session(request) -> LiveSession:
    import shutil

    import dagster as dg

    demo = request.getfixturevalue("demo_pipeline")
    base = request.getfixturevalue("tmp_path_factory").mktemp("live")
    home, results, sources, watched = base / "home", base / "results", base / "sources", base / "watched"
    shutil.copytree(demo.instance.root_directory, home, ignore=shutil.ignore_patterns("*.lock", ".logs_queue"))
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nconcurrency:\n  runs:\n    max_concurrent_runs: 4\n")
    results.mkdir()
    (results / demo.cohort).symlink_to(demo.results, target_is_directory=True)
    watched.mkdir()

    env = {"GENOEMBED_RESULTS": str(results), "GENOEMBED_COHORTS": str(watched), **LIVE_ENV}
    live = LiveDagster(home, env=env).launch()
    request.config.add_cleanup(live.stop)
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            block_ids = list(instance.get_dynamic_partitions("blocks"))[:BACKFILL_BLOCKS]
            cohorts = {}
            for name in BACKFILL_COHORTS:
                _write_subset(demo.results / "input", sources / name, block_ids, BACKFILL_SUBJECTS)
                _ingest(instance, name, sources, results)
                cohorts[name] = block_ids
        live.wait_ready()
    except Exception:
        live.stop()
        raise
    return LiveSession(live, home, results, sources, block_ids, cohorts)


def _write_subset(input_dir: Path, out: Path, block_ids: list[str], n_subjects: int) -> None:
    """A smaller cohort cut from the demo's normalised input: its first blocks and subjects."""
    from genoembed_assets.genotypes import layout

    manifest = layout.read_manifest(input_dir).set_index("block_id")
    subjects = layout.read_subjects(input_dir)
    arrays = []
    for block in block_ids:
        row = manifest.loc[block]
        g = layout.load_block(input_dir, {"block_id": block, "file": row["file"], "n_snps": row["n_snps"]}, len(subjects))
        arrays.append(layout.BlockArray(block, str(row["chrom"]), int(row["start"]), int(row["end"]), g[:n_subjects]))
    phenotypes = layout.read_phenotypes(input_dir / layout.PHENOTYPES, subjects).iloc[:n_subjects]
    layout.write_cohort(out, subjects[:n_subjects], arrays, phenotypes)


def _ingest(instance, cohort: str, sources: Path, results: Path) -> None:
    from genoembed_assets.defs.resources import ComputeResource, GenoembedStorage
    from genoembed_assets.runner import materialize_cohort

    storage = GenoembedStorage(cohorts_root=str(sources), results_root=str(results))
    materialize_cohort(cohort, instance=instance, resources={"storage": storage, "compute": ComputeResource(device="cpu")},
                       stages={"cohort inputs"}, log=lambda m: None)
