"""The cohort sensor and the refresh schedule, evaluated in-process against a real instance.

Each tick's run requests are executed with ``dg.materialize`` (the tags they carry
included), which is what the daemon would launch; the next tick then sees the
materializations, as it would in a deployment.
"""

import json
import os
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from genoembed_assets.defs.automation import cohorts as c
from genoembed_assets.defs.automation.schedules import REFRESH_CRON, cohort_refresh_schedule, stale_downstream
from genoembed_assets.defs.automation.sensors import cohort_automation_sensor, cohort_sensor, evaluate_cohorts
from genoembed_assets.defs.partitions import BLOCKS, COHORTS, all_blocks_of_cohort, cohort_partitions
from genoembed_assets.defs.resources import ComputeResource, GenoembedStorage
from genoembed_assets.genotypes.layout import BlockArray, write_cohort

N_BLOCKS = 10
# Blocks given to the writer out of genomic order: the sensor must register them sorted.
BLOCK_ORDER = [3, 0, 7, 1, 9, 2, 8, 4, 6, 5]


def write_small_cohort(folder: Path, *, n_subjects: int = 60, seed: int = 0, blocks=None) -> list[str]:
    """A tiny valid cohort in the original layout; returns its block ids in genomic order."""
    rng = np.random.default_rng(seed)
    blocks = BLOCK_ORDER if blocks is None else blocks
    arrays = []
    for i in blocks:
        freq = rng.uniform(0.15, 0.5, size=12)
        g = rng.binomial(2, freq, size=(n_subjects, 12)).astype(np.int8)
        arrays.append(BlockArray(f"chr1_b{i:04d}", "1", 1_000_000 * i + 1, 1_000_000 * (i + 1), g))
    ids = [f"S{j:03d}" for j in range(n_subjects)]
    phen = pd.DataFrame({"subject_id": ids, "age": rng.integers(20, 70, n_subjects), "ige": rng.lognormal(4, 1, n_subjects)})
    write_cohort(folder, ids, arrays, phen)
    backdate(folder)
    return [f"chr1_b{i:04d}" for i in sorted(blocks)]


def backdate(folder: Path, seconds: float = 3600) -> None:
    """Age every file so the folder counts as settled (the sensor waits SETTLE_SECONDS)."""
    past = time.time() - seconds
    for path in [folder, *folder.rglob("*")]:
        os.utime(path, (past, past))


@pytest.fixture
def env(tmp_path):
    from genoembed_assets.definitions import defs

    storage = GenoembedStorage(cohorts_root=str(tmp_path / "cohorts"), results_root=str(tmp_path / "results"))
    (tmp_path / "cohorts").mkdir()
    (tmp_path / "home").mkdir()
    resources = {"storage": storage, "compute": ComputeResource(device="cpu")}
    # Dagster keeps the "current" definitions-state storage (used only by components) in a
    # context variable; a storage whose instance was garbage-collected can linger there and break
    # Definitions built inside a test ("undefined DagsterInstance weakref", order-dependent).
    # Nothing here uses definitions state, so pin none.
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance, set_defs_state_storage(None):
        yield Env(defs, instance, storage, resources, Path(storage.cohorts_root))


