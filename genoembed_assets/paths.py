"""Where the project's shipped reference data and default folders live.

Pure module (no Dagster): the core layers and the Dagster layer both use it.
Every location can be overridden by an environment variable so an installed
package or a deployment can point elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """Folder holding ``reference/`` (block maps, gene lists, loci)."""
    return Path(os.environ.get("GENOEMBED_DATA", PROJECT_ROOT / "data"))


def reference_dir() -> Path:
    return data_dir() / "reference"


def default_cohorts_root() -> Path:
    """Folder watched for cohorts (one sub-folder per cohort)."""
    return Path(os.environ.get("GENOEMBED_COHORTS", PROJECT_ROOT / "data" / "cohorts"))


def default_results_root() -> Path:
    """Root under which every artifact is written, one folder per cohort."""
    return Path(os.environ.get("GENOEMBED_RESULTS", PROJECT_ROOT / "results"))


# Block maps shipped in data/reference, by genome build.
BLOCK_MAPS = {
    "hg19": "ldetect_EUR_hg19.bed",
    "hg38": "ldblocks_deCODE_EUR_hg38.bed",
}
GENE_LISTS = {"hg19": "glist-hg19.txt", "hg38": "glist-hg38.txt"}


def block_map_path(build: str) -> Path:
    if build not in BLOCK_MAPS:
        raise ValueError(f"unknown genome build {build!r}: expected one of {sorted(BLOCK_MAPS)}")
    return reference_dir() / BLOCK_MAPS[build]


def gene_list_path(build: str) -> Path:
    if build not in GENE_LISTS:
        raise ValueError(f"unknown genome build {build!r}: expected one of {sorted(GENE_LISTS)}")
    return reference_dir() / GENE_LISTS[build]
