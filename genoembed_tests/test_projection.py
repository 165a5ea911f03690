"""Projection of new samples onto a trained reference cohort (issue 13).

One simulated cohort (800 subjects, 14 blocks, a planted 3-level stratum) is
split by subjects: ``ref`` (400) is trained once for the module (fast
presets), ``new`` (300) is projected with ``genoembed project`` and ``small``
(100) through its ``cohort.json`` naming the reference. What a user would
check: the projected subjects get their planted stratum back through the
reference's clusters, the reference projected onto its own models gives its
trained embeddings exactly, swapped and strand-flipped variants are recoded
and counted, and every output names the reference version it used.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from genoembed_assets import storage as atomic
from genoembed_assets.defs.models.projection import projection_checks
from genoembed_assets.defs.resources import ComputeResource, GenoembedStorage
from genoembed_assets.genotypes.cohort_split import split_cohort
from genoembed_assets.genotypes.layout import read_subjects
from genoembed_assets.genotypes.variant_match import gather_block, match_variants
from genoembed_assets.models._reference_snapshot import freeze_reference
from genoembed_assets.models.projection import project_blocks, project_subjects, save_block_projection
from genoembed_assets.runner import fast_run_config, materialize_cohort

from .conftest import latest_materialization, metadata_value
from .test_sensor import env as sensor_env  # noqa: F401  (the sensor tests' fixture: a fresh instance and cohorts root)

GENOEMBED = Path(sys.executable).with_name("genoembed")
REF, NEW, SMALL = "ref", "new", "small"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The split cohort, the reference trained, and the graph's storage and instance."""
    from genoembed_assets.genotypes.simulate import simulate_cohort

    base = tmp_path_factory.mktemp("projection")
    full = simulate_cohort(base / "full", n_subjects=800, n_background_blocks=6, seed=11)
    order = np.random.default_rng(0).permutation(800)
    cohorts = base / "cohorts"
    split_cohort(full.out_dir, {cohorts / REF: np.sort(order[:400]), cohorts / NEW: np.sort(order[400:700]),
                                cohorts / SMALL: np.sort(order[700:])})
    settings = json.loads((cohorts / SMALL / "cohort.json").read_text())
    (cohorts / SMALL / "cohort.json").write_text(json.dumps({**settings, "reference": REF}))
    storage = GenoembedStorage(cohorts_root=str(cohorts), results_root=str(base / "results"))
    home = base / "home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        materialize_cohort(REF, instance=instance, resources={"storage": storage, "compute": ComputeResource(device="cpu")},
                           run_config=fast_run_config(), log=lambda _m: None, console_level="WARNING")
        yield {"base": base, "storage": storage, "instance": instance, "cohorts": cohorts}


def strata(world, cohort: str, subject_ids) -> np.ndarray:
    truth = pd.read_csv(world["cohorts"] / cohort / "truth_subjects.tsv", sep="\t", dtype={"subject_id": str})
    return truth.set_index("subject_id").loc[list(subject_ids), "stratum"].to_numpy()


def cli(world, *args: str) -> subprocess.CompletedProcess:
    storage = world["storage"]
    env = {**os.environ, "GENOEMBED_COHORTS": storage.cohorts_root, "GENOEMBED_RESULTS": storage.results_root,
           "DAGSTER_HOME": str(world["base"] / "cli_home"), "DAGSTER_DISABLE_TELEMETRY": "yes"}
    return subprocess.run([str(GENOEMBED), *args], env=env, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)


# ----------------------------------------------------------------------------- variant matching