class Env:
    def __init__(self, defs, instance, storage, resources, root):
        self.defs, self.instance, self.storage, self.resources, self.root = defs, instance, storage, resources, root
        self.cursor = None

    def tick(self, *, settle_seconds=None) -> dg.SensorResult:
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor, definitions=self.defs,
                                          resources={"storage": self.storage})
        if settle_seconds is None:
            result = cohort_sensor(context)
        else:
            result = evaluate_cohorts(context, self.storage, settle_seconds=settle_seconds)
        self.cursor = result.cursor
        for request in result.dynamic_partitions_requests:  # what the daemon does first
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        return result

    def execute(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        assets = list(self.defs.assets or []) + list(self.defs.asset_checks or [])
        result = dg.materialize(assets, selection=request.asset_selection, partition_key=request.partition_key,
                                tags=request.tags, instance=self.instance, resources=self.resources)
        assert result.success
        return result


def test_sensors_and_schedule_are_in_the_definitions():
    from genoembed_assets.definitions import defs

    repo = defs.get_repository_def()
    assert repo.get_sensor_def("cohort_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    assert repo.get_sensor_def("cohort_automation_sensor") is not None
    schedule = repo.get_schedule_def("cohort_refresh_schedule")
    assert schedule.cron_schedule == REFRESH_CRON
    assert cohort_automation_sensor.name == "cohort_automation_sensor"


def test_new_cohort_registers_partitions_then_requests_inputs_then_blocks(env):
    blocks = write_small_cohort(env.root / "alpha")

    first = env.tick()
    adds = {r.partitions_def_name: list(r.partition_keys) for r in first.dynamic_partitions_requests}
    assert adds == {COHORTS: ["alpha"], BLOCKS: blocks}  # genomic order, not file order
    (inputs,) = first.run_requests
    assert inputs.partition_key == "alpha"
    assert {k.to_user_string() for k in inputs.asset_selection} == {"cohort_input", "phenotypes", "ancestry_pcs"}
    fp = inputs.tags[c.FINGERPRINT_TAG]
    assert inputs.tags[c.STAGE_TAG] == c.INPUTS and inputs.tags[c.COHORT_TAG] == "alpha"
    assert json.loads(first.cursor)["cohorts"] == {}  # not handed off until the blocks are requested

    # Blocks wait for the inputs. Until the inputs run exists the tick repeats the same request,
    # under the same run key, which the daemon drops as already submitted.
    assert [r.run_key for r in env.tick().run_requests] == [inputs.run_key]
    env.execute(inputs)

    second = env.tick()
    assert second.dynamic_partitions_requests == []
    stages = c.graph_stages(env.defs.resolve_asset_graph())
    expected_runs = -(-N_BLOCKS // stages.blocks_per_run)
    assert len(second.run_requests) == expected_runs
    keys = []
    for request in second.run_requests:
        assert request.tags[c.STAGE_TAG] == c.BLOCK_STAGE and request.tags[c.FINGERPRINT_TAG] == fp
        assert {k.to_user_string() for k in request.asset_selection} >= {"block_genotypes"}
        keys.append((request.tags["dagster/asset_partition_range_start"], request.tags["dagster/asset_partition_range_end"]))
        env.execute(request)
    assert keys[0][0] == f"{blocks[0]}|alpha" and keys[-1][1] == f"{blocks[-1]}|alpha"
    assert json.loads(second.cursor)["cohorts"] == {"alpha": fp}
    done = env.instance.get_materialized_partitions(dg.AssetKey("block_genotypes"))
    assert {f"{b}|alpha" for b in blocks} <= done

    # Inputs and blocks current: the sensor is done; what is left for the nightly schedule is
    # only the cohort-level assets below the blocks, never materialized yet.
    assert env.tick().run_requests == []
    schedule_context = dg.build_schedule_context(instance=env.instance, repository_def=env.defs.get_repository_def(),
                                                 resources={"storage": env.storage})
    refresh = cohort_refresh_schedule(schedule_context)
    if stages.downstream:
        (request,) = refresh
        assert request.tags[c.STAGE_TAG] == c.DOWNSTREAM and request.partition_key == "alpha"
        assert set(request.asset_selection) == set(stages.downstream)
    else:
        assert isinstance(refresh, dg.SkipReason)


def test_changed_folder_is_rerun_and_up_to_date_cohort_is_not(env):
    write_small_cohort(env.root / "alpha")
    env.execute(env.tick().run_requests[0])
    for request in env.tick().run_requests:
        env.execute(request)
    old_fp = json.loads(env.cursor)["cohorts"]["alpha"]

    # A second sensor with an empty cursor (e.g. after a reset) does not redo a current cohort.
    fresh_cursor, env.cursor = env.cursor, None
    assert env.tick().run_requests == []
    env.cursor = fresh_cursor

    # New content: the folder's fingerprint changes and its inputs are requested again.
    phen = env.root / "alpha" / "phenotypes.csv"
    phen.write_text(phen.read_text())
    os.utime(phen, (time.time() - 600, time.time() - 600))
    result = env.tick()
    (request,) = result.run_requests
    assert request.tags[c.STAGE_TAG] == c.INPUTS and request.tags[c.FINGERPRINT_TAG] != old_fp
    assert result.dynamic_partitions_requests == []  # nothing new to register

    # The schedule sees the same change but does not request it twice once a run exists.
    schedule_context = dg.build_schedule_context(instance=env.instance, repository_def=env.defs.get_repository_def(),
                                                 resources={"storage": env.storage})
    (scheduled,) = cohort_refresh_schedule(schedule_context)
    assert scheduled.tags[c.FINGERPRINT_TAG] == request.tags[c.FINGERPRINT_TAG]
    env.execute(request)
    assert env.tick().run_requests[0].tags[c.STAGE_TAG] == c.BLOCK_STAGE
    assert c.pending_or_done(c.stage_runs(env.instance, "alpha", c.INPUTS, request.tags[c.FINGERPRINT_TAG]))


@pytest.fixture
def sensor_log(capfd):
    """The sensor's log lines: Dagster's sensor logger writes to the console, not to caplog."""

    class Log:
        @property
        def text(self) -> str:
            out, err = capfd.readouterr()
            return out + err

    return Log()


def test_invalid_unsafe_and_unfinished_folders_do_not_stop_others(env, sensor_log):
    write_small_cohort(env.root / "good")
    broken = env.root / "broken"
    write_small_cohort(broken)
    (broken / "blocks" / "chr1_b0003.npy").unlink()  # listed in the manifest, missing on disk
    backdate(broken)
    unsafe = env.root / "bad name!"
    write_small_cohort(unsafe)
    (env.root / "incoming" / "blocks").mkdir(parents=True)  # no manifest yet
    fresh = env.root / "fresh"
    write_small_cohort(fresh)
    os.utime(fresh / "manifest.tsv")  # just written

    result = env.tick()
    assert [r.partition_key for r in result.run_requests] == ["good"]
    log = sensor_log.text
    assert "skipping cohort 'broken'" in log and "chr1_b0003" in log
    assert "skipping folder 'bad name!'" in log and "not a usable partition key" in log
    assert "'incoming' is still being written" in log and "'fresh' is still being written" in log
    assert set(env.instance.get_dynamic_partitions(COHORTS)) == {"good"}

    # An invalid folder is reported once per content, not every tick.
    sensor_log.text  # drop what was logged so far
    env.tick()
    assert "skipping cohort 'broken'" not in sensor_log.text

    # Once settled, the fresh folder is taken (settle time 0 here instead of waiting).
    # ('good' is asked again under its first run key until its run exists; the daemon drops it).
    good_key = result.run_requests[0].run_key
    again = env.tick(settle_seconds=0)
    assert {r.partition_key: r.run_key for r in again.run_requests}["good"] == good_key
    assert "fresh" in {r.partition_key for r in again.run_requests}


def test_blocks_follow_in_runs_of_at_most_the_backfill_policy(env):
    write_small_cohort(env.root / "alpha")
    env.execute(env.tick().run_requests[0])
    stages = c.graph_stages(env.defs.resolve_asset_graph())
    small = c.Stages(stages.inputs, stages.blocks, stages.downstream, blocks_per_run=4)
    fp = env.tick().run_requests[0].tags[c.FINGERPRINT_TAG]
    block_ids = env.instance.get_dynamic_partitions(BLOCKS)
    requests = c.block_requests("alpha", fp, block_ids, small, reason="test")
    assert len(requests) == 3  # 10 blocks, 4 per run
    spans = [(r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"]) for r in requests]
    assert spans[0] == (f"{block_ids[0]}|alpha", f"{block_ids[3]}|alpha")
    assert spans[-1] == (f"{block_ids[8]}|alpha", f"{block_ids[9]}|alpha")
    assert len({r.run_key for r in requests}) == 3


def test_downstream_cohort_assets_follow_by_automation_and_schedule_sees_stale(env):
    """A cohort-level asset below the blocks with AutomationCondition.eager() (as Phase 2 and analyses
    should carry) is requested once all block partitions of its cohort are materialized."""

    @dg.asset(partitions_def=cohort_partitions, group_name="analysis",
              deps=[dg.AssetDep("block_genotypes", partition_mapping=all_blocks_of_cohort)],
              automation_condition=dg.AutomationCondition.eager())
    def toy_analysis(context) -> None:
        context.log.info(f"analysing {context.partition_key}")

    defs = dg.Definitions.merge(env.defs, dg.Definitions(assets=[toy_analysis]))
    env.defs = defs
    write_small_cohort(env.root / "alpha")
    env.execute(env.tick().run_requests[0])
    block_requests = env.tick().run_requests
    for request in block_requests[:-1]:
        env.execute(request)

    toy = dg.AssetKey("toy_analysis")
    assert toy in c.graph_stages(defs.resolve_asset_graph()).downstream
    first = dg.evaluate_automation_conditions(defs=defs, instance=env.instance)
    if len(block_requests) > 1:
        assert first.get_requested_partitions(toy) == set()  # some blocks missing: the analysis waits
    env.execute(block_requests[-1])
    after = dg.evaluate_automation_conditions(defs=defs, instance=env.instance, cursor=first.cursor)
    assert after.get_requested_partitions(toy) == {"alpha"}

    # Never materialized -> stale for the nightly schedule; after it runs -> current.
    graph = defs.resolve_asset_graph()
    assert stale_downstream(env.instance, graph, "alpha", [toy]) == [toy]
    dg.materialize([toy_analysis], partition_key="alpha", instance=env.instance)
    assert stale_downstream(env.instance, graph, "alpha", [toy]) == []
    # A block rematerialized later makes it stale again, and the schedule asks for it.
    env.execute(block_requests[0])
    assert stale_downstream(env.instance, graph, "alpha", [toy]) == [toy]
    schedule_context = dg.build_schedule_context(instance=env.instance, repository_def=defs.get_repository_def(),
                                                 resources={"storage": env.storage})
    (request,) = cohort_refresh_schedule(schedule_context)
    assert request.partition_key == "alpha" and toy in request.asset_selection


@pytest.mark.parametrize("files", [["c.pgen", "c.pvar", "c.psam"], ["c.bed", "c.bim", "c.fam"], ["c.vcf.gz"], ["c.bcf"]])
def test_every_genotype_format_marks_a_folder_finished(tmp_path, files):
    """A settled folder holding any accepted genotype set is inspected, never left 'writing' (.pgen was)."""
    folder = tmp_path / "cohorts" / "x"
    folder.mkdir(parents=True)
    for name in files:
        (folder / name).write_bytes(b"\0")
    old = time.time() - 3600
    for path in [*folder.iterdir(), folder]:
        os.utime(path, (old, old))
    (found,) = c.inspect_folders(tmp_path / "cohorts", settle_seconds=1)
    assert found.status == "ready" and found.fingerprint, found
