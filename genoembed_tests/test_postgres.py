"""The deployment's instance settings, and a real PostgreSQL-backed instance.

A PostgreSQL server (Debian package, installed by .ci/system-deps.sh) is started on a
free loopback port in a temporary folder, as the ``postgres`` user when the tests run
as root, and stopped afterwards. The instance uses the ``storage`` section of
``deploy/dagster.yaml`` as written (its env vars pointing at that server).
"""

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import dagster as dg
import pytest
import yaml

from genoembed_tests.live_dagster import PROJECT_ROOT, free_port, wait_for

DEPLOY = PROJECT_ROOT / "deploy"
PG_USER, PG_PASSWORD, PG_DB = "genoembed", "s3cret-test", "dagster_test"

pytestmark = pytest.mark.postgres


def deploy_config() -> dict:
    return yaml.safe_load((DEPLOY / "dagster.yaml").read_text())


# ------------------------------------------------------------------ deploy/ structure


def test_deploy_instance_uses_postgres_k8s_and_caps_gpu_runs():
    config = deploy_config()
    db = config["storage"]["postgres"]["postgres_db"]
    assert {k: v for k, v in db.items()} == {
        "hostname": {"env": "DAGSTER_PG_HOST"}, "port": {"env": "DAGSTER_PG_PORT"}, "username": {"env": "DAGSTER_PG_USER"},
        "password": {"env": "DAGSTER_PG_PASSWORD"}, "db_name": {"env": "DAGSTER_PG_DB"},
        "scheme": "postgresql+psycopg2",
    }
    launcher = config["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    assert {"GENOEMBED_RESULTS", "GENOEMBED_COHORTS"} <= set(launcher["config"]["env_vars"])
    assert "nvidia.com/gpu" not in yaml.safe_dump(launcher)  # GPUs only for runs that ask
    pools = config["concurrency"]["pools"]
    assert pools["granularity"] == "run" and pools["default_limit"] >= 1

    import dagster_k8s

    assert getattr(dagster_k8s, launcher["class"])  # the class the config names exists


def test_gpu_requests_reach_training_runs_through_the_k8s_run_tag(monkeypatch):
    import json

    from genoembed_assets.defs.automation import cohorts as c

    stages = c.Stages(inputs=[], blocks=[dg.AssetKey("block_genotypes")], downstream=[], blocks_per_run=4)
    monkeypatch.setenv(c.GPU_RUNS_ENV, "1")
    (request,) = c.block_requests("demo", "f" * 64, ["chr1_b0000", "chr1_b0001"], stages, reason="test")
    k8s = json.loads(request.tags["dagster-k8s/config"])
    assert k8s["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    monkeypatch.setenv(c.GPU_RUNS_ENV, "0")
    (request,) = c.block_requests("demo", "f" * 64, ["chr1_b0000"], stages, reason="test")
    assert "dagster-k8s/config" not in request.tags
    # the documented value is the one the sensor sets
    assert json.dumps(c.GPU_K8S_CONFIG["container_config"]["resources"]["limits"]) in (DEPLOY / "README.md").read_text()


def test_helm_values_match_the_instance_settings():
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert "genoembed_assets.definitions" in deployment["dagsterApiGrpcArgs"]
    assert values["concurrency"]["pools"]["granularity"] == deploy_config()["concurrency"]["pools"]["granularity"]


# ------------------------------------------------------------------ a real server


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    assert found, "PostgreSQL is not installed: run `bash .ci/system-deps.sh` (make test does)"
    return Path(found[-1]).parent


def _as_postgres(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        argv = ["runuser", "-u", "postgres", "--", *argv]
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120, **kwargs)


@pytest.fixture(scope="module")
def postgres_server():
    bin_dir = _pg_bin()
    base = Path(tempfile.mkdtemp(prefix="genoembed_pg_"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    (base / "pw").write_text(PG_PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
        shutil.chown(base / "pw", "postgres")
    port = free_port()
    _as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-U", PG_USER, f"--pwfile={base / 'pw'}",
                  "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"])
    options = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
    _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(base / "server.log"), "-w", "-t", "60", "start"])
    try:
        env = {**os.environ, "PGPASSWORD": PG_PASSWORD}
        wait_for("postgres to accept connections", lambda: subprocess.run(
            [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True).returncode == 0, timeout=60)
        subprocess.run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", PG_USER, PG_DB],
                       check=True, env=env, capture_output=True, timeout=60)
        yield {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(port), "DAGSTER_PG_USER": PG_USER,
               "DAGSTER_PG_PASSWORD": PG_PASSWORD, "DAGSTER_PG_DB": PG_DB}
    finally:
        _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_instance(postgres_server, tmp_path, monkeypatch):
    """An instance from deploy/dagster.yaml minus the Kubernetes run launcher (no cluster here)."""
    for key, value in postgres_server.items():
        monkeypatch.setenv(key, value)
    config = deploy_config()
    config.pop("run_launcher")
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def test_cohort_inputs_materialize_against_postgres_and_read_back(postgres_instance, postgres_server, tmp_path):
    from genoembed_assets.defs.resources import ComputeResource, GenoembedStorage
    from genoembed_assets.runner import materialize_cohort
    from genoembed_tests.test_sensor import write_small_cohort

    instance = postgres_instance
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"

    write_small_cohort(tmp_path / "cohorts" / "pgcohort", n_subjects=50)
    storage = GenoembedStorage(cohorts_root=str(tmp_path / "cohorts"), results_root=str(tmp_path / "results"))
    stages = materialize_cohort("pgcohort", instance=instance, stages={"cohort inputs"},
                                resources={"storage": storage, "compute": ComputeResource(device="cpu")}, log=lambda m: None)
    assert [s.name for s in stages] == ["cohort inputs"]

    # Read back through a second instance object: what the webserver and daemon would see.
    with dg.DagsterInstance.from_config(str(instance.root_directory)) as reader:
        assert reader.get_dynamic_partitions("cohorts") == ["pgcohort"]
        assert len(reader.get_dynamic_partitions("blocks")) == 10
        for asset in ("cohort_input", "phenotypes", "ancestry_pcs"):
            records = reader.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=["pgcohort"]), limit=5).records
            assert len(records) == 1, asset
        meta = records_meta(reader, "cohort_input")
        assert meta["n_subjects"] == 50 and meta["n_blocks"] == 10

        (run,) = reader.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS
        checks = [e.dagster_event.event_specific_data for e in
                  reader.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)]
        names = {(c.asset_key.to_user_string(), c.check_name): c.passed for c in checks}
        assert names[("cohort_input", "no_duplicate_ids")] is True
        assert names[("phenotypes", "phenotypes_usable")] is True
        # every blocking (ERROR) check passes; WARN checks (e.g. pcs_genome_wide on 50 random subjects) may warn
        errors = {(c.asset_key.to_user_string(), c.check_name): c.passed for c in checks
                  if c.severity == dg.AssetCheckSeverity.ERROR}
        assert all(errors.values()) and len(errors) >= 7, names
        assert ("ancestry_pcs", "pcs_genome_wide") in names

    # The rows are in PostgreSQL itself.
    import psycopg2

    with psycopg2.connect(host="127.0.0.1", port=int(postgres_server["DAGSTER_PG_PORT"]), user=PG_USER,
                          password=PG_PASSWORD, dbname=PG_DB) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from event_logs where dagster_event_type = 'ASSET_MATERIALIZATION'")
        assert cur.fetchone()[0] == 3


def records_meta(instance, asset: str) -> dict:
    record = instance.fetch_materializations(dg.AssetKey(asset), limit=1).records[0]
    return {k: getattr(v, "value", v) for k, v in record.asset_materialization.metadata.items()}