def test_matching_rules_on_a_table():
    reference = pd.DataFrame({
        "block_id": "b", "chrom": "chr1", "pos": [10, 20, 30, 40, 50, 60, 70, 80, 90],
        "ref": ["A", "A", "A", "A", "A", "A", "C", "AT", "G"],
        "alt": ["G", "G", "G", "G", "T", "T", "G", "A", "C"],
    })
    target = pd.DataFrame({  # chrom without 'chr', as PLINK writes it; order shuffled
        "block_id": "x", "chrom": "1", "pos": [20, 10, 30, 40, 50, 60, 70, 80, 90],
        "ref": ["G", "A", "T", "C", "A", "T", "G", "A", "G"],
        "alt": ["A", "G", "C", "T", "T", "A", "C", "AT", "A"],
    })
    match = match_variants(reference, target.drop(index=8).reset_index(drop=True))
    assert list(match.status) == ["exact", "swapped", "strand_flipped", "strand_flipped_swapped", "exact",
                                  "ambiguous_dropped", "ambiguous_dropped", "swapped", "absent"]
    counts = match.counts("b")
    assert counts["n_matched"] == 6 and counts["n_ambiguous_kept"] == 1 and counts["ambiguous_dropped"] == 2
    assert counts["matched_fraction"] == pytest.approx(6 / 9)
    genotypes = np.array([[0, 2, 1, 0, 2, 1, 0, 1], [-1, 0, 2, 2, 1, 0, 2, -1]], dtype=np.int8)
    columns = pd.DataFrame({"block_id": "x", "column": np.arange(8)})
    got = gather_block(match, "b", columns, lambda _b: genotypes, 2)
    # column order follows the reference; swaps recoded 2-g; missing stays -1; dropped and absent are -1
    np.testing.assert_array_equal(got, [[2, 2, 1, 2, 2, -1, -1, 1, -1], [0, -1, 2, 0, 1, -1, -1, -1, -1]])


def test_allele_mismatch_is_not_matched():
    reference = pd.DataFrame({"block_id": "b", "chrom": "2", "pos": [5], "ref": ["A"], "alt": ["G"]})
    target = pd.DataFrame({"block_id": "b", "chrom": "2", "pos": [5], "ref": ["A"], "alt": ["C"]})
    assert list(match_variants(reference, target).status) == ["allele_mismatch"]


def test_npy_cohorts_without_positions_match_by_order_only_when_counts_agree():
    def table(block, n):
        return pd.DataFrame({"block_id": block, "chrom": "1", "pos": pd.array([pd.NA] * n, dtype="Int64"), "ref": "", "alt": ""})

    reference = pd.concat([table("b1", 3), table("b2", 2)], ignore_index=True)
    match = match_variants(reference, pd.concat([table("b2", 4), table("b1", 3)], ignore_index=True))
    assert list(match.status) == ["by_order"] * 3 + ["absent"] * 2
    assert list(match.source[:3]) == [4, 5, 6]


def test_cohort_with_swapped_and_flipped_variants_projects_the_same(world, tmp_path):
    """Rewrite the reference's own input: swaps (REF/ALT exchanged, genotypes 2-g) and strand flips change nothing."""
    storage = world["storage"]
    snapshot = freeze_reference(storage.cohort_dir(REF), REF, tmp_path / "snapshots")
    edited = tmp_path / "edited"
    shutil.copytree(storage.input_dir(REF), edited)
    variants = pd.read_parquet(edited / "variants.parquet")
    block = variants["block_id"].iloc[0]
    rows = np.flatnonzero(variants["block_id"] == block)
    ambiguous = (variants["ref"] + variants["alt"]).isin(["AT", "TA", "CG", "GC"]).to_numpy()
    plain, amb = rows[~ambiguous[rows]], rows[ambiguous[rows]]
    swap, flip, flip_swap, amb_swap = plain[:8], plain[8:14], plain[14:18], amb[:3]
    complement = str.maketrans("ACGT", "TGCA")
    genotypes = np.load(edited / "blocks" / f"{block}.npy")
    for i in np.concatenate([swap, flip_swap, amb_swap]):
        variants.loc[i, ["ref", "alt"]] = variants.loc[i, ["alt", "ref"]].to_numpy()
        col = i - rows[0]
        genotypes[:, col] = np.where(genotypes[:, col] >= 0, 2 - genotypes[:, col], -1)
    for i in np.concatenate([flip, flip_swap]):
        variants.loc[i, "ref"] = variants.loc[i, "ref"].translate(complement)
        variants.loc[i, "alt"] = variants.loc[i, "alt"].translate(complement)
    np.save(edited / "blocks" / f"{block}.npy", genotypes)
    variants.to_parquet(edited / "variants.parquet", index=False)

    (original,) = project_blocks(snapshot, storage.input_dir(REF), [block])
    (recoded,) = project_blocks(snapshot, edited, [block])
    c = recoded.counts
    assert (c["swapped"], c["strand_flipped"], c["strand_flipped_swapped"], c["ambiguous_dropped"]) == (8, 6, 4, 3)
    assert c["n_matched"] == c["n_reference"] - 3 == len(rows) - 3
    assert original.counts["n_matched"] == len(rows)
    # without the 3 dropped ambiguous SNPs, the recoded cohort encodes as the original with those 3 missing
    masked = tmp_path / "masked"
    shutil.copytree(storage.input_dir(REF), masked)
    g = np.load(masked / "blocks" / f"{block}.npy")
    g[:, amb_swap - rows[0]] = -1
    np.save(masked / "blocks" / f"{block}.npy", g)
    (expected,) = project_blocks(snapshot, masked, [block])
    np.testing.assert_array_equal(recoded.embedding, expected.embedding)
    assert not np.array_equal(recoded.embedding, original.embedding)


