"""Restricted data stays restricted: Dagster's storage holds aggregates and file paths, no subject-level data.

Everything Dagster keeps (runs, every event, log messages, metadata) is visible to anyone
who can open the UI or read its PostgreSQL database, which are looser than the access
control on a cohort. The whole graph is materialized on a small simulated cohort and every
stored record is scanned (see event_log_scan.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml
from dagster._core.events import DagsterEventType, StepMaterializationData
from dagster._serdes import serialize_value

from genoembed_assets.defs.resources import ComputeResource, GenoembedStorage
from genoembed_assets.runner import fast_run_config, materialize_cohort

from .event_log_scan import distinctive, scan_instance, scan_record

COHORT = "restricted"
N_SUBJECTS = 80
IDS = [f"SIM{i:05d}" for i in range(1, N_SUBJECTS + 1)]


@pytest.fixture(scope="module")
def materialized(tmp_path_factory):
    from genoembed_assets.genotypes.simulate import SimulationConfig, simulate_cohort

    root = tmp_path_factory.mktemp("restricted")
    folder = root / "cohorts" / COHORT
    simulate_cohort(folder, config=SimulationConfig(n_subjects=N_SUBJECTS, n_background_blocks=0, seed=7))
    # three genotyped subjects without a phenotype row: the degraded path that names subjects in a report
    table = pd.read_csv(folder / "phenotypes.csv", dtype={"subject_id": str})
    table.iloc[3:].to_csv(folder / "phenotypes.csv", index=False)
    storage = GenoembedStorage(cohorts_root=str(root / "cohorts"), results_root=str(root / "results"))
    (root / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(root / "home")) as instance:
        stages = materialize_cohort(COHORT, instance=instance, run_config=fast_run_config(), log=lambda m: None,
                                    resources={"storage": storage, "compute": ComputeResource(device="cpu")})
        ids = list(pd.read_csv(folder / "subjects.tsv", sep="\t", dtype=str)["subject_id"])
        yield instance, stages, ids


def test_the_whole_graph_ran_and_ids_are_searchable(materialized):
    instance, stages, ids = materialized
    assert ids == IDS and distinctive(ids)
    assert len(stages) >= 3 and not [c for s in stages for c in s.failed_checks]  # a failed stage raises
    materialized_assets = {k.to_user_string() for k in instance.get_asset_keys()}
    assert {"cohort_input", "phenotypes", "block_embeddings", "subject_embeddings", "subject_clusters"} <= materialized_assets


def test_no_subject_level_data_in_any_stored_record(materialized):
    instance, _, ids = materialized
    count, leaks = scan_instance(instance, ids)
    assert count > 500  # every run, every event: the scan saw the whole log
    assert not leaks, "\n".join(f"{leak.where}: {leak.problem}" for leak in leaks[:20])


def test_a_failed_input_check_names_rows_not_subjects(tmp_path):
    """The blocking missingness check fails on one subject: its message points at the row, not the ID."""
    from genoembed_assets.genotypes.layout import BlockArray, write_cohort
    from genoembed_assets.models import synthetic_genotypes
    from genoembed_assets.runner import PipelineError

    ids = [f"PRIV{i:04d}" for i in range(40)]
    blocks = [BlockArray(f"chr1_b{i:04d}", "1", 1000 * i, 1000 * (i + 1), synthetic_genotypes(40, 20, 3, seed=i))
              for i in range(2)]
    for block in blocks:
        block.genotypes[7, :] = -1  # PRIV0007 has no call at all
    write_cohort(tmp_path / "cohorts" / "bad", ids, blocks,
                 phenotypes=pd.DataFrame({"subject_id": ids[2:], "age": range(38)}))
    storage = GenoembedStorage(cohorts_root=str(tmp_path / "cohorts"), results_root=str(tmp_path / "results"))
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        with pytest.raises(PipelineError, match=r"missing more than 20% of calls, e\.g\. subjects\.tsv row 9 \(100\.0%\)"):
            materialize_cohort("bad", instance=instance, stages={"cohort inputs"}, log=lambda m: None,
                               resources={"storage": storage, "compute": ComputeResource(device="cpu")})
        count, leaks = scan_instance(instance, ids)
    assert count > 20
    assert not leaks, "\n".join(f"{leak.where}: {leak.problem}" for leak in leaks[:20])


def _commented_block(text: str, key: str) -> dict:
    """The commented-out ``key:`` block of a values file, uncommented and parsed."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"# {key}:"))
    block = []
    for line in lines[start:]:
        if not line.startswith("# "):
            break
        block.append(line[2:])
    return yaml.safe_load("\n".join(block))[key]


