"""Readers, ingestion, QC and PCs on tiny cohorts written in every format."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genoembed_assets.genotypes.ingest import detect_format, ingest_cohort, load_or_compute_pcs, scan_cohort
from genoembed_assets.genotypes.layout import load_block, read_manifest, read_phenotypes, read_subjects
from genoembed_assets.genotypes.pcs import genotype_pcs
from genoembed_assets.genotypes.qc import block_qc, filter_variants
from genoembed_assets.genotypes.vcf import open_vcfs, iter_dosages

from .fixtures_genotypes import CHR1_BLOCKS, Cohort, make_cohort, vcf_text, write_in_format, write_vcf

FORMATS = ["original", "plink", "vcf"]
NO_FILTER = {"maf_min": 0.0, "max_missing": 1.0}


def quiet(_msg: str) -> None:
    pass


def read_back(out: Path) -> tuple[np.ndarray, pd.DataFrame]:
    manifest = read_manifest(out)
    n = len(read_subjects(out))
    g = np.concatenate([load_block(out, row, n) for _, row in manifest.iterrows()], axis=1)
    return g, manifest


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return make_cohort()


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_identical_genotypes(tmp_path, cohort, fmt):
    src = write_in_format(fmt, tmp_path / "in", cohort)
    assert detect_format(src) == fmt
    report = ingest_cohort(src, tmp_path / "out", max_variants_per_block=20, log=quiet, **NO_FILTER)
    g, _ = read_back(tmp_path / "out")
    assert g.dtype == np.int8
    np.testing.assert_array_equal(g, cohort.genotypes)
    assert (g == -1).sum() == (cohort.genotypes == -1).sum() > 0  # missing stays missing
    assert list(read_subjects(tmp_path / "out")) == cohort.subject_ids
    pheno = read_phenotypes(tmp_path / "out" / "phenotypes.csv")
    pd.testing.assert_frame_equal(pheno, read_phenotypes(tmp_path / "in" / "phenotypes.csv"), check_dtype=False)
    assert report.n_subjects == 40 and report.n_variants_kept == cohort.genotypes.shape[1]
    assert json.loads((tmp_path / "out" / "cohort.json").read_text())["source_format"] == fmt
    if fmt == "plink":  # FID kept beside the IID
        subjects = pd.read_csv(tmp_path / "out" / "subjects.tsv", sep="\t", dtype=str)
        assert list(subjects["fid"]) == [f"F{s}" for s in cohort.subject_ids]
    assert not list(tmp_path.glob(".out.ingest-*"))


@pytest.mark.parametrize("fmt", ["plink", "vcf"])
def test_block_assignment_and_subblock_split(tmp_path, cohort, fmt):
    src = write_in_format(fmt, tmp_path / "in", cohort)
    scan = scan_cohort(src, max_variants_per_block=20)
    assert scan.format == fmt and scan.build == "hg19" and scan.n_subjects == 40
    b0, b1, b2 = CHR1_BLOCKS.values()
    first_s2 = int(cohort.pos[12 + 15])  # 12 variants in b0000, then 30 split 15 + 15
    expected = pd.DataFrame({
        "block_id": ["chr1_b0000", "chr1_b0001_s1", "chr1_b0001_s2", "chr1_b0002"],
        "chrom": "1", "start": [b0[0], b1[0], first_s2, b2[0]], "end": [b0[1], first_s2, b1[1], b2[1]],
        "n_snps": [12, 15, 15, 8]})
    pd.testing.assert_frame_equal(scan.blocks, expected, check_dtype=False)
    ingest_cohort(src, tmp_path / "out", max_variants_per_block=20, log=quiet, **NO_FILTER)
    _, manifest = read_back(tmp_path / "out")
    assert list(manifest["block_id"]) == list(expected["block_id"])
    variants = pd.read_parquet(tmp_path / "out" / "variants.parquet")
    assert list(variants["pos"]) == list(cohort.pos)
    assert [b.split("_s")[0] for b in variants["block_id"]] == cohort.block
    assert list(variants["id"]) == cohort.ids and set(variants["alt"]) == {"G"}
    # without the cap, no split
    assert list(scan_cohort(src, max_variants_per_block=2000).blocks["n_snps"]) == [12, 30, 8]


def test_scan_build_and_fingerprint(tmp_path, cohort):
    src = write_in_format("vcf", tmp_path / "in", cohort)
    fp = scan_cohort(src).fingerprint
    assert scan_cohort(src).fingerprint == fp  # stable
    (src / "cohort.json").write_text(json.dumps({"build": "hg38"}))
    scan = scan_cohort(src)
    assert scan.build == "hg38" and scan.fingerprint != fp


@pytest.mark.parametrize("layout", ["unsorted", "two_sample_sets", "one_file_per_region"])
def test_vcf_variants_streams_match_single_sorted_file(tmp_path, cohort, layout):
    src = tmp_path / "in"
    src.mkdir()
    if layout == "unsorted":  # records in reverse order are routed back to genomic order
        text = vcf_text(cohort).splitlines()
        header = [line for line in text if line.startswith("#")]
        (src / "c.vcf").write_text("\n".join(header + [line for line in text if not line.startswith("#")][::-1]) + "\n")
    elif layout == "two_sample_sets":  # the 1kg case: same sites, disjoint samples
        for name, rows in (("a.vcf", slice(0, 15)), ("b.vcf", slice(15, None))):
            part = Cohort(**{**cohort.__dict__, "genotypes": cohort.genotypes[rows],
                             "subject_ids": cohort.subject_ids[rows]})
            write_vcf(src, part, name)
    else:  # same samples, records split over two files
        for name, cols in (("a.vcf", slice(0, 20)), ("b.vcf", slice(20, None))):
            part = Cohort(**{**cohort.__dict__, "genotypes": cohort.genotypes[:, cols], "pos": cohort.pos[cols],
                             "chrom": cohort.chrom[cols], "ids": cohort.ids[cols], "block": cohort.block[cols],
                             "ref": cohort.ref[cols], "alt": cohort.alt[cols]})
            write_vcf(src, part, name)
    ingest_cohort(src, tmp_path / "out", max_variants_per_block=20, log=quiet, **NO_FILTER)
    g, manifest = read_back(tmp_path / "out")
    np.testing.assert_array_equal(g, cohort.genotypes)
    assert list(manifest["n_snps"]) == [12, 15, 15, 8]


def test_bcf_reads_like_vcf(tmp_path, cohort):
    from cyvcf2 import VCF, Writer

    text = write_vcf(tmp_path / "txt", cohort)
    (tmp_path / "in").mkdir()
    reader = VCF(str(text))
    writer = Writer(str(tmp_path / "in" / "cohort.bcf"), reader, mode="wb")
    for record in reader:
        writer.write_record(record)
    writer.close()
    reader.close()
    ingest_cohort(tmp_path / "in", tmp_path / "out", max_variants_per_block=20, log=quiet, **NO_FILTER)
    g, _ = read_back(tmp_path / "out")
    np.testing.assert_array_equal(g, cohort.genotypes)


def test_vcf_dosage_half_calls_and_haploid(tmp_path):
    c = make_cohort(n_subjects=4, counts={"chr1_b0000": 1})
    lines = vcf_text(c).splitlines()
    fields = lines[-1].split("\t")
    fields[9:] = ["0|1", "0/.", "1", "0"]
    lines[-1] = "\t".join(fields)
    (tmp_path / "h.vcf").write_text("\n".join(lines) + "\n")
    vcfs = open_vcfs([tmp_path / "h.vcf"])
    [(_, dose)] = list(iter_dosages(vcfs, np.ones(1, dtype=bool)))
    assert dose.tolist() == [1, -1, 2, 0]


def test_filter_counts_are_missing_aware():
    n = 20
    rng = np.random.default_rng(0)
    cols = {
        "ok": rng.integers(0, 3, n),
        "monomorphic": np.zeros(n),
        "alt_fixed_with_missing": np.r_[np.full(18, 2), np.full(2, -1)],  # p = 1 (not 0.9 if -1 counted as 0)
        "rare": np.r_[1, np.zeros(n - 1)],  # maf = 1/40 = 0.025
        "high_missing": np.r_[np.full(5, -1), rng.integers(0, 3, n - 5)],  # 25% missing
        "all_missing": np.full(n, -1),
    }
    g = np.column_stack(list(cols.values())).astype(np.int8)
    keep, counts = filter_variants(g, maf_min=0.05, max_missing=0.2)
    assert keep.tolist() == [True, False, False, False, False, False]
    assert counts == {"n_in": 6, "failed_missing": 2, "failed_maf": 3, "n_monomorphic": 2, "n_kept": 1}
    keep, counts = filter_variants(g, maf_min=0.02, max_missing=0.3)
    assert keep.tolist() == [True, False, False, True, True, False]
    qc = block_qc(g)
    assert qc["n_monomorphic"] == 2 and qc["n_all_missing_snps"] == 1 and qc["n_snps"] == 6
    assert qc["missing_rate"] == pytest.approx((2 + 5 + 20) / 120)
    assert qc["maf_min"] == 0.0 and qc["maf_max"] <= 0.5


def test_ingest_reports_filter_counts_per_block(tmp_path, cohort):
    c = make_cohort(missing=0.0)
    c.genotypes[:, 0] = 0  # monomorphic, in chr1_b0000
    c.genotypes[:6, 1] = -1  # 15% missing
    c.genotypes[:, 2] = 0
    c.genotypes[0, 2] = 1  # maf 1/80
    src = write_in_format("plink", tmp_path / "in", c)
    report = ingest_cohort(src, tmp_path / "out", maf_min=0.02, max_missing=0.1, log=quiet)
    first = report.blocks.iloc[0]
    assert (first["n_in"], first["failed_missing"], first["failed_maf"], first["n_kept"]) == (12, 1, 2, 9)
    qc = json.loads((tmp_path / "out" / "qc.json").read_text())
    assert qc["blocks"][0]["n_kept"] == 9 and qc["maf_min"] == 0.02
    g, manifest = read_back(tmp_path / "out")
    assert manifest["n_snps"].iloc[0] == 9
    np.testing.assert_array_equal(g[:, :9], c.genotypes[:, 3:12])
    assert len(pd.read_parquet(tmp_path / "out" / "variants.parquet")) == g.shape[1]


@pytest.mark.parametrize("fmt", FORMATS)
def test_pcs_recover_planted_split(tmp_path, fmt):
    c = make_cohort(n_subjects=60, counts={b: 100 for b in CHR1_BLOCKS}, split=0.2, seed=3)
    src = write_in_format(fmt, tmp_path / "in", c)
    ingest_cohort(src, tmp_path / "out", log=quiet)
    for folder in (src, tmp_path / "out"):  # raw input or the ingested layout
        pcs = load_or_compute_pcs(folder, n_pcs=10, seed=0)
        assert pcs.attrs["source"] == "computed"
        assert list(pcs.columns) == ["subject_id"] + [f"PC{i}" for i in range(1, 11)]
        assert list(pcs["subject_id"]) == c.subject_ids
        assert abs(np.corrcoef(pcs["PC1"], c.population)[0, 1]) > 0.95


def test_pcs_capped_variants_are_deterministic():
    c = make_cohort(n_subjects=60, counts={b: 100 for b in CHR1_BLOCKS}, split=0.2, seed=3)
    blocks = np.array_split(c.genotypes, 6, axis=1)
    a = genotype_pcs(iter(blocks), c.subject_ids, n_pcs=3, seed=1, max_variants=120)
    b = genotype_pcs(iter(blocks), c.subject_ids, n_pcs=3, seed=1, max_variants=120)
    pd.testing.assert_frame_equal(a, b)
    assert abs(np.corrcoef(a["PC1"], c.population)[0, 1]) > 0.9
    np.testing.assert_allclose((a[["PC1", "PC2", "PC3"]] ** 2).sum(), 1.0, rtol=1e-5)  # PLINK-style unit eigenvectors


def test_given_eigenvec_is_used_and_carried(tmp_path, cohort):
    src = write_in_format("vcf", tmp_path / "in", cohort)
    values = np.random.default_rng(0).normal(size=(40, 3))
    eig = pd.DataFrame({"FID": cohort.subject_ids, "IID": cohort.subject_ids})
    for i in range(3):
        eig[f"PC{i + 1}"] = values[:, i]
    eig[::-1].to_csv(src / "study.eigenvec", sep="\t", index=False, header=False)  # any row order
    report = ingest_cohort(src, tmp_path / "out", log=quiet, **NO_FILTER)
    assert report.has_eigenvec
    for folder in (src, tmp_path / "out"):
        pcs = load_or_compute_pcs(folder)
        assert pcs.attrs["source"] == "eigenvec"
        np.testing.assert_allclose(pcs[["PC1", "PC2", "PC3"]].to_numpy(), values)


def test_reingest_replaces_out_dir_whole(tmp_path, cohort):
    src = write_in_format("plink", tmp_path / "in", cohort)
    out = tmp_path / "out"
    ingest_cohort(src, out, max_variants_per_block=20, log=quiet)
    (out / "stale.txt").write_text("from an older run")
    shutil.rmtree(src)
    write_in_format("vcf", src, cohort)
    messages: list[str] = []
    ingest_cohort(src, out, log=messages.append)
    assert not (out / "stale.txt").exists()
    assert list(read_manifest(out)["block_id"]) == list(CHR1_BLOCKS)
    assert any(m.startswith("block 3/3") for m in messages)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]