def test_checks_fail_a_block_without_matches_and_warn_below_threshold():
    rows = [{"block_id": "b1", "n_matched": 0, "matched_fraction": 0.0, "reference": "A", "variants_file": "in/variants.parquet"},
            {"block_id": "b2", "n_matched": 3, "matched_fraction": 0.3},
            {"block_id": "b3", "n_matched": 9, "matched_fraction": 0.9}]
    matched, fraction = projection_checks(rows)
    assert not matched.passed and matched.metadata["message"].value.startswith("in/variants.parquet: no variant matches the reference 'A' in block(s) b1;")
    assert not fraction.passed and fraction.severity == dg.AssetCheckSeverity.WARN
    assert "b2 (30%)" in fraction.metadata["message"].value and "b3" not in fraction.metadata["message"].value


# ----------------------------------------------------------------------------- frozen models


def test_reference_projected_onto_itself_reproduces_its_embeddings(world, tmp_path):
    storage = world["storage"]
    snapshot = freeze_reference(storage.cohort_dir(REF), REF, tmp_path / "snapshots")
    ids = read_subjects(storage.input_dir(REF))
    out = tmp_path / "phase1"
    for projected in project_blocks(snapshot, storage.input_dir(REF)):
        trained = np.load(storage.phase1_dir(REF, projected.block_id) / "embedding.npy")
        np.testing.assert_array_equal(projected.embedding, trained)
        assert projected.counts["matched_fraction"] == 1.0
        save_block_projection(projected, out / projected.block_id, ids, snapshot)
    subjects = project_subjects(snapshot, out, ids)
    trained = pd.read_parquet(storage.phase2_dir(REF) / "subject_embeddings.parquet")
    pd.testing.assert_frame_equal(subjects, trained)


def test_retraining_the_reference_leaves_a_snapshot_unchanged(world, tmp_path):
    storage = world["storage"]
    first = freeze_reference(storage.cohort_dir(REF), REF, tmp_path / "snapshots")
    assert freeze_reference(storage.cohort_dir(REF), REF, tmp_path / "snapshots").version == first.version
    block = first.manifest["block_id"].iloc[0]
    live = storage.phase1_dir(REF, block) / "model.pt"
    frozen = first.phase1_dir(block) / "model.pt"
    before, saved = frozen.read_bytes(), live.read_bytes()
    state = torch.load(live, weights_only=True)
    buffer = io.BytesIO()
    torch.save({k: v + 1 for k, v in state.items()}, buffer)
    try:
        with atomic.atomic_path(live) as tmp:  # as retraining writes it: a new file renamed into place
            tmp.write_bytes(buffer.getvalue())
        assert frozen.read_bytes() == before
        second = freeze_reference(storage.cohort_dir(REF), REF, tmp_path / "snapshots")
        assert second.version != first.version and second.folder != first.folder
    finally:
        with atomic.atomic_path(live) as tmp:
            tmp.write_bytes(saved)


# ----------------------------------------------------------------------------- through the command and the graph


