"""The analyses stream Phase 1 block embeddings one block at a time (issue 12).

A genome-wide cohort (1,703 blocks x 500k subjects) cannot hold every block's
embedding at once, so ``block_features``, the joint association tests and the
geometry read a memory-mapped ``BlockEmbeddingStore`` block by block. These
tests check that the results equal the old all-in-memory dict version (built
here from the ``embedding.parquet`` files) and that neither the pure functions
nor the assets ever hold more than one block.
"""

from __future__ import annotations

import gc
import weakref

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from genoembed_assets import analysis as an
from genoembed_assets.analysis.features import pc1_scores, residualize, standardize
from genoembed_assets.analysis.synthetic import synthetic_cohort
from genoembed_assets.models._embedding_store import BlockEmbeddingStore

COHORT = "stream"


class CountingSource:
    """A block source that records how many of the blocks it handed out are still held.

    Every block is a fresh array; each time the consumer asks for the next block
    (and once after the last) the source counts the earlier ones still alive
    (weak references). A streaming consumer holds only the block of its current
    loop step (1); one that keeps every block, as the old dict did, reaches
    ``n_blocks``.
    """

    def __init__(self, store):
        self.store, self.subject_ids = store, store.subject_ids
        self.max_alive, self.handed_out = 0, 0
        self._refs: list = []

    @property
    def block_ids(self):
        return self.store.block_ids

    @property
    def n_blocks(self):
        return self.store.n_blocks

    def _count(self):
        gc.collect()
        self._refs = [r for r in self._refs if r() is not None]
        self.max_alive = max(self.max_alive, len(self._refs))

    def iter_blocks(self):
        for block, array in self.store.iter_blocks():
            self._count()
            matrix = np.array(array)
            self._refs.append(weakref.ref(matrix))
            self.handed_out += 1
            yield block, matrix
        self._count()


@pytest.fixture(scope="module")
def cohort():
    cohort = synthetic_cohort(n_subjects=240, n_background=12, random_state=3)
    # the Phase 1 files hold float32 (embedding.npy); the parquet holds the same numbers
    blocks = {b: f.assign(**{c: f[c].astype(np.float32).astype(float) for c in f.columns if c != "subject_id"})
              for b, f in cohort.block_embeddings.items()}
    return cohort, blocks


@pytest.fixture(scope="module")
def phase1(cohort, tmp_path_factory):
    """A results folder: ``phase1/<block>/embedding.{parquet,npy}``, manifest, PCs, Phase 2 and phenotypes."""
    from genoembed_assets import storage as atomic
    from genoembed_assets.defs.resources import GenoembedStorage

    syn, blocks = cohort
    storage = GenoembedStorage(cohorts_root=str(tmp_path_factory.mktemp("cohorts")), results_root=str(tmp_path_factory.mktemp("results")))
    table = syn.blocks.assign(chrom_order=syn.blocks["chrom"].astype(int)).sort_values(["chrom_order", "start"]).drop(columns="chrom_order")
    atomic.write_tsv(storage.input_dir(COHORT) / "manifest.tsv", table.assign(file=[f"{b}.npy" for b in table["block_id"]]))
    for block, frame in blocks.items():
        out = storage.phase1_dir(COHORT, block)
        atomic.write_parquet(out / "embedding.parquet", frame)
        atomic.write_npy(out / "embedding.npy", frame.drop(columns="subject_id").to_numpy(np.float32))
    # other tables in another subject order: the analyses align by subject_id
    shuffled = np.random.default_rng(0).permutation(len(syn.pcs))
    atomic.write_parquet(storage.cohort_dir(COHORT) / "pcs.parquet", syn.pcs.iloc[shuffled])
    atomic.write_parquet(storage.cohort_dir(COHORT) / "phenotypes.parquet", syn.phenotypes.iloc[shuffled[::-1]])
    atomic.write_parquet(storage.phase2_dir(COHORT) / "subject_embeddings.parquet", syn.embedding)
    return storage, table