def test_helm_example_puts_the_ui_behind_the_login_proxy():
    helm = Path(__file__).resolve().parents[1] / "deploy" / "helm"
    ingress = _commented_block((helm / "values.yaml").read_text(), "ingress")
    proxy = yaml.safe_load((helm / "oauth2-proxy-values.yaml").read_text())
    notes = ingress["annotations"]
    host = ingress["dagsterWebserver"]["host"]
    # nginx asks the proxy's in-cluster service; the proxy answers /oauth2 on the UI's own host (one cookie)
    assert notes["nginx.ingress.kubernetes.io/auth-url"].startswith(f"http://{proxy['fullnameOverride']}.")
    assert notes["nginx.ingress.kubernetes.io/auth-url"].endswith("/oauth2/auth")
    assert notes["nginx.ingress.kubernetes.io/auth-signin"].startswith("https://$host/oauth2/start")
    assert proxy["ingress"]["path"] == "/oauth2" and proxy["ingress"]["hosts"] == [host]
    assert ingress["dagsterWebserver"]["tls"]["enabled"] and proxy["extraArgs"]["allowed-group"]


# ---------------------------------------------------------------- the scanner finds what it must


def _entry(metadata: dict, message: str = "") -> str:
    """A materialization event as the event log stores it, with ``metadata``."""
    event = dg.DagsterEvent(DagsterEventType.ASSET_MATERIALIZATION.value, "job",
                            event_specific_data=StepMaterializationData(dg.AssetMaterialization("x", metadata=metadata)))
    return serialize_value(dg.EventLogEntry(error_info=None, level=20, user_message=message, run_id="r",
                                            timestamp=0.0, step_key="s", job_name="job", dagster_event=event))


@pytest.mark.parametrize(("metadata", "message", "problem"), [
    ({"n": 80}, "subject SIM00042 has 30% missing calls", "subject ID 'SIM00042'"),
    ({"missing_subjects": dg.MetadataValue.json(["SIM00007"])}, "", "subject ID 'SIM00007'"),
    ({"scores": dg.MetadataValue.json([0.5] * N_SUBJECTS)}, "", "sequence of 80 >= 80 subjects"),
    ({"g": dg.MetadataValue.json({"row": [0, 1, 2, 1] * (N_SUBJECTS // 4)})}, "", "genotype vector of 80"),
    ({"g": ",".join("0120" * (N_SUBJECTS // 4))}, "", "genotype vector as text"),
    ({"t": dg.MetadataValue.md("| a |\n|---|\n" + "| 1 |\n" * N_SUBJECTS)}, "", "table of 80 rows"),
])
def test_scanner_reports_a_fabricated_leak(metadata, message, problem):
    leaks = scan_record("fabricated", _entry(metadata, message), IDS)
    assert any(problem in leak.problem for leak in leaks), leaks


def test_scanner_passes_aggregates_and_paths():
    record = _entry({"n_subjects": N_SUBJECTS, "path": dg.MetadataValue.path("/data/results/x/SIM.parquet"),
                     "per_block": dg.MetadataValue.json([0.9, 0.8, 1.0]), "message": "80 subjects, 2 missing",
                     "subject": "SIM000010", "table": dg.MetadataValue.md("| a |\n|---|\n| 1 |\n| 2 |\n")})
    assert scan_record("fabricated", record, IDS) == []
    assert json.loads(record)  # the scanner reads the stored JSON


def test_distinctive_rejects_ids_a_token_search_would_confuse():
    assert distinctive(IDS)
    assert not distinctive(["1", "2", "3"]) and not distinctive(["NA12878", "HG"]) and not distinctive(["A1"])