@pytest.mark.skipif(not GENOEMBED.exists(), reason=f"{GENOEMBED} not installed (pip install -e .)")
def test_project_command_recovers_strata_through_reference_clusters(world):
    storage = world["storage"]
    done = cli(world, "project", "--reference", REF, NEW)
    assert done.returncode == 0, done.stderr
    record = json.loads((storage.cohort_dir(NEW) / "projection.json").read_text())
    assert record["reference"] == REF and f"Projected onto {REF} version {record['version']}" in done.stdout
    clusters = pd.read_parquet(storage.analysis_dir(NEW) / "subject_clusters.parquet")
    assert len(clusters) == 300 and set(clusters["cluster"]) <= set(
        pd.read_parquet(storage.analysis_dir(REF) / "subject_clusters.parquet")["cluster"])
    ari = adjusted_rand_score(strata(world, NEW, clusters["subject_id"]), clusters["cluster"])
    assert ari >= 0.8, ari
    assert clusters["novel"].mean() < 0.1
    # every block says which frozen model it used; the reference's own models never trained here
    for path in (storage.phase1_dir(NEW)).glob("*/projection.json"):
        block = json.loads(path.read_text())
        assert block["reference_version"] == record["version"] and block["matched_fraction"] == 1.0
        assert Path(record["snapshot"], "phase1", block["block_id"], "model.pt").exists()
        assert not (path.parent / "model.pt").exists()


@pytest.mark.skipif(not GENOEMBED.exists(), reason=f"{GENOEMBED} not installed (pip install -e .)")
def test_project_command_names_a_missing_reference(world):
    done = cli(world, "project", "--reference", "absent", NEW)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no trained reference cohort 'absent'" in lines[0] and "genoembed run absent" in lines[0]


def test_cohort_json_reference_makes_the_runner_project(world):
    storage, instance = world["storage"], world["instance"]
    materialize_cohort(SMALL, instance=instance, resources={"storage": storage, "compute": ComputeResource(device="cpu")},
                       run_config=fast_run_config(), log=lambda _m: None, console_level="WARNING")
    version = json.loads((storage.cohort_dir(SMALL) / "projection.json").read_text())["version"]
    # lineage: each asset's materialization names the reference and its version
    blocks = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey("block_embeddings")), limit=100).records
    mine = [r.asset_materialization for r in blocks if SMALL in str(r.asset_materialization.partition)]
    assert len(mine) == 14
    for materialization in [mine[0], latest_materialization(instance, "subject_embeddings", SMALL),
                            latest_materialization(instance, "subject_clusters", SMALL)]:
        assert metadata_value(materialization, "reference") == REF
        assert metadata_value(materialization, "reference_version") == version
    embedding = pd.read_parquet(storage.phase2_dir(SMALL) / "subject_embeddings.parquet")
    reference = pd.read_parquet(storage.phase2_dir(REF) / "subject_embeddings.parquet")
    assert list(embedding.columns) == list(reference.columns) and len(embedding) == 100
    clusters = latest_materialization(instance, "subject_clusters", SMALL)
    assert metadata_value(clusters, "k") == json.loads((storage.analysis_dir(REF) / "subject_clusters.json").read_text())["k"]


def test_sensor_holds_a_projected_cohort_until_its_reference_is_done(sensor_env):
    from genoembed_assets.defs.automation import cohorts as c
    from genoembed_assets.defs.models.projection import REFERENCE_READY

    from .test_sensor import backdate, write_small_cohort

    env = sensor_env
    write_small_cohort(env.root / "alpha")
    write_small_cohort(env.root / "beta", seed=1)
    (env.root / "beta" / "cohort.json").write_text(json.dumps({"reference": "alpha"}))
    backdate(env.root / "beta")
    for request in env.tick().run_requests:  # both cohorts' inputs
        env.execute(request)
    second = env.tick()
    assert {r.tags[c.COHORT_TAG] for r in second.run_requests} == {"alpha"}
    for rel in REFERENCE_READY:  # the reference's Phase 2 and clusters done (their files are what is checked)
        path = env.storage.cohort_dir("alpha") / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    third = env.tick()
    assert third.run_requests and {(r.tags[c.COHORT_TAG], r.tags[c.STAGE_TAG]) for r in third.run_requests} == {("beta", c.BLOCK_STAGE)}