def _dict_from_parquet(storage, table) -> dict:
    """The old ``read_block_embeddings``: every block's parquet in one dict."""
    return {b: pd.read_parquet(storage.phase1_dir(COHORT, b) / "embedding.parquet") for b in table["block_id"]}


def _store(storage, table) -> BlockEmbeddingStore:
    return BlockEmbeddingStore.from_phase1_dir(storage.phase1_dir(COHORT), table)


# --------------------------------------------------------------------------- same results


def test_block_features_and_drivers_equal_the_dict_version(cohort, phase1):
    syn, _ = cohort
    storage, table = phase1
    old = _dict_from_parquet(storage, table)
    streamed = an.block_pc1_features(_store(storage, table), covariates=syn.pcs)
    # the old algorithm, written out: per block, the frame in subject order, ancestry out, PC1, unit variance
    ids = old[table["block_id"].iloc[0]]["subject_id"].astype(str).to_numpy()
    cov = syn.pcs.set_index("subject_id").loc[ids, [f"PC{i}" for i in range(1, 11)]].to_numpy()
    assert list(streamed.columns) == ["subject_id", *table["block_id"]]
    assert list(streamed["subject_id"]) == list(ids)
    for block, frame in old.items():
        values = frame.set_index("subject_id").loc[ids].to_numpy(float)
        expected = standardize(pc1_scores(residualize(values, cov))[:, None])[:, 0]
        np.testing.assert_allclose(streamed[block], expected, rtol=1e-9, atol=1e-9, err_msg=block)
    from_dict = an.block_pc1_features(old, covariates=syn.pcs)
    pd.testing.assert_frame_equal(from_dict, streamed, rtol=1e-9, atol=1e-9)

    clusters = an.cluster_subjects(syn.embedding, syn.pcs, k_range=(2, 3, 4), n_seeds=3, n_null=2, random_state=0)
    drivers_old = an.block_drivers(clusters.table, from_dict, syn.pcs, syn.embedding)
    drivers_new = an.block_drivers(clusters.table, streamed, syn.pcs, syn.embedding)
    pd.testing.assert_frame_equal(drivers_old.table, drivers_new.table, rtol=1e-9, atol=1e-12)
    assert drivers_new.summary["leading_block"] == drivers_old.summary["leading_block"]
    assert drivers_new.summary["leading_block"] in syn.truth["strong_structure_blocks"]


def test_joint_association_and_geometry_equal_the_dict_version(cohort, phase1):
    syn, _ = cohort
    storage, table = phase1
    old = _dict_from_parquet(storage, table)
    kwargs = dict(models={"ige": "log", "fev1": "linear", "exacerbations": "count"})
    assoc_old = an.associate_phenotypes({"embedding": syn.embedding}, syn.phenotypes, syn.pcs, joint_sets={"block": old}, **kwargs)
    assoc_new = an.associate_phenotypes({"embedding": syn.embedding}, syn.phenotypes, syn.pcs,
                                        joint_sets={"block": _store(storage, table)}, **kwargs)
    pd.testing.assert_frame_equal(assoc_old.table, assoc_new.table, rtol=1e-8, atol=1e-12)
    joint = assoc_new.table[assoc_new.table["test"] != "wald"]
    assert len(joint) == 3 * len(table) and set(joint["test"]) == {"joint_f", "joint_lr"}
    # the OLS rows are exactly the partial F tests of each block's whole matrix
    ige = joint[joint["phenotype"] == "ige"].set_index("feature")
    pheno = syn.phenotypes.set_index("subject_id")
    y = np.log(pheno["ige"])
    ok = y.notna()
    cov = np.column_stack([syn.pcs.set_index("subject_id").loc[pheno.index[ok]].to_numpy(), pheno.loc[ok, ["age", "sex"]]])
    groups = [old[b].set_index("subject_id").loc[pheno.index[ok]].to_numpy(float) for b in ige.index]
    reference = an.joint_ols_tests(y[ok].to_numpy(), groups, cov)
    np.testing.assert_allclose(ige["p"], reference["p"], rtol=1e-8)
    assert ige["p"].idxmin() == syn.truth["locus_blocks"]["17q21"]

    geo_old = an.embedding_geometry(old, syn.embedding, syn.pcs, n_sample=100)
    geo_new = an.embedding_geometry(_store(storage, table), syn.embedding, syn.pcs, n_sample=100)
    pd.testing.assert_frame_equal(geo_old.tables["distances"], geo_new.tables["distances"], rtol=1e-9)
    assert geo_new.summary["distance_spearman"] == pytest.approx(geo_old.summary["distance_spearman"], rel=1e-12)


