"""bench/bench_genome.py's own parts that need no dagster dev: memory sampling, options and the report.

The benchmark itself runs a live deployment for minutes to hours (docs/scale.md),
so it is not run here; what it measures with is.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def probe():
    return _load("_genome_probe")


@pytest.fixture(scope="module")
def bench():
    return _load("bench_genome")


def test_sampler_counts_a_child_in_its_parents_tree_peak(probe):
    # A child holding ~200 MB: its own peak and the parent's subtree peak both show it.
    child = subprocess.Popen([sys.executable, "-c", "import sys, time; b = bytearray(200 * 2**20); "
                              "b[::4096] = b'x' * len(b[::4096]); print('ready', flush=True); time.sleep(30)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        sampler = probe.TreeSampler(root_pid=os.getpid())
        sampler.sample()
        assert sampler.samples == 1
        child_peak = sampler.seen[child.pid].peak_own
        assert child_peak >= 200 * 2**20
        assert sampler.seen[os.getpid()].peak_tree >= child_peak + sampler.seen[os.getpid()].peak_own
        assert sampler.peak_tree_gb([child.pid]) >= 0.19
        assert "bytearray" in sampler.seen[child.pid].cmdline
        assert sampler.peak_tree_gb([999_999_999]) is None  # a pid never seen
    finally:
        child.kill()
        child.wait()


def test_sampler_thread_stops_and_survives_a_vanished_root(probe):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    sampler = probe.TreeSampler(root_pid=child.pid, interval=0.05).start()
    child.wait()
    time.sleep(0.3)  # the root is gone: samples are skipped, the thread keeps going
    sampler.stop()
    assert not sampler._thread.is_alive()
    assert sampler.samples >= 1


def test_blocks_below_the_loci_are_refused(bench, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--blocks", "5"])
    assert exc.value.code == 2
    assert "--blocks must be >= 9" in capsys.readouterr().err


def test_report_of_a_failed_run_shows_the_stages_done_and_the_failure(bench):
    result = {"stages": {
        "simulate": {"wall_s": 12.5, "peak_rss_gb": 0.4, "subjects": 300, "blocks": 40, "variants": 6000,
                     "bytes_on_disk": 2_000_000},
        "sensor": {"wall_s": 31.0, "block_partitions": 40, "registration_tick": {"duration_s": 0.8}},
    }, "failed_stage": "phase1", "error": "RuntimeError: 1 blocks run(s) failed; first abc: boom"}
    table = bench.report(result).splitlines()
    assert table[0] == "| stage | wall s | peak RSS GB | runs | notes |"
    assert table[2].startswith("| simulate | 12.5 | 0.40 |") and "300 subjects x 40 blocks" in table[2]
    assert table[3].startswith("| sensor | 31.0 |") and "40 block partitions registered" in table[3]
    assert table[4].startswith("| phase1 | FAILED |") and "boom" in table[4]


def test_fresh_refuses_to_delete_a_folder_that_is_not_a_bench_workdir(bench, tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(SystemExit, match="is not empty: pass --fresh"):
        bench.main(["--workdir", str(tmp_path), "--blocks", "10"])
    with pytest.raises(SystemExit, match="does not look like a bench_genome work folder"):
        bench.main(["--workdir", str(tmp_path), "--blocks", "10", "--fresh"])
    assert (tmp_path / "thesis.tex").read_text() == "precious"


def test_rerun_downstream_needs_a_finished_run_and_keeps_the_whole_runs_stage(bench, tmp_path, monkeypatch):
    import json

    for name in ("GENOEMBED_DATA", "GENOEMBED_COHORTS", "GENOEMBED_RESULTS", "DAGSTER_HOME",
                 "GENOEMBED_PHASE1_PRESET", "GENOEMBED_PHASE2_PRESET"):  # resume() sets them for dagster dev
        monkeypatch.setenv(name, os.environ.get(name, ""))

    with pytest.raises(SystemExit, match="holds no finished bench_genome run"):
        bench.main(["--workdir", str(tmp_path), "--rerun-downstream"])
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    (tmp_path / "bench_genome.json").write_text(json.dumps({"stages": {"simulate": {"wall_s": 1.0}}}))
    with pytest.raises(SystemExit, match="did not finish Phase 1"):
        bench.main(["--workdir", str(tmp_path), "--rerun-downstream"])
    whole = {"wall_s": 2169.0, "peak_rss_gb": 3.6, "runs": 1}
    (tmp_path / "bench_genome.json").write_text(json.dumps({"stages": {"phase1": {"wall_s": 4078.0}, "downstream": whole,
                                                                      "score": {"wall_s": 0.8}}}))
    (tmp_path / "cohorts" / "genome").mkdir(parents=True)
    (tmp_path / "cohorts" / "genome" / "manifest.tsv").write_text("block_id\tchrom\nchr1_b0000\t1\nchr1_b0001\t1\n")
    b = bench.Bench(bench.main.__globals__["argparse"].Namespace(
        workdir=str(tmp_path), rerun_downstream=True, phase1_preset="fast", phase2_preset="genome"))
    b.resume()
    assert b.blocks == ["chr1_b0000", "chr1_b0001"]
    assert b.result["stages"]["downstream_previous"] == whole and "score" not in b.result["stages"]
    b.result["stages"]["downstream"] = {"wall_s": 1432.0}  # a rerun's stage, then a second rerun
    b.save()
    b.resume()
    assert b.result["stages"]["downstream_previous"] == whole, "a second rerun keeps the whole run's stage"
