"""`genoembed impute` on inputs as users have them: variants no LD block covers, and a VCF without GT.

None of the LD block maps shipped has chromosome X, and every map leaves stretches out
(before a chromosome's first block, around centromeres). An imputation must
return every variant it was given, so ``genoembed impute`` puts those variants
in gap blocks (``chr{chrom}_g{index}``); the pipeline, which models LD blocks,
still skips them and says which chromosome its map lacks.
"""

from __future__ import annotations

import numpy as np
import pytest
from cyvcf2 import VCF

from genoembed_assets import paths
from genoembed_assets.cli import main
from genoembed_assets.genotypes.blockmap import read_block_map, with_gaps
from genoembed_assets.genotypes.errors import CohortInputError
from genoembed_assets.genotypes.ingest import ingest_cohort
from genoembed_assets.genotypes.vcf import dosage_from_gt

from .fixtures_genotypes import make_cohort, vcf_text

CODES = {-1: "./.", 0: "0/0", 1: "0/1", 2: "1/1"}


def _records(chrom: str, positions, genotypes: np.ndarray) -> list[str]:
    return ["\t".join([chrom, str(p), f"{chrom}_{p}", "A", "G", ".", "PASS", ".", "GT",
                       *(CODES[int(v)] for v in genotypes[:, j])]) for j, p in enumerate(positions)]


def test_gaps_tile_every_chromosome_and_keep_the_map_ids():
    block_map = read_block_map(paths.block_map_path("hg19"))
    gapped = with_gaps(block_map)
    assert set(block_map["block_id"]) <= set(gapped["block_id"])
    kept = gapped.set_index("block_id").loc[block_map["block_id"], ["start", "end"]].to_numpy()
    assert (kept == block_map[["start", "end"]].to_numpy()).all()  # the map's blocks are unchanged
    for chrom, rows in gapped.groupby("chrom"):
        assert rows["start"].iloc[0] == 0 and rows["end"].iloc[-1] == 2**31, chrom
        assert (rows["start"].to_numpy()[1:] == rows["end"].to_numpy()[:-1]).all(), chrom  # no hole, no overlap
    chr1 = gapped[gapped["chrom"] == "1"]
    assert chr1["block_id"].iloc[0] == "chr1_g0000" and chr1["end"].iloc[0] == 10583  # before chr1_b0000
    assert chr1["block_id"].iloc[1] == "chr1_b0000"
    assert gapped[gapped["chrom"] == "X"]["block_id"].tolist() == ["chrX_g0000"]  # the map has no X


def test_impute_returns_variants_before_a_block_and_on_x(tmp_path, capsys):
    cohort = make_cohort(n_subjects=60, seed=4, missing=0.05)
    rng = np.random.default_rng(2)
    x_pos = np.sort(rng.choice(np.arange(3_000_000, 3_500_000), size=25, replace=False))
    x_calls = cohort.genotypes[:, :25].copy()  # chr1's first block's structure, placed on X
    before = rng.binomial(2, 0.3, size=(60, 1)).astype(np.int8)
    before[:5] = -1
    lines = vcf_text(cohort, extra=_records("1", [5000], before)).splitlines()
    lines.insert(1, "##contig=<ID=X>")
    vcf_in = tmp_path / "in.vcf"
    vcf_in.write_text("\n".join(lines + _records("X", x_pos, x_calls)) + "\n")
    out = tmp_path / "out.vcf.gz"

    assert main(["impute", str(vcf_in), str(out)]) == 0
    said = capsys.readouterr().out
    assert "outside blocks" not in said, said
    expected = np.concatenate([before, cohort.genotypes, x_calls], axis=1)
    chroms, pos, gt, imp = [], [], [], []
    for v in VCF(str(out)):
        chroms.append(v.CHROM)
        pos.append(v.POS)
        gt.append(dosage_from_gt(v.genotype.array()))
        imp.append(v.format("IMP")[:, 0])
    gt, imp = np.stack(gt, 1), np.stack(imp, 1).astype(bool)
    assert chroms == ["1"] * (1 + len(cohort.pos)) + ["X"] * 25
    assert pos == [5000, *cohort.pos.tolist(), *x_pos.tolist()]
    observed = expected >= 0
    assert (gt[observed] == expected[observed]).all()  # observed calls untouched, everywhere
    assert (imp == ~observed).all() and (gt[~observed] >= 0).all()  # and every missing call filled


def test_pipeline_ingest_names_the_chromosome_its_map_lacks(tmp_path):
    cohort = make_cohort(n_subjects=20, seed=5)
    folder = tmp_path / "in"
    folder.mkdir()
    lines = vcf_text(cohort).splitlines()
    header = [line for line in lines if line.startswith("#")]
    (folder / "x.vcf").write_text("\n".join(header + _records("X", np.arange(1, 11) * 1000,
                                                                cohort.genotypes[:, :10])) + "\n")
    with pytest.raises(CohortInputError, match=r"x\.vcf.*no block on chromosome X"):
        ingest_cohort(folder, tmp_path / "out", log=lambda m: None)


def test_impute_names_the_users_file_when_a_record_has_no_gt(tmp_path, capsys):
    """A dosage-only VCF: the error names the file the user gave (not the work folder's link to it) and the fix."""
    cohort = make_cohort(n_subjects=20, seed=6)
    lines = vcf_text(cohort).splitlines()
    body = [i for i, line in enumerate(lines) if not line.startswith("#")]
    lines.insert(2, '##FORMAT=<ID=DS,Number=1,Type=Float,Description="Dosage">')
    for i in body:
        fields = lines[i + 1].split("\t")
        fields[8:] = ["DS", *("." if g == "./." else str(g.count("1")) for g in fields[9:])]
        lines[i + 1] = "\t".join(fields)
    vcf_in = tmp_path / "dosages.vcf"
    vcf_in.write_text("\n".join(lines) + "\n")
    assert main(["impute", str(vcf_in), str(tmp_path / "out.vcf.gz")]) != 0
    said = capsys.readouterr().err
    assert f"{vcf_in}: near line 6: no GT in this record" in said and "dosage=DS" in said, said
    assert "_genoembed/source" not in said
