"""Malformed cohorts: each raises CohortInputError naming the file and the place,
and leaves no partial output behind (or, where the policy is to skip and
count, is ingested with the count reported)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from genoembed_assets.genotypes.errors import CohortInputError
from genoembed_assets.genotypes.ingest import ingest_cohort, scan_cohort

from .fixtures_genotypes import (
    make_cohort,
    vcf_text,
    write_fam,
    write_in_format,
    write_npy_only,
    write_pgen,
    write_vcf,
)

COHORT = make_cohort(missing=0.02)  # 40 subjects S000.., 50 variants rs1..rs50, blocks 12/30/8


def quiet(_msg: str) -> None:
    pass


def _plink(tmp: Path) -> Path:
    return write_in_format("plink", tmp / "in", COHORT)


def _original(tmp: Path) -> Path:
    return write_in_format("original", tmp / "in", COHORT)


def _vcf(tmp: Path) -> Path:
    return write_in_format("vcf", tmp / "in", COHORT)


def truncated_bed(tmp):
    src = _plink(tmp)
    bed = src / "cohort.bed"
    bed.write_bytes(bed.read_bytes()[:-5])  # 10 bytes per variant: the last one is cut
    return src


def wrong_magic_bed(tmp):
    src = _plink(tmp)
    data = bytearray((src / "cohort.bed").read_bytes())
    data[:2] = b"\x00\x00"
    (src / "cohort.bed").write_bytes(bytes(data))
    return src


def bed_size_mismatch(tmp):
    src = _plink(tmp)
    bim = (src / "cohort.bim").read_text().splitlines()
    (src / "cohort.bim").write_text("\n".join(bim[:-1]) + "\n")  # one variant fewer than the .bed holds
    return src


def bim_bad_position(tmp):
    src = _plink(tmp)
    bim = (src / "cohort.bim").read_text().splitlines()
    fields = bim[2].split("\t")
    fields[3] = "12x"
    bim[2] = "\t".join(fields)
    (src / "cohort.bim").write_text("\n".join(bim) + "\n")
    return src


def fam_duplicate_iid(tmp):
    src = _plink(tmp)
    fam = (src / "cohort.fam").read_text().splitlines()
    fam[3] = fam[3].replace("S003", "S001")
    (src / "cohort.fam").write_text("\n".join(fam) + "\n")
    return src


def npy_floats(tmp):
    src = _original(tmp)
    path = src / "blocks" / "chr1_b0001.npy"
    np.save(path, np.load(path).astype(np.float64))
    return src


def npy_value_three(tmp):
    src = _original(tmp)
    path = src / "blocks" / "chr1_b0001.npy"
    g = np.load(path)
    g[2, 5] = 3
    np.save(path, g)
    return src


def _edit_manifest(src: Path, row: int, column: str, value: str) -> None:
    manifest = pd.read_csv(src / "manifest.tsv", sep="\t", dtype=str)
    manifest.loc[row, column] = value
    manifest.to_csv(src / "manifest.tsv", sep="\t", index=False)


def manifest_missing_file(tmp):
    src = _original(tmp)
    _edit_manifest(src, 1, "file", "blocks/nope.npy")
    return src


def manifest_shape_mismatch(tmp):
    src = _original(tmp)
    _edit_manifest(src, 1, "n_snps", "31")
    return src


def duplicate_subject_ids(tmp):
    src = _original(tmp)
    subjects = pd.read_csv(src / "subjects.tsv", sep="\t", dtype=str)
    subjects.loc[3, "subject_id"] = "S001"
    subjects.to_csv(src / "subjects.tsv", sep="\t", index=False)
    return src


def vcf_duplicate_sample(tmp):
    c = make_cohort(missing=0.02)
    c.subject_ids[7] = "S002"
    return write_in_format("vcf", tmp / "in", c)


def non_numeric_phenotype(tmp):
    src = _vcf(tmp)
    pheno = pd.read_csv(src / "phenotypes.csv", dtype=str)
    pheno.loc[2, "ige"] = "high"
    pheno.to_csv(src / "phenotypes.csv", index=False)
    return src


def phenotype_no_common_subject(tmp):  # keyed by FID values under an IID header: nothing matches
    src = _plink(tmp)
    pheno = pd.read_csv(src / "phenotypes.csv", dtype=str).rename(columns={"subject_id": "IID"})
    pheno["IID"] = "F" + pheno["IID"]
    pheno.to_csv(src / "phenotypes.csv", index=False)
    return src


def empty_phenotype_file(tmp):
    src = _vcf(tmp)
    (src / "phenotypes.csv").write_text("")
    return src


def pheno_bad_value(tmp):
    src = _plink(tmp)
    (src / "phenotypes.csv").unlink()
    lines = ["FID IID ige"] + [f"F{s} {s} {'x1' if i == 3 else i}" for i, s in enumerate(COHORT.subject_ids)]
    (src / "traits.pheno").write_text("\n".join(lines) + "\n")
    return src


def pheno_short_row(tmp):
    src = _plink(tmp)
    (src / "phenotypes.csv").unlink()
    lines = [f"F{s} {s} {i} 1" for i, s in enumerate(COHORT.subject_ids)]
    lines[6] = lines[6].rsplit(" ", 1)[0]
    (src / "study.pheno").write_text("\n".join(lines) + "\n")
    return src


def pheno_no_id_column(tmp):
    src = _vcf(tmp)
    pheno = pd.read_csv(src / "phenotypes.csv", dtype=str).rename(columns={"subject_id": "person"})
    pheno.to_csv(src / "phenotypes.csv", index=False)
    return src


def two_phenotype_tables(tmp):
    src = _vcf(tmp)
    shutil.copy(src / "phenotypes.csv", src / "other.pheno")
    return src


def pheno_and_cov_share_a_column(tmp):
    src = _plink(tmp)
    pheno = pd.read_csv(src / "phenotypes.csv", dtype=str).rename(columns={"subject_id": "IID"})
    (src / "phenotypes.csv").unlink()
    pheno.to_csv(src / "study.pheno", sep=" ", index=False)
    pheno[["IID", "age"]].to_csv(src / "study.cov", sep=" ", index=False)
    return src


def named_phenotypes_absent(tmp):
    src = _vcf(tmp)
    (src / "cohort.json").write_text(json.dumps({"phenotypes": ["traits.pheno"]}))
    return src


def ambiguous_formats(tmp):  # .npy blocks and a PLINK fileset, no cohort.json choice
    src = _original(tmp)
    write_in_format("plink", src, COHORT)
    return src


def format_choice_absent(tmp):
    src = _vcf(tmp)
    (src / "cohort.json").write_text(json.dumps({"format": "plink2"}))
    return src


def npy_no_subject_order(tmp):
    return write_npy_only(tmp / "in", COHORT)


def subjects_and_fam_disagree(tmp):
    src = _original(tmp)
    write_fam(src / "study.fam", COHORT.subject_ids[::-1])
    return src


def subject_source_wrong_count(tmp):
    src = write_npy_only(tmp / "in", COHORT)
    write_fam(src / "study.fam", COHORT.subject_ids[:-1])
    return src


def pvar_count_mismatch(tmp):
    src = tmp / "in"
    write_pgen(src, COHORT)
    lines = (src / "cohort.pvar").read_text().splitlines()
    (src / "cohort.pvar").write_text("\n".join(lines[:-1]) + "\n")
    return src


def pvar_bad_position(tmp):
    src = tmp / "in"
    write_pgen(src, COHORT)
    lines = (src / "cohort.pvar").read_text().splitlines()
    fields = lines[4].split("\t")
    fields[1] = "-5"
    lines[4] = "\t".join(fields)
    (src / "cohort.pvar").write_text("\n".join(lines) + "\n")
    return src


def pgen_wrong_magic(tmp):
    src = tmp / "in"
    write_pgen(src, COHORT)
    data = bytearray((src / "cohort.pgen").read_bytes())
    data[:2] = b"\x00\x00"
    (src / "cohort.pgen").write_bytes(bytes(data))
    return src


def eigenvec_missing_subjects(tmp):
    src = _vcf(tmp)
    ids = COHORT.subject_ids[:-1]
    pd.DataFrame({"FID": ids, "IID": ids, "PC1": 0.1, "PC2": 0.2}).to_csv(
        src / "pcs.eigenvec", sep="\t", index=False, header=False)
    return src


def all_multiallelic(tmp):
    c = make_cohort(missing=0.02)
    c.alt = ["G,T"] * len(c.alt)
    return write_in_format("vcf", tmp / "in", c)


def no_block_left_after_filter(tmp):
    c = make_cohort(missing=0.02)
    c.genotypes[:, :] = 0  # every variant of every block monomorphic
    return write_in_format("plink", tmp / "in", c)


def unknown_chromosomes(tmp):
    src = tmp / "in"
    src.mkdir()
    (src / "cohort.vcf").write_text(vcf_text(COHORT, chrom_prefix="scaffold_"))
    return src


def vcf_panels_differ(tmp):
    src = tmp / "in"
    a, b = make_cohort(n_subjects=10, seed=1), make_cohort(n_subjects=10, seed=1)
    b.subject_ids = [f"T{i}" for i in range(10)]
    b.pos = b.pos.copy()
    b.pos[4] += 1
    write_vcf(src, a, "a.vcf")
    write_vcf(src, b, "b.vcf")
    return src


def bad_build(tmp):
    src = _vcf(tmp)
    (src / "cohort.json").write_text(json.dumps({"build": "hg18"}))
    return src


def empty_folder(tmp):
    src = tmp / "in"
    src.mkdir()
    return src


def unrecognised_folder(tmp):
    src = tmp / "in"
    src.mkdir()
    (src / "genotypes.txt").write_text("0 1 2\n")
    return src


# (case, expected fragments of the message: the file and the place)
CASES: list[tuple[Callable[[Path], Path], list[str]]] = [
    (truncated_bed, ["cohort.bed", "variant 50 'rs50'", "truncated .bed", "expected 503"]),
    (wrong_magic_bed, ["cohort.bed", "header (bytes 1-2)", "magic 6c1b"]),
    (bed_size_mismatch, ["cohort.bed", "after variant 49", "larger than expected", "49 variants (.bim rows)"]),
    (bim_bad_position, ["cohort.bim", "line 3 (variant 'rs3')", "'12x'"]),
    (fam_duplicate_iid, ["cohort.fam", "line 4", "duplicate subject IID 'S001'"]),
    (npy_floats, ["chr1_b0001.npy", "block chr1_b0001", "dtype float64"]),
    (npy_value_three, ["chr1_b0001.npy", "block chr1_b0001", "value 3 at subject row 2, variant column 5"]),
    (manifest_missing_file, ["manifest.tsv", "row 3 (block 'chr1_b0001')", "'blocks/nope.npy' does not exist"]),
    (manifest_shape_mismatch, ["chr1_b0001.npy", "block chr1_b0001", "(40, 30)", "(40, 31)"]),
    (duplicate_subject_ids, ["subjects.tsv", "row 5", "duplicate subject ID 'S001'"]),
    (vcf_duplicate_sample, ["cohort.vcf", "sample column 8", "duplicate sample ID 'S002'"]),
    (non_numeric_phenotype, ["phenotypes.csv", "row 4 (subject 'S002')", "'high' in column 'ige'"]),
    (phenotype_no_common_subject, ["phenotypes.csv", "no subject ID in common", "'FS000'", "'S000'"]),
    (empty_phenotype_file, ["phenotypes.csv", "empty phenotype file", "subject ID column"]),
    (pheno_bad_value, ["traits.pheno", "line 5 (subject 'S003')", "'x1' in column 'ige'", "-9, NA"]),
    (pheno_short_row, ["study.pheno", "line 7", "expected 4 whitespace-separated columns", "got 3"]),
    (pheno_no_id_column, ["phenotypes.csv", "header", "no subject ID column (found person", "IID"]),
    (two_phenotype_tables, ["in", "several phenotype tables (other.pheno, phenotypes.csv)", '"phenotypes"']),
    (pheno_and_cov_share_a_column, ["study.cov", "trait column 'age' is also in study.pheno"]),
    (named_phenotypes_absent, ["cohort.json", "key 'phenotypes'", "'traits.pheno', which is not in"]),
    (ambiguous_formats, ["in", "original (manifest.tsv), plink (cohort.bed)",
                         '{"format": "npy"} or {"format": "plink"}']),
    (format_choice_absent, ["cohort.json", "key 'format'", "'plink2'", "holds no PLINK 2", "vcf (cohort.vcf)"]),
    (npy_no_subject_order, ["in", "no subject order for the .npy blocks", "subjects.tsv", ".fam / .eigenvec"]),
    (subjects_and_fam_disagree, ["in", "subjects.tsv and study.fam disagree", "row 1: 'S000' vs 'S039'"]),
    (subject_source_wrong_count, ["study.fam", "lists 39 subjects but blocks/chr1_b0000.npy has 40 rows"]),
    (pvar_count_mismatch, ["cohort.pgen", "holds 50 variants but cohort.pvar lists 49"]),
    (pvar_bad_position, ["cohort.pvar", "line 5 (variant 'rs3')", "'-5'"]),
    (pgen_wrong_magic, ["cohort.pgen", "header (bytes 1-2)", "magic 6c1b"]),
    (eigenvec_missing_subjects, ["pcs.eigenvec", "lacks 1 genotyped subject(s): S039"]),
    (all_multiallelic, ["cohort.vcf", "line 5", "'multiallelic': 50"]),
    (no_block_left_after_filter, ["cohort.bed", "block chr1_b0000", "no block left after QC", "all 3 block(s)",
                                  "'n_in': 12", "'n_kept': 0"]),
    (unknown_chromosomes, ["cohort.vcf", "line 5 (variant rs1)", "contig 'scaffold_1'"]),
    (vcf_panels_differ, ["b.vcf", "line 9", "site 1:", "a.vcf"]),
    (bad_build, ["cohort.json", "key 'build'", "'hg18'"]),
    (empty_folder, ["in", "empty cohort folder"]),
    (unrecognised_folder, ["in", "unrecognised cohort content (genotypes.txt)"]),
]


@pytest.fixture(scope="module")
def good_ingest(tmp_path_factory) -> Path:
    """A previous good ingest that a failing run must leave untouched."""
    tmp = tmp_path_factory.mktemp("good")
    src = write_in_format("original", tmp / "src", make_cohort(n_subjects=12, seed=9))
    ingest_cohort(src, tmp / "out", log=quiet)
    return tmp / "out"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case,fragments", CASES, ids=[c.__name__ for c, _ in CASES])
def test_bad_input_raises_and_leaves_nothing(tmp_path, good_ingest, case, fragments):
    src = case(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(CohortInputError) as err:
        ingest_cohort(src, out, log=quiet)
    message = str(err.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert "Traceback" not in message
    assert not out.exists()  # nothing partial where none was
    shutil.copytree(good_ingest, out)
    before = _snapshot(out)
    with pytest.raises(CohortInputError):
        ingest_cohort(src, out, log=quiet)
    assert _snapshot(out) == before  # the previous good ingest is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]  # no temporary sibling left


def test_multiallelic_records_are_skipped_and_counted(tmp_path):
    extra = ["1\t50000\tmulti1\tA\tG,T\t.\tPASS\t.\tGT" + "\t0/1" * 40,
             "1\t60000\tmulti2\tC\tA,G\t.\tPASS\t.\tGT" + "\t1/2" * 40]
    src = write_vcf(tmp_path / "in", COHORT, extra=extra).parent
    assert scan_cohort(src).skipped == {"multiallelic": 2}
    report = ingest_cohort(src, tmp_path / "out", maf_min=0.0, max_missing=1.0, log=quiet)
    assert report.skipped == {"multiallelic": 2}
    assert report.n_variants_kept == 50
    assert json.loads((tmp_path / "out" / "qc.json").read_text())["skipped"] == {"multiallelic": 2}


def test_unplaced_contigs_are_skipped_and_counted(tmp_path):
    extra = [f"GL000192.1\t{p}\t.\tA\tG\t.\tPASS\t.\tGT" + "\t0/1" * 40 for p in (100, 200)]
    extra += ["MT\t300\t.\tA\tG\t.\tPASS\t.\tGT" + "\t0/0" * 40,
              "1\t5000\toutside\tA\tG\t.\tPASS\t.\tGT" + "\t0/1" * 40]  # before chr1's first block
    src = write_vcf(tmp_path / "in", COHORT, extra=extra).parent
    report = ingest_cohort(src, tmp_path / "out", maf_min=0.0, max_missing=1.0, log=quiet)
    assert report.skipped["unknown_contig"] == {"GL000192.1": 2, "MT": 1}
    assert report.skipped["outside_blocks"] == 1
    assert report.n_variants_kept == 50
