"""A cohort folder dropped into a live ``dagster dev``: sensor, block runs and automation, no failed run.

(And, in-process, the automation condition behind it: Phase 2 and the analyses wait for
every block partition of the cohort.)

The deployment starts on an empty instance watching an empty cohorts root. A small
cohort is written beside it and moved in (one rename, files backdated past the
sensor's settle time). The cohort sensor registers it and requests its inputs and
block runs; Phase 2 and the analyses follow by declarative automation, and must wait
until every block partition of the cohort is materialized: the run list for the
cohort ends with every asset materialized and holds no failed run.
"""

import os
import shutil

import dagster as dg
import pytest

from genoembed_tests.live_dagster import LiveDagster, wait_for
from genoembed_tests.test_sensor import backdate, env, write_small_cohort  # noqa: F401 (env: fixture)

COHORT = "dropin"
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
FAILED = {"FAILURE", "CANCELED"}


def cohort_runs(live: LiveDagster) -> list[dict]:
    """Every run of the (otherwise empty) instance, oldest first, with its tags as a dict."""
    data = live.graphql("""{ runsOrError { __typename ... on Runs { results {
        runId status assetSelection { path } tags { key value } } } } }""")
    runs = data["runsOrError"]["results"]
    for run in runs:
        run["tags"] = {t["key"]: t["value"] for t in run["tags"]}
    return runs[::-1]


def describe(runs: list[dict]) -> str:
    return "\n".join(f"{r['status']:<9} {r['tags'].get('genoembed/stage') or r['tags'].get('dagster/from_automation_condition_evaluation', '')}"
                     f" {[a['path'][-1] for a in r['assetSelection'] or []]}" for r in runs)


def everything_materialized(home, graph, blocks: list[str]) -> list[str]:
    """The assets (or block partitions) of the cohort not materialized yet."""
    from genoembed_assets.defs.partitions import cohort_block_partitions, cohort_partitions

    missing = []
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for key in graph.get_all_asset_keys():
            node = graph.get(key)
            if not node.is_materializable:
                continue
            done = instance.get_materialized_partitions(key)
            if node.partitions_def == cohort_partitions and COHORT not in done:
                missing.append(key.to_user_string())
            elif node.partitions_def == cohort_block_partitions:
                lacking = [b for b in blocks if f"{b}|{COHORT}" not in done]
                if lacking:
                    missing.append(f"{key.to_user_string()} ({len(lacking)} blocks)")
    return missing


def test_phase2_and_analyses_wait_for_every_block_partition(env):  # noqa: F811
    from genoembed_assets.defs.automation.conditions import AFTER_EVERY_BLOCK
    from genoembed_assets.defs.partitions import multi_key

    graph = env.defs.resolve_asset_graph()
    downstream = [k for k in graph.get_all_asset_keys() if graph.get(k).automation_condition is not None]
    assert {k.to_user_string() for k in downstream} >= {"subject_embeddings", "block_importance", "findings_summary"}
    assert all(graph.get(k).automation_condition == AFTER_EVERY_BLOCK for k in downstream)

    blocks = write_small_cohort(env.root / "alpha")
    env.execute(env.tick().run_requests[0])  # inputs
    first = dg.evaluate_automation_conditions(defs=env.defs, instance=env.instance)
    assert first.total_requested == 0  # inputs only: every block missing

    (request,) = env.tick().run_requests  # one range run over the cohort's blocks: run half of it
    half = blocks[: len(blocks) // 2]
    tags = {**request.tags, "dagster/asset_partition_range_start": str(multi_key("alpha", half[0])),
            "dagster/asset_partition_range_end": str(multi_key("alpha", half[-1]))}
    env.execute(dg.RunRequest(asset_selection=request.asset_selection, tags=tags))
    second = dg.evaluate_automation_conditions(defs=env.defs, instance=env.instance, cursor=first.cursor)
    assert second.total_requested == 0  # half the blocks: still waiting

    env.execute(request)  # every block
    third = dg.evaluate_automation_conditions(defs=env.defs, instance=env.instance, cursor=second.cursor)
    assert {k.to_user_string() for k in downstream} == {r.key.to_user_string() for r in third.results
                                                        if r.true_subset.size and r.key in downstream}
    assert all(third.get_requested_partitions(k) == {"alpha"} for k in downstream)


@pytest.mark.slow
def test_dropped_cohort_runs_to_the_end_without_a_failed_run(tmp_path):
    from genoembed_assets.definitions import defs

    home, watched, staging = tmp_path / "home", tmp_path / "cohorts", tmp_path / "staging"
    for folder in (home, watched, staging):
        folder.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {"GENOEMBED_COHORTS": str(watched), "GENOEMBED_RESULTS": str(tmp_path / "results"),
           "GENOEMBED_PHASE1_PRESET": "fast", "GENOEMBED_PHASE2_PRESET": "fast"}
    live = LiveDagster(home, env=env).launch()
    try:
        blocks = write_small_cohort(staging / COHORT, n_subjects=120)
        live.wait_ready()
        shutil.move(str(staging / COHORT), watched / COHORT)
        backdate(watched / COHORT)
        graph = defs.resolve_asset_graph()

        def finished():
            runs = cohort_runs(live)
            if any(r["status"] in FAILED for r in runs):
                return runs  # stop waiting: the assertion below names it
            if runs and all(r["status"] in FINISHED for r in runs) and not everything_materialized(home, graph, blocks):
                return runs
            return None

        try:
            runs = wait_for(f"cohort {COHORT!r} to be materialized end to end", finished, timeout=900, interval=5)
        except TimeoutError:
            raise AssertionError(f"runs so far:\n{describe(cohort_runs(live))}\nnot materialized: "
                                 f"{everything_materialized(home, graph, blocks)}\n{live.log_tail(40)}") from None
        failed = [r for r in runs if r["status"] in FAILED]
        assert not failed, f"failed run(s) for a normal drop-in:\n{describe(runs)}"
        assert everything_materialized(home, graph, blocks) == []
        stages = [r["tags"].get("genoembed/stage") for r in runs]
        assert stages[:1] == ["inputs"] and "blocks" in stages
        assert any(r["tags"].get("dagster/from_automation_condition_evaluation") or not r["tags"].get("genoembed/stage")
                   for r in runs), "Phase 2 and the analyses came from the automation sensor"
    finally:
        live.stop()
    assert os.path.isdir(tmp_path / "results" / COHORT / "analysis")
