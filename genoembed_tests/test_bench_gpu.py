"""The pieces of the GPU benchmarks that run anywhere: blocks carried as .npz, the devices option, the check.

A GPU run is done by hand on a lent machine (docs/benchmarks.md, "On one GPU");
what it relies on is tested here on the CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, check=False,
                          timeout=600)


def test_blocks_saved_as_npz_train_elsewhere_with_the_same_accuracy(tmp_path):
    saved = tmp_path / "blocks.npz"
    done = _run("bench_phase1.py", "--cohort", "synthetic", "--blocks", "2", "--subjects", "120", "--save-blocks", str(saved))
    assert done.returncode == 0, done.stderr
    assert "saved 2 blocks" in done.stdout
    data = np.load(saved)
    assert len(data.files) == 2 and all(data[k].shape[0] == 120 and data[k].dtype == np.int8 for k in data.files)

    report = tmp_path / "run.json"
    done = _run("bench_phase1.py", "--cohort", str(saved), "--epochs", "3", "--ways", "genoembed,competent",
                "--device", "cpu", "--json", str(report))
    assert done.returncode == 0, done.stderr
    assert "device cpu" in done.stdout.splitlines()[0]
    rows = {r["way"]: r for r in json.loads(report.read_text())["results"]}
    assert set(rows) == {"genoembed", "competent"}
    for r in rows.values():
        assert r["device"] == "cpu" and r["peak_gpu_mb"] == 0.0
        assert r["heldout_accuracy"] > r["mode_baseline_accuracy"]  # 3 epochs already beat the mode


def test_gpu_check_says_when_there_is_no_gpu():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: run bench/gpu_check.py itself")
    done = _run("gpu_check.py")
    assert done.returncode == 2
    assert "no CUDA device here" in done.stderr
