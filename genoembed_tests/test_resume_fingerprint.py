"""Phase 1's resume check takes block content hashes from the ingest record, not from re-reading the files."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import numpy as np
import pandas as pd
import pytest

from genoembed_assets.defs.models import block_embeddings
from genoembed_assets.defs.partitions import multi_key
from genoembed_assets.genotypes import ingest_record
from genoembed_assets.genotypes.errors import CohortInputError
from genoembed_assets.genotypes.ingest import ingest_cohort
from genoembed_assets.models import PRESETS

from .conftest import latest_materialization, metadata_value
from .fixtures_genotypes import make_cohort, write_in_format
from .test_phase1_graph import _materialize_blocks, small_graph  # noqa: F401  (small_graph is a fixture)

FAST = {"preset": "fast", "max_epochs": 2}
BLOCKS = [f"chr1_b{i:04d}" for i in range(4)]


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("fmt", ["original", "plink"])
def test_ingest_records_every_manifest_block(tmp_path, fmt):
    source = write_in_format(fmt, tmp_path / "src", make_cohort(30))
    out = tmp_path / "input"
    ingest_cohort(source, out, max_variants_per_block=20, log=lambda m: None)
    manifest = pd.read_csv(out / "manifest.tsv", sep="\t")
    record = pd.read_csv(out / ingest_record.RECORD, sep="\t", dtype={"sha256": str})
    assert len(manifest) >= 3  # chr1_b0001 is split in two when ingested from PLINK
    assert sorted(record["file"]) == sorted(manifest["file"])
    for row in record.itertuples():
        path = out / row.file
        assert row.sha256 == _sha256(path)
        assert (row.size, row.mtime_ns) == (path.stat().st_size, path.stat().st_mtime_ns)


def test_malformed_record_names_file_and_row(tmp_path):
    (tmp_path / ingest_record.RECORD).write_text("file\tsize\tmtime_ns\tsha256\nblocks/a.npy\t12\tyesterday\tabc\n")
    with pytest.raises(CohortInputError, match=r"ingest_record.tsv: row 2 \(file 'blocks/a.npy'\): expected integer"):
        ingest_record.read_record(tmp_path)


@pytest.fixture
def content_reads(monkeypatch, small_graph):  # noqa: F811
    """Paths of block files whose contents get hashed (every hash in the code goes through hashlib.file_digest)."""
    _, storage, _ = small_graph
    inp, seen, real = storage.input_dir("small"), [], hashlib.file_digest

    def counting(fileobj, digest):
        if str(getattr(fileobj, "name", "")).startswith(str(inp)):
            seen.append(os.path.relpath(fileobj.name, inp))
        return real(fileobj, digest)

    monkeypatch.setattr(hashlib, "file_digest", counting)
    return seen


def _trained_and_skipped(instance):
    mat = latest_materialization(instance, "block_embeddings", str(multi_key("small", BLOCKS[0])))
    return metadata_value(mat, "n_trained"), sorted(metadata_value(mat, "skipped_blocks"))


def _messages(instance, result) -> list[str]:
    return [e.user_message for e in instance.all_logs(result.run_id) if e.user_message]


def _model_mtimes(storage):
    return {p.parent.name: p.stat().st_mtime_ns for p in storage.phase1_dir("small").rglob("model.pt")}


def test_second_run_reads_no_block_contents_and_retrains_nothing(small_graph, content_reads):  # noqa: F811
    instance, storage, _ = small_graph
    assert (storage.input_dir("small") / ingest_record.RECORD).exists()
    assert _materialize_blocks(small_graph, FAST).success
    assert _trained_and_skipped(instance) == (4, [])
    before, content_reads[:] = _model_mtimes(storage), []
    second = _materialize_blocks(small_graph, FAST)
    assert second.success
    assert content_reads == []  # training loads blocks with np.load; the resume check hashed nothing
    assert _trained_and_skipped(instance) == (0, BLOCKS)
    assert _model_mtimes(storage) == before
    assert not [m for m in _messages(instance, second) if "hashed" in m]


def test_block_rewritten_after_ingest_is_retrained(small_graph, content_reads):  # noqa: F811
    instance, storage, _ = small_graph
    assert _materialize_blocks(small_graph, FAST).success
    before = _model_mtimes(storage)
    path = storage.input_dir("small") / "blocks" / f"{BLOCKS[1]}.npy"
    g = np.load(path)
    np.save(path, np.where(g == 2, 0, g).astype(np.int8))  # same shape and size, other genotypes
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a rewrite gets a new mtime
    content_reads[:] = []
    run = _materialize_blocks(small_graph, FAST)
    assert run.success
    assert content_reads == [f"blocks/{BLOCKS[1]}.npy"]  # only the changed file is read
    assert _trained_and_skipped(instance) == (1, [b for b in BLOCKS if b != BLOCKS[1]])
    after = _model_mtimes(storage)
    assert after[BLOCKS[1]] != before[BLOCKS[1]]
    assert {b: t for b, t in after.items() if b != BLOCKS[1]} == {b: t for b, t in before.items() if b != BLOCKS[1]}
    lines = [m for m in _messages(instance, run) if "hashed" in m]
    assert len(lines) == 1 and "hashed 1 block file(s)" in lines[0] and "1 changed since ingest" in lines[0]


def test_cohort_ingested_without_record_still_resumes(small_graph, content_reads):  # noqa: F811
    instance, storage, _ = small_graph
    assert _materialize_blocks(small_graph, FAST).success
    before = _model_mtimes(storage)
    (storage.input_dir("small") / ingest_record.RECORD).unlink()  # as an older ingest left it
    content_reads[:] = []
    run = _materialize_blocks(small_graph, FAST)
    assert run.success
    assert sorted(content_reads) == [f"blocks/{b}.npy" for b in BLOCKS]  # the fallback hashes each file once
    assert _trained_and_skipped(instance) == (0, BLOCKS)
    assert _model_mtimes(storage) == before
    lines = [m for m in _messages(instance, run) if "hashed" in m]
    assert len(lines) == 1 and "hashed 4 block file(s)" in lines[0] and "4 no ingest record" in lines[0]


def test_marker_from_before_the_record_is_recognised_and_upgraded(small_graph):  # noqa: F811
    instance, storage, _ = small_graph
    assert _materialize_blocks(small_graph, FAST).success
    config = block_embeddings.BlockEmbeddingConfig(**FAST).to_model_config()
    inp = storage.input_dir("small")
    for block in BLOCKS:  # the marker an older version wrote: sha256 over the file's bytes then the config
        legacy = hashlib.sha256((inp / "blocks" / f"{block}.npy").read_bytes()
                                + json.dumps(dataclasses.asdict(config), sort_keys=True).encode())
        (storage.phase1_dir("small", block) / "fingerprint.json").write_text(json.dumps({"fingerprint": legacy.hexdigest()}))
    before = _model_mtimes(storage)
    assert _materialize_blocks(small_graph, FAST).success
    assert _trained_and_skipped(instance) == (0, BLOCKS)
    assert _model_mtimes(storage) == before
    marker = json.loads((storage.phase1_dir("small", BLOCKS[0]) / "fingerprint.json").read_text())
    sha = _sha256(inp / "blocks" / f"{BLOCKS[0]}.npy")
    assert marker == {"fingerprint": block_embeddings._fingerprint(sha, config), "scheme": "content-sha256+config"}
    assert config != PRESETS["fast"]  # max_epochs override is part of the key
