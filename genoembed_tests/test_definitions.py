"""Tier 3: the code location loads, validates and keeps the pure layers free of Dagster."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "genoembed_assets"


def test_definitions_load_with_expected_assets():
    from genoembed_assets.definitions import defs

    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert {"cohort_input", "phenotypes", "ancestry_pcs", "block_genotypes"} <= keys
    graph = defs.resolve_asset_graph()
    blocks = graph.get(dg.AssetKey("block_genotypes"))
    assert blocks.partitions_def.partitions_defs[0].name in {"block", "cohort"}
    assert blocks.backfill_policy.max_partitions_per_run > 1


@pytest.mark.parametrize("layer", ["genotypes", "models", "analysis"])
def test_pure_layers_do_not_import_dagster(layer):
    offenders = []
    for path in (PACKAGE / layer).rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0].startswith("dagster")]
    assert offenders == []


def test_dagster_definitions_validate_cli():
    exe = Path(sys.executable).with_name("dagster")
    proc = subprocess.run([str(exe), "definitions", "validate"], cwd=PACKAGE.parent, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "genoembed" in proc.stdout + proc.stderr


def test_workspace_file_names_the_same_location():
    exe = Path(sys.executable).with_name("dagster")
    proc = subprocess.run([str(exe), "definitions", "validate", "-w", "workspace.yaml"], cwd=PACKAGE.parent,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dagster_cloud_yaml_names_the_module():
    import yaml

    config = yaml.safe_load((PACKAGE.parent / "dagster_cloud.yaml").read_text())
    (location,) = config["locations"]
    assert location["location_name"] == "genoembed"
    assert location["code_source"]["module_name"] == "genoembed_assets.definitions"