# ----------------------------------------------------------------------------- novelty and real panels


def test_a_subject_unlike_the_reference_is_flagged_novel():
    from genoembed_assets.analysis.reference_clusters import assign_to_reference

    rng = np.random.default_rng(0)
    centres = np.array([[4.0, 0, 0], [-4.0, 0, 0], [0, 4.0, 0]])
    labels = rng.integers(0, 3, 300)
    ref = pd.DataFrame(centres[labels] + rng.normal(size=(300, 3)), columns=["e0", "e1", "e2"])
    ref.insert(0, "subject_id", [f"r{i}" for i in range(300)])
    new_labels = rng.integers(0, 3, 50)
    new = pd.DataFrame(np.vstack([centres[new_labels] + rng.normal(size=(50, 3)), [[0, 0, 30.0]]]), columns=["e0", "e1", "e2"])
    new.insert(0, "subject_id", [f"n{i}" for i in range(51)])
    table, summary = assign_to_reference(new, ref, pd.DataFrame({"subject_id": ref["subject_id"], "cluster": labels}))
    assert table["novel"].iloc[-1] and table["novel"].iloc[:-1].mean() < 0.1
    assert (table["cluster"].iloc[:-1].to_numpy() == new_labels).mean() > 0.95
    assert summary["k"] == 3 and sum(summary["cluster_sizes"]) == 51


KG = Path(__file__).resolve().parents[1] / "data" / "1kg_chr20"


@pytest.mark.skipif(not (KG / "unphased.vcf.gz").exists(), reason=f"1000 Genomes panels not found in {KG}")
def test_1kg_panels_match_variant_by_variant(tmp_path):
    """Real panels: every reference variant is matched exactly, or absent because the new cohort's QC removed it."""
    from genoembed_assets.genotypes.ingest import ingest_cohort

    inputs = {}
    for name in ("reference", "unphased"):
        (tmp_path / name).mkdir()
        shutil.copy(KG / f"{name}.vcf.gz", tmp_path / name)
        inputs[name] = ingest_cohort(tmp_path / name, tmp_path / f"{name}_in", log=lambda _m: None).out_dir
    ref = pd.read_parquet(inputs["reference"] / "variants.parquet")
    new = pd.read_parquet(inputs["unphased"] / "variants.parquet")
    match = match_variants(ref, new)
    in_new = ref["pos"].isin(set(new["pos"])).to_numpy()  # same sites and alleles in both panels
    assert set(match.status[in_new]) == {"exact"} and set(match.status[~in_new]) == {"absent"}
    table = match.block_table()
    assert len(table) == ref["block_id"].nunique() and table["matched_fraction"].min() >= 0.8
    assert table["n_matched"].sum() == int(in_new.sum())


def test_a_block_without_matched_variants_stops_the_cohort_as_an_input_error(world, tmp_path):
    from genoembed_assets.runner import PipelineError

    storage = world["storage"]
    shifted = world["cohorts"] / "shifted"
    shutil.copytree(world["cohorts"] / SMALL, shifted)
    variants = pd.read_parquet(shifted / "variants.parquet")
    block = variants["block_id"].iloc[-1]
    variants.loc[variants["block_id"] == block, "pos"] += 50_000_000  # as if another build
    variants.to_parquet(shifted / "variants.parquet", index=False)
    with pytest.raises(PipelineError) as caught:
        materialize_cohort("shifted", instance=world["instance"],
                           resources={"storage": storage, "compute": ComputeResource(device="cpu")},
                           run_config=fast_run_config(), log=lambda _m: None, console_level="WARNING")
    error = caught.value
    assert error.input_error
    assert f"block_embeddings:variants_matched: {storage.input_dir('shifted') / 'variants.parquet'}: no variant matches " \
        f"the reference 'ref' in block(s) {block};" in error.user_message
    assert not (storage.phase2_dir("shifted") / "subject_embeddings.parquet").exists()
