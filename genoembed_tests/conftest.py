"""Shared fixtures: one simulated demo cohort and one materialized pipeline per session.

Training is the slow part of the suite, so the demo cohort's graph is materialized
once (``demo_pipeline``) and every graph-level test reads its results.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from genoembed_assets.defs.resources import ComputeResource, GenoembedStorage

DEMO = "demo"
SEED = 42


@pytest.fixture
def global_random_seed() -> int:
    return SEED


@dataclass
class DemoPipeline:
    instance: dg.DagsterInstance
    storage: GenoembedStorage
    cohort: str
    truth: dict
    stages: list

    @property
    def results(self) -> Path:
        return self.storage.cohort_dir(self.cohort)


@pytest.fixture(scope="session")
def demo_cohorts_root(tmp_path_factory) -> Path:
    """The default demo cohort (as `make run` builds it) under a temporary cohorts root."""
    from genoembed_assets.genotypes.simulate import simulate_cohort

    root = tmp_path_factory.mktemp("cohorts")
    simulate_cohort(root / DEMO)
    return root


@pytest.fixture(scope="session")
def demo_storage(demo_cohorts_root, tmp_path_factory) -> GenoembedStorage:
    return GenoembedStorage(cohorts_root=str(demo_cohorts_root), results_root=str(tmp_path_factory.mktemp("results")))


@pytest.fixture(scope="session")
def demo_instance(tmp_path_factory):
    home = tmp_path_factory.mktemp("dagster_home")
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        yield instance


def run_config_for_tests() -> dict:
    """The fastest training presets: the suite checks behaviour, not the best fit."""
    from genoembed_assets.runner import fast_run_config

    return fast_run_config()


@pytest.fixture(scope="session")
def demo_pipeline(demo_instance, demo_storage) -> DemoPipeline:
    """The demo cohort's whole graph, materialized once for the session."""
    from genoembed_assets.runner import materialize_cohort

    stages = materialize_cohort(
        DEMO, instance=demo_instance,
        resources={"storage": demo_storage, "compute": ComputeResource(device="cpu")},
        run_config=run_config_for_tests(), log=lambda m: print(m),
    )
    truth = json.loads((Path(demo_storage.cohorts_root) / DEMO / "truth.json").read_text())
    return DemoPipeline(demo_instance, demo_storage, DEMO, truth, stages)


def latest_materialization(instance: dg.DagsterInstance, asset: str, partition: str | None = None):
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition] if partition else None), limit=1
    ).records
    assert records, f"no materialization of {asset} {partition or ''}"
    return records[0].asset_materialization


def metadata_value(materialization, name: str):
    entry = materialization.metadata[name]
    return getattr(entry, "value", entry)


os.environ.setdefault("MPLBACKEND", "Agg")
