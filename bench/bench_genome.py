"""Genome-wide benchmark: a whole-map cohort through the whole graph, via a live ``dagster dev``.

Stages, each timed and written to ``<workdir>/bench_genome.json`` as it ends:

1. ``simulate``: the genome-wide simulated cohort (:func:`genome_config`), in
   its own process (wall time, peak RSS);
2. ``sensor``: the folder is moved into the watched cohorts root (files
   backdated past the settle time); the cohort sensor registers the cohort and
   its block partitions and requests the input run, then the block runs;
3. ``inputs`` + ``phase1``: the input run, then every block partition in runs
   of up to 64 blocks through the daemon (if the sensor requests none, a
   backfill of the block assets is launched as from the asset page);
4. ``downstream``: Phase 2 and every analysis asset up to the findings panel,
   as the automation sensor requests them (else a launched backfill);
5. ``ticks``: the daemon's sensor and schedule tick durations;
6. ``ui``: the ``block_embeddings`` partitions page in headless chromium, for
   the cohort alone and with extra cohorts registered (dynamic partition keys
   added to the instance, nothing trained);
7. ``score``: :func:`genoembed_assets.validity.score_cohort` against the planted truth.

Peak RSS of runs comes from polling the ``dagster dev`` process tree (see
``_genome_probe.py``). Usage::

    python bench/bench_genome.py                          # 2,000 subjects x 1,703 blocks (hours on 2 cores)
    python bench/bench_genome.py --blocks 40 --subjects 300   # the 8 loci + 32 background blocks (minutes)
    python bench/bench_genome.py --rerun-downstream --workdir W   # Phase 2 and the analyses again on W's Phase 1

``--rerun-downstream`` reuses a finished work folder (its cohort, Dagster
instance and Phase 1 embeddings): it launches a backfill of the downstream
assets (imputation left out unless ``--with-imputation``), waits for its runs,
then scores; the earlier stages' figures are kept from the earlier run and the
whole run's downstream stage is kept as ``downstream_previous`` (a later rerun
replaces an earlier rerun's).

On a failure dagster dev is stopped (its whole process group), the failed stage
is named and the JSON keeps the stages done. See docs/scale.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import _genome_probe as probe  # noqa: E402

COHORT = "genome"
N_MAP_BLOCKS = 1703
UI_ASSET = "block_embeddings"
_SIMULATE = """
import json, resource, sys, time
from genoembed_assets.genotypes.simulate import genome_config, simulate_cohort
fields = json.loads(sys.argv[2])
t = time.perf_counter()
c = simulate_cohort(sys.argv[1], config=genome_config(**fields))
print(json.dumps({"wall_s": time.perf_counter() - t, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path(args.workdir).resolve()
        self.out_path = self.work / "bench_genome.json"
        self.result: dict = {"args": vars(args), "stages": {}, "failed_stage": None}
        self.dagster = self.sampler = None
        self.t_drop = 0.0

    # ------------------------------------------------------------------ plumbing

    def save(self) -> None:
        from genoembed_assets import storage

        storage.write_json(self.out_path, self.result)

    def stage(self, name: str, fn) -> None:
        log(f"stage {name} ...")
        started = time.perf_counter()
        try:
            out = fn() or {}
        except BaseException as exc:
            self.result["failed_stage"] = name
            self.result["error"] = f"{type(exc).__name__}: {exc}"
            self.result["traceback"] = traceback.format_exc()[-4000:]
            self.save()
            raise
        out.setdefault("wall_s", round(time.perf_counter() - started, 2))
        self.result["stages"][name] = out
        self.save()
        log(f"stage {name} done in {out['wall_s']:.1f} s")

    def env(self) -> dict[str, str]:
        return {"GENOEMBED_DATA": str(self.work / "data"), "GENOEMBED_COHORTS": str(self.work / "cohorts"),
                "GENOEMBED_RESULTS": str(self.work / "results"), "DAGSTER_HOME": str(self.work / "home"),
                "GENOEMBED_PHASE1_PRESET": self.args.phase1_preset, "GENOEMBED_PHASE2_PRESET": self.args.phase2_preset}

    def instance(self):
        import dagster as dg

        return dg.DagsterInstance.from_config(str(self.work / "home"))

    def prepare(self) -> None:
        if self.work.exists() and any(self.work.iterdir()):
            if not self.args.fresh:
                raise SystemExit(f"{self.work} is not empty: pass --fresh to delete it, or another --workdir")
            if not (self.work / "bench_genome.json").exists() and not (self.work / "home" / "dagster.yaml").exists():
                raise SystemExit(f"{self.work} does not look like a bench_genome work folder: not deleting it")
            shutil.rmtree(self.work)
        for sub in ("home", "cohorts", "results", "staging", "data"):
            (self.work / sub).mkdir(parents=True, exist_ok=True)
        (self.work / "data" / "reference").symlink_to(ROOT / "data" / "reference", target_is_directory=True)
        (self.work / "home" / "dagster.yaml").write_text(
            "telemetry:\n  enabled: false\nconcurrency:\n  runs:\n"
            f"    max_concurrent_runs: {self.args.max_concurrent_runs}\n")
        os.environ.update(self.env())  # before genoembed_assets reads its defaults

    def resume(self) -> None:
        """Reopen a finished work folder for ``--rerun-downstream``."""
        if not self.out_path.exists() or not (self.work / "home" / "dagster.yaml").exists():
            raise SystemExit(f"{self.work} holds no finished bench_genome run (bench_genome.json, home/dagster.yaml)")
        previous = json.loads(self.out_path.read_text())
        if "phase1" not in previous.get("stages", {}):
            raise SystemExit(f"{self.out_path}: the earlier run did not finish Phase 1; run the whole bench")
        stages = previous["stages"]
        if "downstream" in stages:
            # The whole run's own downstream stage is kept across reruns; a rerun's is replaced.
            earlier = stages.pop("downstream")
            stages.setdefault("downstream_previous", earlier)
        for name in ("ticks", "ui", "score"):
            stages.pop(name, None)
        self.result = {"args": previous.get("args", {}), "rerun_args": vars(self.args), "stages": stages, "failed_stage": None}
        manifest = (self.work / "cohorts" / COHORT / "manifest.tsv").read_text().splitlines()[1:]
        self.blocks = [line.split("\t")[0] for line in manifest]
        os.environ.update(self.env())

    def rerun_downstream(self) -> dict:
        """Backfill the downstream assets again and wait for the backfill and its runs to end."""
        self.t_drop = time.time()
        assets = [a for a in self.stages.downstream
                  if self.args.with_imputation or "imput" not in a.to_user_string()]
        backfill_id = self.launch_backfill(assets, [COHORT], "downstream")
        log(f"  launched downstream backfill {backfill_id} ({len(assets)} assets)")

        def done():
            with self.instance() as inst:
                status = inst.get_backfill(backfill_id).status.value
            current = self._runs("downstream")
            self._check_failed("downstream", current)
            return status not in ("REQUESTED", "CANCELING", "FAILING") and current and all(
                r.dagster_run.is_finished for r in current)

        def progress():
            current = self._runs("downstream")
            log(f"  downstream: {sum(r.dagster_run.is_finished for r in current)}/{len(current)} runs finished")

        probe.wait_until("the downstream backfill to end", done, timeout=self.args.stage_timeout, interval=5,
                         progress=progress)
        with self.instance() as inst:
            details = probe.run_summaries(inst, self._runs("downstream"), self.sampler)
        starts = [r["start"] for r in details if r["start"]]
        ends = [r["end"] for r in details if r["end"]]
        peaks = [r["peak_rss_gb"] for r in details if r["peak_rss_gb"] is not None]
        return {"wall_s": round(max(ends) - min(starts), 2), "wait_s": round(time.time() - self.t_drop, 2),
                "runs": len(details), "peak_rss_gb": max(peaks, default=None), "backfill": backfill_id,
                "assets": sorted(a.to_user_string() for a in assets), "run_details": details}

    # ------------------------------------------------------------------ stages

    def simulate(self) -> dict:
        fields = {"n_subjects": self.args.subjects, "seed": self.args.seed}
        if self.args.max_variants is not None:
            fields["max_variants"] = self.args.max_variants
        if self.args.blocks and self.args.blocks < N_MAP_BLOCKS:
            fields["n_background_blocks"] = self.args.blocks - 8  # evenly spread, away from the loci and the MHC
        out = subprocess.run([sys.executable, "-c", _SIMULATE, str(self.work / "staging" / COHORT), json.dumps(fields)],
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"simulation failed:\n{out.stderr[-3000:]}")
        measured = json.loads(out.stdout.strip().splitlines()[-1])
        manifest = (self.work / "staging" / COHORT / "manifest.tsv").read_text().splitlines()[1:]
        variants = sum(int(line.split("\t")[4]) for line in manifest)
        size = sum(p.stat().st_size for p in (self.work / "staging" / COHORT).rglob("*") if p.is_file())
        return {"wall_s": round(measured["wall_s"], 2), "peak_rss_gb": round(measured["peak_rss_gb"], 3),
                "blocks": len(manifest), "subjects": self.args.subjects, "variants": variants,
                "bytes_on_disk": size, "config": fields}

    def start_dagster(self) -> dict:
        from genoembed_tests.live_dagster import LiveDagster

        started = time.perf_counter()
        self.stages = self._graph_stages()
        self.dagster = LiveDagster(self.work / "home", env=self.env()).launch()
        self.sampler = probe.TreeSampler(self.dagster.process.pid, interval=self.args.sample_interval).start()
        self.dagster.wait_ready(timeout=600)
        return {"wall_s": round(time.perf_counter() - started, 2), "url": self.dagster.url}

    def drop_and_register(self) -> dict:
        from genoembed_tests.test_sensor import backdate

        staged, watched = self.work / "staging" / COHORT, self.work / "cohorts" / COHORT
        blocks = [line.split("\t")[0] for line in (staged / "manifest.tsv").read_text().splitlines()[1:]]
        self.blocks = blocks
        backdate(staged)  # settled already: the sensor need not wait SETTLE_SECONDS
        self.t_drop = time.time()
        shutil.move(str(staged), watched)

        def registered():
            with self.instance() as inst:
                known = set(inst.get_dynamic_partitions("blocks"))
                return inst.has_dynamic_partition("cohorts", COHORT) and known >= set(blocks)

        probe.wait_until("the cohort sensor to register the block partitions", registered,
                         timeout=self.args.stage_timeout, interval=0.5)
        until_registered = time.time() - self.t_drop

        def tick():  # the registering tick is still running (requesting runs) when the keys appear
            with self.instance() as inst:
                return probe.first_tick_with_partitions(inst, "cohort_sensor", self.t_drop - 1)

        tick = probe.wait_until("the registering sensor tick to end", tick, timeout=self.args.stage_timeout, interval=1)
        with self.instance() as inst:
            n_partitions = len(inst.get_dynamic_partitions("blocks"))
        return {"wall_s": round(until_registered, 2), "registration_tick": tick, "block_partitions": n_partitions}

    def _graph_stages(self):
        from genoembed_assets.defs.automation.cohorts import graph_stages
        from genoembed_assets.definitions import defs

        return graph_stages(defs.resolve_asset_graph())

    def _missing(self, assets, keys) -> int:
        with self.instance() as inst:
            return sum(len(set(keys) - inst.get_materialized_partitions(a)) for a in assets)

    def _runs(self, stage: str) -> list:
        with self.instance() as inst:
            return [r for r in probe.cohort_runs(inst, COHORT, self.t_drop - 1) if probe.stage_of(r) == stage]

    def _check_failed(self, stage: str, runs) -> None:
        failed = [r for r in runs if r.dagster_run.status.value in ("FAILURE", "CANCELED")]
        if failed:
            with self.instance() as inst:
                raise RuntimeError(f"{len(failed)} {stage} run(s) failed; first {failed[0].dagster_run.run_id}: "
                                   f"{probe.failure_message(inst, failed[0].dagster_run.run_id)}")

    def _wait_stage(self, stage: str, assets, keys, *, fallback_after: float, forgive_early: bool = False) -> dict:
        """Wait until every key of ``assets`` is materialized and the stage's runs have ended.

        A backfill is launched if no run of the stage came within ``fallback_after``.
        ``forgive_early``: runs created before this stage started that failed are
        premature (requested before their inputs were ready; automation requests the
        assets again once they are): recorded, neither fatal nor counted.
        """
        started, launched = time.time(), None

        def early(r) -> bool:
            return (forgive_early and r.create_timestamp.timestamp() < started
                    and r.dagster_run.status.value in ("FAILURE", "CANCELED"))

        def runs():
            return [r for r in self._runs(stage) if not early(r)]

        def progress():
            current = runs()
            done = sum(r.dagster_run.is_finished for r in current)
            log(f"  {stage}: {done}/{len(current)} runs finished, {self._missing(assets, keys)} of "
                f"{len(assets) * len(keys)} asset partitions to go")

        def finished():
            nonlocal launched
            current = runs()
            self._check_failed(stage, current)
            if not self._missing(assets, keys):
                # Materialized; the stage ends when its runs have finished too (checks, run end).
                return all(r.dagster_run.is_finished for r in current)
            if launched is None and not current and time.time() - started > fallback_after:
                launched = self.launch_backfill(assets, keys, stage)
                log(f"  no {stage} run was requested in {fallback_after:.0f} s: launched backfill {launched}")
            return False

        probe.wait_until(f"the {stage} stage to materialize", finished, timeout=self.args.stage_timeout,
                         interval=2, progress=progress)
        with self.instance() as inst:
            details = probe.run_summaries(inst, runs(), self.sampler)
            premature = [{"run_id": r.dagster_run.run_id, "assets": sorted(k.to_user_string() for k in
                                                                           (r.dagster_run.asset_selection or ())),
                          "error": probe.failure_message(inst, r.dagster_run.run_id)}
                         for r in self._runs(stage) if early(r)]
        starts = [r["start"] for r in details if r["start"]]
        ends = [r["end"] for r in details if r["end"]]
        peaks = [r["peak_rss_gb"] for r in details if r["peak_rss_gb"] is not None]
        return {"wall_s": round(max(ends) - min(starts), 2) if starts and ends else round(time.time() - started, 2),
                "wait_s": round(time.time() - started, 2), "runs": len(details), "peak_rss_gb": max(peaks, default=None),
                "fallback_backfill": launched, "premature_failed_runs": premature, "run_details": details}

    def launch_backfill(self, assets, partition_names, stage: str) -> str:
        """An asset backfill as from the asset page; its runs carry the cohort and stage tags the bench reads
        (no fingerprint tag, so the sensor's own bookkeeping is unchanged)."""
        tags = {"genoembed/cohort": COHORT, "genoembed/stage": stage, "genoembed/bench": "fallback"}
        data = self.dagster.graphql(
            """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
                __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""",
            {"params": {"partitionNames": [str(k) for k in partition_names], "fromFailure": False,
                        "assetSelection": [{"path": a.path} for a in assets],
                        "tags": [{"key": k, "value": v} for k, v in tags.items()]}})
        result = data["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"backfill not launched: {result}")
        return result["backfillId"]

    def inputs(self) -> dict:
        return self._wait_stage("inputs", self.stages.inputs, [COHORT], fallback_after=self.args.fallback_after)

    def phase1(self) -> dict:
        keys = [f"{b}|{COHORT}" for b in self.blocks]
        out = self._wait_stage("blocks", self.stages.blocks, keys, fallback_after=self.args.fallback_after)
        out["blocks"], out["per_block_s"] = len(keys), round(out["wall_s"] / len(keys), 3)
        return out

    def downstream(self) -> dict:
        return self._wait_stage("downstream", self.stages.downstream, [COHORT], fallback_after=self.args.fallback_after,
                                forgive_early=True)

    def ticks(self) -> dict:
        with self.instance() as inst:
            return {"wall_s": 0.0, "instigators": probe.tick_summaries(inst, self.t_drop - 1),
                    "process_peaks_gb": self.sampler.roles(),
                    "dagster_tree_peak_gb": round(self.sampler.peak_total / probe.GB, 3),
                    "samples": self.sampler.samples}

    def ui(self) -> dict:
        import _ui_timing as ui_timing

        with self.instance() as inst:
            n_done = len(inst.get_materialized_partitions(self._asset_key(UI_ASSET)))
        extra = [f"{COHORT}_ui{i}" for i in range(2, self.args.ui_cohorts + 1)]
        timings = {"1": ui_timing.time_partitions_page(self.dagster.url, UI_ASSET, self.blocks[0], n_done,
                                                      repeats=self.args.ui_repeats)}
        if extra:
            with self.instance() as inst:
                inst.add_dynamic_partitions("cohorts", extra)
            timings[str(1 + len(extra))] = ui_timing.time_partitions_page(
                self.dagster.url, UI_ASSET, self.blocks[0], n_done, repeats=self.args.ui_repeats)
        return {"asset": UI_ASSET, "by_cohorts": timings, "extra_cohorts": extra,
                "extra_cohorts_note": "cohort keys added with DagsterInstance.add_dynamic_partitions: "
                                      "partitions exist (cohorts x blocks), nothing materialized or trained"}

    def _asset_key(self, name: str):
        import dagster as dg

        return dg.AssetKey(name)

    def score(self) -> dict:
        from genoembed_assets.validity import score_cohort

        return {"scores": score_cohort(self.work / "cohorts" / COHORT, self.work / "results" / COHORT),
                "bytes": self.sizes()}

    def sizes(self) -> dict[str, int]:
        """Bytes on disk: the cohort's input, each results sub-folder, the Dagster instance (DAGSTER_HOME)."""
        def size(folder: Path) -> int:
            return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())

        results = self.work / "results" / COHORT
        out = {"input": size(self.work / "cohorts" / COHORT), "instance": size(self.work / "home")}
        for sub in sorted(p for p in results.iterdir() if p.is_dir()) if results.is_dir() else []:
            out[f"results/{sub.name}"] = size(sub)
        return out

    # ------------------------------------------------------------------ all of it

    def run(self) -> int:
        if self.args.rerun_downstream:
            self.resume()
        else:
            self.prepare()
        log(f"workdir {self.work}: {self.args.subjects} subjects x {self.args.blocks or N_MAP_BLOCKS} blocks, "
            f"presets phase1={self.args.phase1_preset} phase2={self.args.phase2_preset}")
        rc = 0
        try:
            if self.args.rerun_downstream:
                self.stage("dagster_start", self.start_dagster)
                self.stage("downstream", self.rerun_downstream)
            else:
                self.stage("simulate", self.simulate)
                self.stage("dagster_start", self.start_dagster)
                self.stage("sensor", self.drop_and_register)
                self.stage("inputs", self.inputs)
                self.stage("phase1", self.phase1)
                self.stage("downstream", self.downstream)
            self.stage("ticks", self.ticks)
            if not self.args.skip_ui and not self.args.rerun_downstream:
                self.stage("ui", self.ui)
        except BaseException as exc:  # KeyboardInterrupt too: dagster dev must not outlive the bench
            log(f"FAILED in stage {self.result['failed_stage']}: {exc}")
            if self.dagster is not None:
                log(f"dagster dev log tail:\n{self.dagster.log_tail(30)}")
            rc = 1
        finally:
            if self.sampler is not None:
                self.sampler.stop()
            if self.dagster is not None:
                self.dagster.stop()
            self.save()
        if rc == 0:
            try:
                self.stage("score", self.score)
            except Exception as exc:
                log(f"FAILED in stage score: {exc}")
                rc = 1
        print(report(self.result))
        log(f"wrote {self.out_path}")
        return rc


def _fmt(value, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def report(result: dict) -> str:
    """The markdown table (stage | wall s | peak RSS GB | runs | notes), then UI, ticks and scores."""
    s = result["stages"]
    lines = ["| stage | wall s | peak RSS GB | runs | notes |", "|---|---|---|---|---|"]
    notes = {
        "simulate": lambda v: f"{v['subjects']} subjects x {v['blocks']} blocks, {v['variants']} variants, "
                              f"{v['bytes_on_disk'] / 1e6:.1f} MB on disk",
        "dagster_start": lambda v: "until the code location loaded",
        "sensor": lambda v: f"drop -> {v['block_partitions']} block partitions registered; registering tick "
                            f"{_fmt((v['registration_tick'] or {}).get('duration_s'))} s",
        "phase1": lambda v: f"{v['blocks']} blocks, {v['per_block_s']} s/block" + (
            f", fallback backfill {v['fallback_backfill']}" if v.get("fallback_backfill") else ""),
        "downstream": lambda v: "Phase 2, analyses, findings" + (
            f", fallback backfill {v['fallback_backfill']}" if v.get("fallback_backfill") else "") + (
            f"; {len(v['premature_failed_runs'])} premature run(s) failed before Phase 1 ended: "
            f"{v['premature_failed_runs'][0]['assets']}" if v.get("premature_failed_runs") else "") + (
            f" (rerun: backfill of {len(v['assets'])} assets, imputation {'in' if any('imput' in a for a in v['assets']) else 'left out'})"
            if v.get("backfill") else ""),
        "downstream_previous": lambda v: "the earlier run's downstream stage (before --rerun-downstream)",
    }
    for name in ("simulate", "dagster_start", "sensor", "inputs", "phase1", "downstream_previous", "downstream"):
        if name in s:
            v = s[name]
            lines.append(f"| {name} | {_fmt(v.get('wall_s'), 1)} | {_fmt(v.get('peak_rss_gb'))} | "
                         f"{_fmt(v.get('runs'))} | {notes.get(name, lambda v: '')(v)} |")
    if result.get("failed_stage"):
        lines.append(f"| {result['failed_stage']} | FAILED | | | {result.get('error', '')[:200]} |")
    if "ui" in s:
        lines += ["", f"UI ({s['ui']['asset']} partitions page, s until the list is rendered):"]
        for n, t in s["ui"]["by_cohorts"].items():
            lines.append(f"- {n} cohort(s): median {_fmt(t['median_s'])} s of {t['loads_s']}")
        lines.append(f"- extra cohorts: {s['ui']['extra_cohorts_note']}")
    if "ticks" in s:
        lines += ["", "| instigator | type | ticks | median s | max s | runs requested |", "|---|---|---|---|---|---|"]
        for name, t in s["ticks"]["instigators"].items():
            lines.append(f"| {name} | {t['type']} | {t['ticks']} | {t['median_s']} | {t['max_s']} | {t['runs_requested']} |")
        lines.append(f"\nprocess peaks (GB): {s['ticks']['process_peaks_gb']}; whole dagster dev tree "
                     f"{s['ticks']['dagster_tree_peak_gb']}")
    if "score" in s:
        lines += ["", "scores vs planted truth: " + json.dumps(s["score"]["scores"], default=str),
                  "bytes on disk: " + json.dumps(s["score"]["bytes"])]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=2000)
    parser.add_argument("--blocks", type=int, default=None,
                        help="take N blocks (the 8 loci + N-8 evenly spread background blocks); default the whole map")
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument("--workdir", default="/tmp/genoembed_bench_genome")
    parser.add_argument("--fresh", action="store_true", help="delete a non-empty --workdir first")
    parser.add_argument("--max-variants", type=int, default=None,
                        help="cap on variants per block (default: the genome preset's 300)")
    parser.add_argument("--phase1-preset", default="fast")
    parser.add_argument("--phase2-preset", default="genome", help="Phase 2 preset (genome: windowed attention, 2 seeds)")
    parser.add_argument("--max-concurrent-runs", type=int, default=2)
    parser.add_argument("--ui-cohorts", type=int, default=5, help="cohorts registered for the second UI timing")
    parser.add_argument("--ui-repeats", type=int, default=3)
    parser.add_argument("--skip-ui", action="store_true")
    parser.add_argument("--stage-timeout", type=float, default=12 * 3600, help="seconds per stage")
    parser.add_argument("--fallback-after", type=float, default=600,
                        help="seconds without a run of a stage before a backfill is launched instead")
    parser.add_argument("--rerun-downstream", action="store_true",
                        help="reuse a finished --workdir: run Phase 2 and the analyses again on its Phase 1, then score")
    parser.add_argument("--with-imputation", action="store_true", help="with --rerun-downstream: impute again too")
    parser.add_argument("--sample-interval", type=float, default=0.5, help="seconds between RSS samples")
    args = parser.parse_args(argv)
    if args.blocks is not None and args.blocks < 9:
        parser.error("--blocks must be >= 9 (the 8 locus blocks and at least one background block)")
    return Bench(args).run()


if __name__ == "__main__":
    raise SystemExit(main())
