"""Real 1000 Genomes genotypes (chr20:1-4 Mb, 503 samples, no phenotypes) through ``genoembed run --preset fast``.

The user's path: a folder holding the two VCF panels and nothing else, the installed
command, a fresh results root and Dagster home. It must run to the end: every stage,
every analysis file, the phenotype analyses recorded as skipped ("no phenotypes").
Skipped, like test_1kg.py, where ``shared/data`` is not beside the repository (a
fresh clone).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from .test_1kg import KG, PANELS

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not all((KG / p).exists() for p in PANELS),
                       reason=f"1000 Genomes test data not found at {KG} (shared/ beside the repo)"),
]

GENOEMBED = os.path.join(os.path.dirname(sys.executable), "genoembed")
COHORT = "kg_chr20"


def test_1kg_genotype_only_runs_to_the_end(tmp_path):
    folder = tmp_path / "cohorts" / COHORT
    folder.mkdir(parents=True)
    for name in PANELS:
        shutil.copy(KG / name, folder / name)
    env = {**os.environ, "GENOEMBED_COHORTS": str(tmp_path / "cohorts"), "GENOEMBED_RESULTS": str(tmp_path / "results"),
           "DAGSTER_HOME": str(tmp_path / "home"), "DAGSTER_DISABLE_TELEMETRY": "yes"}
    done = subprocess.run([GENOEMBED, "run", COHORT, "--preset", "fast"], env=env, capture_output=True, text=True,
                          timeout=1800, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"stderr:\n{done.stderr}\nstdout tail:\n{done.stdout[-3000:]}"
    assert done.stderr.strip() == ""  # stderr is for errors only
    assert f"Cohort {COHORT!r} materialized" in done.stdout
    assert f"{COHORT}.imputed.vcf.gz" in done.stdout  # the run says where the imputed VCF is
    assert " DEBUG " not in done.stdout  # the console log is at INFO

    out = tmp_path / "results" / COHORT
    qc = json.loads((out / "input" / "qc.json").read_text())
    assert qc["format"] == "vcf" and qc["n_subjects"] == 503
    assert (out / "phase2" / "subject_embeddings.parquet").exists()
    for name in ("block_features", "subject_clusters", "block_drivers", "leave_region_out", "embedding_geometry",
                 "phenotype_associations", "locus_validation", "findings_summary"):
        assert (out / "analysis" / f"{name}.parquet").exists(), name
    for name in ("phenotype_associations", "locus_validation"):
        assert json.loads((out / "analysis" / f"{name}.json").read_text()) == {"status": "skipped", "skipped": "no phenotypes"}
