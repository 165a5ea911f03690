"""Real 1000 Genomes genotypes (chr20:1-4 Mb, GRCh37) through the VCF path.

The two panels (300 + 203 samples over the same 24,990 sites) sit side by side
in one cohort folder; ingestion merges them sample-wise (the policy for VCFs
with disjoint samples, as ``bcftools merge`` would). Every expected figure is
counted here independently of the package: VCF text parsed with ``gzip``, the
BED block map parsed by hand, no cyvcf2, no ``assign_blocks``, no QC module.
"""

from __future__ import annotations

import gzip
import math
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genoembed_assets.genotypes.ingest import ingest_cohort, load_or_compute_pcs, scan_cohort
from genoembed_assets.genotypes.layout import load_block, read_manifest, read_subjects

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
# shipped in data/1kg_chr20 (so CI runs these tests on a fresh clone); shared/ beside the repo otherwise
KG = REPO / "data" / "1kg_chr20" if (REPO / "data" / "1kg_chr20" / "reference.vcf.gz").exists() else SHARED / "1kg_chr20"
BLOCK_MAP = REPO / "data" / "reference" / "ldetect_EUR_hg19.bed"
PANELS = ("reference.vcf.gz", "unphased.vcf.gz")
CAP = 2000

pytestmark = pytest.mark.skipif(not all((KG / p).exists() for p in PANELS),
                                reason=f"1000 Genomes test data not found at {KG} (data/1kg_chr20 or shared/ beside the repo)")


def parse_vcf(path: Path) -> tuple[list[str], list[int], list[int], dict[int, tuple[str, list[int]]]]:
    """Samples, positions, ALT allele counts, and (ID, dosages) of every 500th record, from the text."""
    positions, alt_counts, sampled = [], [], {}
    with gzip.open(path, "rt") as fh:
        for line in fh:
            if line.startswith("##"):
                continue
            fields = line.rstrip("\n").split("\t")
            if line.startswith("#CHROM"):
                samples = fields[9:]
                continue
            assert "," not in fields[4], "the shapeit4 panels are biallelic"
            gts = [f.split(":")[0] for f in fields[9:]]
            dosages = [g.count("1") for g in gts]
            positions.append(int(fields[1]))
            alt_counts.append(sum(dosages))
            if len(positions) % 500 == 1:
                sampled[len(positions) - 1] = (fields[2], dosages)
    return samples, positions, alt_counts, sampled


def chr20_blocks() -> list[tuple[int, int]]:
    blocks = []
    for line in BLOCK_MAP.read_text().splitlines()[1:]:
        chrom, start, end = re.split(r"[ \t]+", line.strip())[:3]
        if chrom == "chr20":
            blocks.append((int(start), int(end)))
    return sorted(blocks)


@pytest.fixture(scope="module")
def kg(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kg") / "cohort"
    folder.mkdir()
    for name in PANELS:
        shutil.copy(KG / name, folder / name)
    parsed = [parse_vcf(KG / name) for name in PANELS]
    assert parsed[0][1] == parsed[1][1], "both panels list the same sites"
    t0 = time.perf_counter()
    report = ingest_cohort(folder, folder.parent / "out", maf_min=0.01, max_variants_per_block=CAP,
                           log=lambda _msg: None)
    return folder, report, parsed, time.perf_counter() - t0


def expected_blocks(positions: list[int], alt_counts: list[int], n_alleles: int):
    """Per parent block: variant count, MAF >= 0.01 count, and the sub-block sizes."""
    spans = chr20_blocks()
    members: dict[int, list[int]] = {}
    for j, pos in enumerate(positions):
        hits = [i for i, (s, e) in enumerate(spans) if s <= pos < e]
        assert len(hits) == 1
        members.setdefault(hits[0], []).append(j)
    out = {}
    for i, js in members.items():
        k = math.ceil(len(js) / CAP)
        base, extra = divmod(len(js), k)
        sizes = [base + 1] * extra + [base] * (k - extra)
        parts, at = [], 0
        for size in sizes:  # contiguous sub-blocks; count MAF-passing variants in each
            part = js[at:at + size]
            at += size
            kept = sum(1 for j in part if min(alt_counts[j], n_alleles - alt_counts[j]) / n_alleles >= 0.01)
            parts.append((size, kept))
        out[f"chr20_b{i:04d}"] = parts
    return out


def test_1kg_cohort_counts_match_independent_counts(kg):
    folder, report, parsed, seconds = kg
    samples = parsed[0][0] + parsed[1][0]
    positions = parsed[0][1]
    alt_counts = [a + b for a, b in zip(parsed[0][2], parsed[1][2])]
    assert len(samples) == 503 and len(positions) == 24_990

    assert report.n_subjects == 503 and report.format == "vcf" and report.build == "hg19"
    assert list(read_subjects(report.out_dir)) == samples
    assert report.skipped == {}
    expected = expected_blocks(positions, alt_counts, 2 * 503)
    got = report.blocks
    rows = []
    for parent, parts in expected.items():
        for k, (n_in, n_kept) in enumerate(parts, start=1):
            rows.append((parent if len(parts) == 1 else f"{parent}_s{k}", n_in, n_kept))
    assert list(got["block_id"]) == [r[0] for r in rows]
    assert list(got["n_in"]) == [r[1] for r in rows]
    assert list(got["n_kept"]) == [r[2] for r in rows]
    assert got["failed_missing"].sum() == 0  # the panels carry no missing calls
    scan = scan_cohort(folder, max_variants_per_block=CAP)
    assert list(scan.blocks["block_id"]) == list(got["block_id"])
    assert list(scan.blocks["n_snps"]) == list(got["n_in"])
    print(f"\n1kg chr20: {report.n_subjects} subjects, {report.n_blocks} blocks, "
          f"{report.n_variants_kept}/{report.n_variants_in} variants kept, ingest {seconds:.1f}s")
    print(got[["block_id", "n_in", "n_kept"]].to_string(index=False))


def test_1kg_genotypes_match_the_text(kg):
    _, report, parsed, _ = kg
    positions = parsed[0][1]
    manifest = read_manifest(report.out_dir)
    variants = pd.read_parquet(report.out_dir / "variants.parquet")
    blocks = {row["block_id"]: load_block(report.out_dir, row, 503) for _, row in manifest.iterrows()}
    column = variants.groupby("block_id").cumcount()
    # (pos, id): a few positions carry two records
    where = {(int(p), i): (b, int(c)) for p, i, b, c in zip(variants["pos"], variants["id"], variants["block_id"], column)}
    checked = 0
    for j, (rsid, dose_a) in parsed[0][3].items():
        if (positions[j], rsid) not in where:  # filtered out by MAF
            continue
        b, c = where[(positions[j], rsid)]
        want = np.array(dose_a + parsed[1][3][j][1], dtype=np.int8)
        np.testing.assert_array_equal(blocks[b][:, c], want)
        checked += 1
    assert checked >= 10


def test_1kg_pcs_computed(kg):
    _, report, _, _ = kg
    pcs = load_or_compute_pcs(report.out_dir, n_pcs=10, max_variants=5000)
    assert pcs.shape == (503, 11) and pcs.attrs["source"] == "computed"
    assert np.isfinite(pcs.iloc[:, 1:].to_numpy()).all()
