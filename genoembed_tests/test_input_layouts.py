"""Every accepted cohort layout, ingested: what the user gets.

Each case writes a tiny cohort (40 subjects S000..S039, 50 variants in three
chr1 blocks) the way users bring it and checks the subjects (count and
order), the subject order source recorded, the traits parsed and what was
skipped.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genoembed_assets.genotypes.ingest import detect_format, ingest_cohort, load_or_compute_pcs, scan_cohort
from genoembed_assets.genotypes.layout import load_block, read_manifest, read_phenotypes, read_subjects
from genoembed_assets.genotypes.phenotype_tables import read_phenotype_table

from .fixtures_genotypes import (
    CHR1_BLOCKS,
    make_cohort,
    write_eigenvec,
    write_fam,
    write_in_format,
    write_npy_only,
    write_original,
    write_pgen,
    write_plink,
    write_vcf,
)

COHORT = make_cohort()
IDS = COHORT.subject_ids
NO_FILTER = {"maf_min": 0.0, "max_missing": 1.0}


def quiet(_msg: str) -> None:
    pass


def ingest(src: Path, tmp_path: Path, **kwargs):
    report = ingest_cohort(src, tmp_path / "out", log=quiet, **{**NO_FILTER, **kwargs})
    qc = json.loads((tmp_path / "out" / "qc.json").read_text())
    return report, qc


def genotypes(out: Path) -> np.ndarray:
    manifest = read_manifest(out)
    n = len(read_subjects(out))
    return np.concatenate([load_block(out, row, n) for _, row in manifest.iterrows()], axis=1)


def fids(out: Path) -> list[str] | None:
    subjects = pd.read_csv(out / "subjects.tsv", sep="\t", dtype=str)
    return list(subjects["fid"]) if "fid" in subjects else None


# ------------------------------------------------------------------ subject order of .npy layouts


def npy_with_fam(folder: Path) -> None:
    write_npy_only(folder, COHORT)
    write_fam(folder / "study.fam", IDS)


def npy_with_eigenvec_plink19(folder: Path) -> None:  # headerless FID IID PC1..
    write_npy_only(folder, COHORT)
    write_eigenvec(folder / "study.eigenvec", IDS)


def npy_with_eigenvec_plink2_iid(folder: Path) -> None:  # '#IID PC1 ..' header
    write_npy_only(folder, COHORT)
    write_eigenvec(folder / "study.eigenvec", IDS, header="#IID")


def npy_with_subjects_iid_column(folder: Path) -> None:  # subjects.tsv keyed 'FID IID'
    write_npy_only(folder, COHORT)
    pd.DataFrame({"FID": [f"F{s}" for s in IDS], "IID": IDS}).to_csv(folder / "subjects.tsv", sep="\t", index=False)


def npy_with_subjects_and_agreeing_fam(folder: Path) -> None:
    write_original(folder, COHORT, phenotypes=False)
    write_fam(folder / "study.fam", IDS)


def npy_beside_bed_chosen(folder: Path) -> None:  # cohort.json picks the .npy; the fileset's .fam orders them
    write_npy_only(folder, COHORT)
    write_plink(folder, COHORT, stem="study")
    (folder / "cohort.json").write_text(json.dumps({"format": "npy"}))


# (writer, expected format, subject order source, FIDs kept)
ORDER_CASES = [
    (npy_with_fam, "original", "study.fam", True),
    (npy_with_eigenvec_plink19, "original", "study.eigenvec", True),
    (npy_with_eigenvec_plink2_iid, "original", "study.eigenvec", False),
    (npy_with_subjects_iid_column, "original", "subjects.tsv", True),
    (npy_with_subjects_and_agreeing_fam, "original", "subjects.tsv", False),
    (npy_beside_bed_chosen, "original", "study.fam", True),
    (lambda f: write_plink(f, COHORT), "plink", "cohort.fam", True),
    (lambda f: write_pgen(f, COHORT), "plink2", "cohort.psam", True),
    (lambda f: write_pgen(f, COHORT, psam_header="#IID", pvar_header=False), "plink2", "cohort.psam", False),
    (lambda f: write_pgen(f, COHORT, psam_header=""), "plink2", "cohort.psam", True),
    (lambda f: write_vcf(f, COHORT), "vcf", "cohort.vcf", False),
]


@pytest.mark.parametrize("write,fmt,source,has_fid", ORDER_CASES,
                         ids=["npy+fam", "npy+eigenvec1.9", "npy+eigenvec#IID", "npy+subjects(FID,IID)",
                              "npy+subjects+fam", "npy+bed,format=npy", "plink", "pgen", "pgen#IID,bim-pvar",
                              "pgen-headerless-psam", "vcf"])
def test_subject_order_and_source(tmp_path, write, fmt, source, has_fid):
    src = tmp_path / "in"
    src.mkdir()
    write(src)
    assert detect_format(src) == fmt
    scan = scan_cohort(src)
    assert scan.n_subjects == 40 and scan.subject_order_source == source
    report, qc = ingest(src, tmp_path)
    out = tmp_path / "out"
    assert list(read_subjects(out)) == IDS  # count and order
    np.testing.assert_array_equal(genotypes(out), COHORT.genotypes)  # rows belong to those subjects
    assert report.subject_order_source == qc["subject_order_source"] == source
    assert report.format == qc["format"] == fmt
    assert fids(out) == ([f"F{s}" for s in IDS] if has_fid else None)
    assert report.phenotypes == {"files": []} and not report.has_phenotypes  # none written here
    assert not (out / "phenotypes.csv").exists()
    assert "format" not in json.loads((out / "cohort.json").read_text())  # the ingested folder is .npy only
    assert detect_format(out) == "original"


def test_eigenvec_order_source_also_gives_the_pcs(tmp_path):
    src = tmp_path / "in"
    write_npy_only(src, COHORT)
    values = write_eigenvec(src / "study.eigenvec", IDS, header="#FID IID")
    report, _ = ingest(src, tmp_path)
    assert report.subject_order_source == "study.eigenvec" and report.has_eigenvec
    pcs = load_or_compute_pcs(tmp_path / "out")
    assert pcs.attrs["source"] == "eigenvec"
    assert list(pcs["subject_id"]) == IDS
    np.testing.assert_allclose(pcs[["PC1", "PC2", "PC3"]].to_numpy(), values)


def test_pgen_multiallelic_records_skipped_and_counted(tmp_path):
    src = tmp_path / "in"
    write_pgen(src, COHORT)
    lines = (src / "cohort.pvar").read_text().splitlines()
    for i in (2, 3):  # rs1, rs2 become multiallelic
        fields = lines[i].split("\t")
        fields[4] = "G,T"
        lines[i] = "\t".join(fields)
    (src / "cohort.pvar").write_text("\n".join(lines) + "\n")
    report, qc = ingest(src, tmp_path)
    assert report.skipped == qc["skipped"] == {"multiallelic": 2}
    np.testing.assert_array_equal(genotypes(tmp_path / "out"), COHORT.genotypes[:, 2:])


@pytest.mark.parametrize("choice,fmt", [("plink2", "plink2"), ("vcf", "vcf"), ("pgen", "plink2")])
def test_cohort_json_picks_one_of_several_formats(tmp_path, choice, fmt):
    src = tmp_path / "in"
    write_vcf(src, COHORT)
    write_pgen(src, COHORT)
    (src / "cohort.json").write_text(json.dumps({"format": choice, "build": "hg19"}))
    report, qc = ingest(src, tmp_path)
    assert report.format == qc["format"] == fmt
    np.testing.assert_array_equal(genotypes(tmp_path / "out"), COHORT.genotypes)
    assert json.loads((tmp_path / "out" / "cohort.json").read_text())["source_format"] == fmt


# ------------------------------------------------------------------ phenotype tables


def _traits(seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"ige": rng.lognormal(4, 1, 40).round(3), "age": rng.integers(20, 70, 40).astype(float)})


TRAITS = _traits()


def csv_iid(folder: Path) -> None:
    TRAITS.assign(IID=IDS)[["IID", "ige", "age"]].to_csv(folder / "phenotypes.csv", index=False)


def csv_fid_iid(folder: Path) -> None:
    TRAITS.assign(FID=[f"F{s}" for s in IDS], IID=IDS)[["FID", "IID", "ige", "age"]].to_csv(
        folder / "phenotypes.csv", index=False)


def tsv_plink2_header(folder: Path) -> None:
    TRAITS.assign(**{"#IID": IDS})[["#IID", "ige", "age"]].to_csv(folder / "phenotypes.tsv", sep="\t", index=False)


def csv_sample_id(folder: Path) -> None:
    TRAITS.assign(sample_id=IDS)[["sample_id", "ige", "age"]].to_csv(folder / "phenotypes.csv", index=False)


def _plink_lines(frame: pd.DataFrame, header: bool) -> str:
    rows = [" ".join(["FID", "IID", *frame.columns])] if header else []
    for s, (_, r) in zip(IDS, frame.iterrows()):
        rows.append(" ".join([f"F{s}", s, *("-9" if pd.isna(v) else f"{v:g}" for v in r)]))
    return "\n".join(rows) + "\n"


def pheno_with_header(folder: Path) -> None:
    (folder / "study.pheno").write_text(_plink_lines(TRAITS, header=True))


def pheno_headerless(folder: Path) -> None:
    (folder / "study.pheno").write_text(_plink_lines(TRAITS, header=False))


def pheno_plus_cov(folder: Path) -> None:
    (folder / "study.pheno").write_text(_plink_lines(TRAITS[["ige"]], header=True))
    (folder / "study.cov").write_text(_plink_lines(TRAITS[["age"]], header=True))


def named_in_cohort_json(folder: Path) -> None:
    pheno_plus_cov(folder)
    shutil.copy(folder / "study.pheno", folder / "old.pheno")  # would be ambiguous without the choice
    (folder / "cohort.json").write_text(json.dumps({"phenotypes": ["study.pheno", "study.cov"]}))


PHENO_CASES = [
    (csv_iid, ["phenotypes.csv"], "IID", ["ige", "age"]),
    (csv_fid_iid, ["phenotypes.csv"], "IID", ["ige", "age"]),
    (tsv_plink2_header, ["phenotypes.tsv"], "#IID", ["ige", "age"]),
    (csv_sample_id, ["phenotypes.csv"], "sample_id", ["ige", "age"]),
    (pheno_with_header, ["study.pheno"], "IID", ["ige", "age"]),
    (pheno_headerless, ["study.pheno"], "IID", ["PHENO1", "PHENO2"]),
    (pheno_plus_cov, ["study.pheno", "study.cov"], "IID", ["ige", "age"]),
    (named_in_cohort_json, ["study.pheno", "study.cov"], "IID", ["ige", "age"]),
]


@pytest.mark.parametrize("write,files,id_column,traits", PHENO_CASES, ids=[c[0].__name__ for c in PHENO_CASES])
def test_phenotype_tables_and_id_columns(tmp_path, write, files, id_column, traits):
    src = tmp_path / "in"
    write_plink(src, COHORT)
    write(src)
    report, qc = ingest(src, tmp_path)
    assert report.has_phenotypes
    assert qc["phenotypes"]["files"] == files and qc["phenotypes"]["id_column"] == id_column
    assert qc["phenotypes"]["traits"] == traits
    table = read_phenotypes(tmp_path / "out" / "phenotypes.csv")
    assert list(table.columns) == ["subject_id", *traits]  # FID is an ID column, not a trait
    assert list(table["subject_id"]) == IDS
    np.testing.assert_allclose(table[traits].to_numpy(), TRAITS.to_numpy(), rtol=1e-5)


def test_plink_minus_nine_and_na_are_missing(tmp_path):
    path = tmp_path / "t.pheno"
    path.write_text("#FID IID fev1 count\nA a -9 3\nB b 2.5 NA\nC c -9.5 -9\n")
    table = read_phenotype_table(path)
    assert list(table["subject_id"]) == ["a", "b", "c"]
    assert table["fev1"].tolist()[1:] == [2.5, -9.5] and np.isnan(table["fev1"][0])  # -9.5 is a value
    assert table["count"].tolist()[0] == 3 and table["count"].isna().tolist() == [False, True, True]


def test_csv_minus_nine_is_a_number(tmp_path):
    path = tmp_path / "phenotypes.csv"
    path.write_text("subject_id,z\na,-9\nb,NA\nc,\n")
    assert read_phenotype_table(path)["z"].isna().tolist() == [False, True, True]


def test_subjects_missing_from_phenotypes_are_kept_as_na(tmp_path):
    src = tmp_path / "in"
    write_plink(src, COHORT)
    table = TRAITS.assign(IID=IDS)[["IID", "ige", "age"]]
    dropped = [IDS[i] for i in (3, 11, 20, 33)]  # 10% of subjects
    extra = pd.DataFrame({"IID": ["NOGENO1"], "ige": [1.0], "age": [30.0]})
    pd.concat([table[~table["IID"].isin(dropped)], extra]).to_csv(src / "phenotypes.csv", index=False)
    report, qc = ingest(src, tmp_path)
    info = qc["phenotypes"]
    assert (info["n_subjects_missing"], info["missing_subjects"], info["n_rows_not_genotyped"]) == (4, dropped, 1)
    assert report.phenotypes == info
    out = read_phenotypes(tmp_path / "out" / "phenotypes.csv", read_subjects(tmp_path / "out"))
    assert list(out["subject_id"]) == IDS  # every genotyped subject kept, in genotype order
    missing = out["subject_id"].isin(dropped)
    assert out.loc[missing, ["ige", "age"]].isna().all().all()
    assert out.loc[~missing, ["ige", "age"]].notna().all().all()


def test_genotype_only_cohort(tmp_path):
    src = tmp_path / "in"
    write_plink(src, COHORT)
    messages: list[str] = []
    report = ingest_cohort(src, tmp_path / "out", log=messages.append, **NO_FILTER)
    assert not report.has_phenotypes and report.phenotypes == {"files": []}
    assert not (tmp_path / "out" / "phenotypes.csv").exists()
    assert any("ingesting genotypes only" in m for m in messages)
    assert report.summary()["phenotypes"] == {"files": []}


# ------------------------------------------------------------------ blocks QC leaves empty


@pytest.mark.parametrize("fmt", ["original", "plink", "plink2", "vcf"])
def test_blocks_empty_after_qc_are_skipped_and_recorded(tmp_path, fmt):
    c = make_cohort(missing=0.0)
    c.genotypes[:, 12:42] = 0  # chr1_b0001 monomorphic
    c.genotypes[:, 42:] = -1  # chr1_b0002 all missing
    src = tmp_path / "in"
    if fmt == "plink2":
        write_pgen(src, c)
    else:
        write_in_format(fmt, src, c)
    scan = scan_cohort(src)
    assert list(scan.blocks["block_id"]) == list(CHR1_BLOCKS)  # the scan (partition keys) still lists them
    messages: list[str] = []
    report = ingest_cohort(src, tmp_path / "out", maf_min=0.01, max_missing=0.1, log=messages.append)
    qc = json.loads((tmp_path / "out" / "qc.json").read_text())
    assert [b["block_id"] for b in qc["skipped_blocks"]] == ["chr1_b0001", "chr1_b0002"]
    assert report.skipped_blocks == qc["skipped_blocks"]
    assert set(qc["skipped_blocks"][0]) == {"block_id", "reason"}
    assert "30 in" in qc["skipped_blocks"][0]["reason"] and "30 monomorphic" in qc["skipped_blocks"][0]["reason"]
    assert "8 failed missing" in qc["skipped_blocks"][1]["reason"]
    assert list(read_manifest(tmp_path / "out")["block_id"]) == ["chr1_b0000"]  # the rest proceeds
    np.testing.assert_array_equal(genotypes(tmp_path / "out"), c.genotypes[:, :12])
    assert report.n_variants_in == 50 and report.n_variants_kept == 12
    assert any("chr1_b0002: skipped" in m for m in messages)