# --------------------------------------------------------------------------- one block at a time


def test_pure_analyses_hold_one_block_at_a_time(cohort, phase1):
    syn, _ = cohort
    storage, table = phase1
    n = len(table)
    for run in (
        lambda s: an.block_pc1_features(s, covariates=syn.pcs),
        lambda s: an.associate_phenotypes({}, syn.phenotypes, syn.pcs, joint_sets={"block": s}, models={"ige": "log", "exacerbations": "count"}),
        lambda s: an.embedding_geometry(s, syn.embedding, syn.pcs, n_sample=50),
    ):
        source = CountingSource(_store(storage, table))
        run(source)
        assert (source.handed_out, source.max_alive) == (n, 1)
    hoarder = CountingSource(_store(storage, table))
    kept = list(hoarder.iter_blocks())  # the old dict: the instrument does see it
    assert hoarder.max_alive == n == len(kept)


def test_assets_stream_the_store_and_note_missing_blocks(cohort, phase1, monkeypatch):
    from genoembed_assets.defs.analysis import _io
    from genoembed_assets.defs.analysis.assets import block_features, embedding_geometry, phenotype_associations

    syn, _ = cohort
    storage, table = phase1
    sources = []

    real_store = _io.block_embedding_store

    def counting_store(*args):
        store, missing = real_store(*args)
        sources.append(CountingSource(store))
        return sources[-1], missing

    real_read = _io.read_parquet

    def no_block_parquet(path, what):
        assert path.name != "embedding.parquet", f"an analysis read {path} into memory"
        return real_read(path, what)

    monkeypatch.setattr(_io, "read_parquet", no_block_parquet)
    dropped = table["block_id"].iloc[-1]
    npy = storage.phase1_dir(COHORT, dropped) / "embedding.npy"
    npy.rename(npy.with_suffix(".hidden"))
    try:
        # the real helper first: it leaves out the block without a file and lists it
        store, missing = _io.block_embedding_store(storage, COHORT, _io.cohort_blocks(storage, COHORT))
        assert missing == [dropped] and store.n_blocks == len(table) - 1
        monkeypatch.setattr(_io, "block_embedding_store", counting_store)
        with dg.instance_for_test() as instance:
            instance.add_dynamic_partitions("cohorts", [COHORT])
            result = dg.materialize(
                [block_features, phenotype_associations, embedding_geometry], partition_key=COHORT, instance=instance,
                resources={"storage": storage}, run_config={"ops": {"phenotype_associations": {"config": {
                    "models": {"ige": "log", "exacerbations": "count"}}}}},
            )
            assert result.success
            checks = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    finally:
        npy.with_suffix(".hidden").rename(npy)
    assert len(sources) == 3
    assert all((s.handed_out, s.max_alive) == (len(table) - 1, 1) for s in sources)
    summary = _io.read_result(storage, COHORT, "block_features").summary
    assert summary["missing_blocks"] == [dropped] and summary["n_blocks"] == len(table) - 1
    assert checks[("block_features", "every_block_has_a_feature")] is False  # the WARN check notes the gap
    assert all(passed for (_, name), passed in checks.items() if name != "every_block_has_a_feature")
    assoc = _io.read_result(storage, COHORT, "phenotype_associations").table
    assert dropped not in set(assoc["feature"]) and (assoc["test"] == "joint_f").sum() == len(table) - 1
