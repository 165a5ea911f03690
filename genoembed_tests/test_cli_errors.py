"""The bad-input table of test_bad_input.py, through the installed ``genoembed`` command.

Each malformed cohort is the only folder under a temporary cohorts root, run with
``genoembed run`` against a temporary results root and Dagster home. What the user
sees: exit code 2, at most 3 lines on stderr naming the file and the block, row or
variant (the same fragments the pure-layer test expects), no traceback, and nothing
written under the results root. ``--debug`` adds the traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .test_bad_input import CASES, manifest_shape_mismatch

GENOEMBED = Path(sys.executable).with_name("genoembed")
COHORT = "in"  # every case writes its cohort into <tmp>/in


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GENOEMBED_COHORTS": str(tmp_path), "GENOEMBED_RESULTS": str(tmp_path / "results"),
           "DAGSTER_HOME": str(tmp_path / "home"), "DAGSTER_DISABLE_TELEMETRY": "yes", "COLUMNS": "200"}
    return subprocess.run([str(GENOEMBED), "run", COHORT, "--preset", "fast", *args], env=env, capture_output=True,
                          text=True, timeout=600, stdin=subprocess.DEVNULL)


def written_files(tmp_path: Path) -> list[str]:
    results = tmp_path / "results"
    return sorted(str(p.relative_to(results)) for p in results.rglob("*") if p.is_file()) if results.exists() else []


@pytest.mark.slow
@pytest.mark.skipif(not GENOEMBED.exists(), reason=f"{GENOEMBED} not installed (pip install -e .)")
@pytest.mark.parametrize("case,fragments", CASES, ids=[c.__name__ for c, _ in CASES])
def test_bad_input_through_the_command(tmp_path, case, fragments):
    case(tmp_path)
    done = run_cli(tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, f"exit {done.returncode}\nstderr:\n{done.stderr}\nstdout tail:\n{done.stdout[-2000:]}"
    assert 1 <= len(lines) <= 3, done.stderr
    assert "Traceback" not in done.stderr and "DagsterExecutionStepExecutionError" not in done.stderr
    message = " ".join(done.stderr.split())
    for fragment in fragments:
        assert " ".join(fragment.split()) in message, f"{fragment!r} not in {done.stderr!r}"
    assert lines[0].startswith("genoembed: error: ")
    assert "fix" in done.stderr  # the second line says what to do
    assert written_files(tmp_path) == []  # nothing partial


@pytest.mark.slow
@pytest.mark.skipif(not GENOEMBED.exists(), reason=f"{GENOEMBED} not installed (pip install -e .)")
def test_debug_shows_the_traceback(tmp_path):
    manifest_shape_mismatch(tmp_path)
    done = run_cli(tmp_path, "--debug")
    assert done.returncode == 2
    assert "Traceback" in done.stderr and "chr1_b0001.npy" in done.stderr.splitlines()[-2]


@pytest.mark.parametrize("argv,env,fragments", [
    (["simulate", "{tmp}/sim", "--n-subjects", "10"], {}, ["n_subjects must be >= 30, got 10"]),
    (["simulate", "{tmp}/sim", "--inter-block-ld", "-1"], {}, ["inter_block_ld"]),
    (["demo", "--n-subjects", "5"], {}, ["--n-subjects", "n_subjects must be >= 30"]),
    (["run", "nope"], {"DAGSTER_HOME": "{tmp}/home", "GENOEMBED_COHORTS": "{tmp}"}, ["nope", "no cohort folder 'nope'", "GENOEMBED_COHORTS"]),
    (["run", "in"], {"DAGSTER_HOME": None}, ["DAGSTER_HOME is not set", "export DAGSTER_HOME"]),
], ids=["simulate_too_few_subjects", "simulate_bad_ld", "demo_too_few_subjects", "run_no_such_cohort", "run_no_dagster_home"])
def test_usage_errors_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys, argv, env, fragments):
    from genoembed_assets import cli

    for key, value in env.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value.format(tmp=tmp_path))
    (tmp_path / "in").mkdir()
    code = cli.main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert 1 <= len(err.strip().splitlines()) <= 3 and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
