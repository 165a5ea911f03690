"""Tiny cohorts written in each accepted format, for reader and bad-input tests.

Positions fall in the first three hg19 LDetect blocks of chr1 so block
assignment can be checked by hand against these constants.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from bed_reader import to_bed

from genoembed_assets.genotypes.layout import BlockArray, write_cohort

# ldetect_EUR_hg19.bed: chr1_b0000 .. chr1_b0002 (half-open)
CHR1_BLOCKS = {"chr1_b0000": (10583, 1892607), "chr1_b0001": (1892607, 3582736), "chr1_b0002": (3582736, 4380811)}
# variants per block in the default cohort; chr1_b0001 is split when the cap is 20
DEFAULT_COUNTS = {"chr1_b0000": 12, "chr1_b0001": 30, "chr1_b0002": 8}


@dataclass
class Cohort:
    """Genotypes (subjects x variants) with sites in genomic order."""

    genotypes: np.ndarray
    subject_ids: list[str]
    chrom: list[str]
    pos: np.ndarray
    block: list[str]  # expected parent block of each variant
    ids: list[str]
    ref: list[str]
    alt: list[str]
    population: np.ndarray

    def phenotypes(self) -> pd.DataFrame:
        rng = np.random.default_rng(1)
        return pd.DataFrame({"subject_id": self.subject_ids, "age": rng.integers(20, 70, len(self.subject_ids)),
                             "ige": rng.lognormal(4, 1, len(self.subject_ids)).round(3)})


def make_cohort(n_subjects: int = 40, counts: dict[str, int] | None = None, *, seed: int = 0,
                missing: float = 0.03, split: float = 0.0) -> Cohort:
    """Random cohort; with ``split`` > 0 two half-populations differ in allele frequency by that much."""
    counts = DEFAULT_COUNTS if counts is None else counts
    rng = np.random.default_rng(seed)
    pos, block = [], []
    for b, n in counts.items():
        start, end = CHR1_BLOCKS[b]
        pos.extend(np.sort(rng.choice(np.arange(start, end), size=n, replace=False)))
        block.extend([b] * n)
    m = len(pos)
    population = np.repeat([0, 1], [n_subjects // 2, n_subjects - n_subjects // 2])
    base = rng.uniform(0.1, 0.5, size=m)
    shift = np.where(rng.random(m) < 0.5, split, -split)
    freq = np.clip(base[None, :] + np.where(population[:, None] == 1, shift[None, :], 0.0), 0.02, 0.98)
    g = rng.binomial(2, freq).astype(np.int8)
    g[rng.random(g.shape) < missing] = -1
    return Cohort(genotypes=g, subject_ids=[f"S{i:03d}" for i in range(n_subjects)], chrom=["1"] * m,
                  pos=np.asarray(pos, dtype=np.int64), block=block, ids=[f"rs{i + 1}" for i in range(m)],
                  ref=["A"] * m, alt=["G"] * m, population=population)


def write_plink(folder: Path, c: Cohort, stem: str = "cohort") -> Path:
    """PLINK 1 fileset via bed-reader; allele_1 (counted) is ALT."""
    folder.mkdir(parents=True, exist_ok=True)
    val = c.genotypes.astype(np.float32)
    val[c.genotypes < 0] = np.nan
    bed = folder / f"{stem}.bed"
    to_bed(bed, val, properties={
        "fid": [f"F{s}" for s in c.subject_ids], "iid": c.subject_ids, "chromosome": c.chrom,
        "sid": c.ids, "bp_position": c.pos, "allele_1": c.alt, "allele_2": c.ref,
    }, count_A1=True)
    return bed


def vcf_text(c: Cohort, extra: list[str] = (), chrom_prefix: str = "") -> str:
    """A plain-text VCF; ``extra`` records (tab-separated lines) go after the header."""
    codes = {-1: "./.", 0: "0/0", 1: "0/1", 2: "1/1"}
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=1>",
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *c.subject_ids])]
    lines.extend(extra)
    for j in range(len(c.pos)):
        calls = [codes[int(v)] for v in c.genotypes[:, j]]
        lines.append("\t".join([f"{chrom_prefix}{c.chrom[j]}", str(c.pos[j]), c.ids[j], c.ref[j], c.alt[j],
                                ".", "PASS", ".", "GT", *calls]))
    return "\n".join(lines) + "\n"


def write_vcf(folder: Path, c: Cohort, name: str = "cohort.vcf", **kwargs) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(vcf_text(c, **kwargs))
    return path


def write_original(folder: Path, c: Cohort, *, phenotypes: bool = True) -> pd.DataFrame:
    """Original layout with one .npy per parent block (no sub-block split)."""
    blocks = []
    for b in dict.fromkeys(c.block):
        cols = [j for j, x in enumerate(c.block) if x == b]
        blocks.append(BlockArray(b, "1", *CHR1_BLOCKS[b], c.genotypes[:, cols]))
    return write_cohort(folder, c.subject_ids, blocks, phenotypes=c.phenotypes() if phenotypes else None)


def write_in_format(fmt: str, folder: Path, c: Cohort) -> Path:
    """Write ``c`` as ``fmt`` ('original', 'plink' or 'vcf') with a phenotype table."""
    if fmt == "original":
        write_original(folder, c)
        return folder
    if fmt == "plink":
        write_plink(folder, c)
    else:
        write_vcf(folder, c)
    c.phenotypes().to_csv(folder / "phenotypes.csv", index=False)
    return folder


def write_pgen(folder: Path, c: Cohort, stem: str = "cohort", *, psam_header: str = "#FID IID",
               pvar_header: bool = True) -> Path:
    """PLINK 2 fileset via pgenlib's writer; the .pvar ALT is the counted allele.

    ``psam_header`` is ``'#FID IID'``, ``'#IID'`` or ``''`` (headerless, .fam columns).
    """
    import pgenlib

    folder.mkdir(parents=True, exist_ok=True)
    pgen = folder / f"{stem}.pgen"
    writer = pgenlib.PgenWriter(bytes(pgen), len(c.subject_ids), len(c.pos), False)
    for j in range(len(c.pos)):
        writer.append_biallelic(np.where(c.genotypes[:, j] < 0, -9, c.genotypes[:, j]).astype(np.int8))
    writer.close()
    if pvar_header:
        lines = ["##fileformat=PVARv1.0", "#CHROM\tPOS\tID\tREF\tALT"]
        lines += [f"{ch}\t{p}\t{i}\t{r}\t{a}" for ch, p, i, r, a in zip(c.chrom, c.pos, c.ids, c.ref, c.alt)]
    else:  # .bim column order
        lines = [f"{ch}\t{i}\t0\t{p}\t{a}\t{r}" for ch, p, i, r, a in zip(c.chrom, c.pos, c.ids, c.ref, c.alt)]
    (folder / f"{stem}.pvar").write_text("\n".join(lines) + "\n")
    if psam_header == "#IID":
        psam = ["#IID\tSEX"] + [f"{s}\tNA" for s in c.subject_ids]
    elif psam_header:
        psam = [f"{psam_header}\tSEX"] + [f"F{s}\t{s}\tNA" for s in c.subject_ids]
    else:
        psam = [f"F{s}\t{s}\t0\t0\t0\t-9" for s in c.subject_ids]
    (folder / f"{stem}.psam").write_text("\n".join(psam) + "\n")
    return pgen


def write_fam(path: Path, subject_ids: list[str]) -> Path:
    """A .fam listing ``subject_ids`` (FID = 'F' + IID)."""
    path.write_text("".join(f"F{s} {s} 0 0 0 -9\n" for s in subject_ids))
    return path


def write_eigenvec(path: Path, subject_ids: list[str], n_pcs: int = 3, *, header: str | None = None,
                   seed: int = 0) -> np.ndarray:
    """A PLINK .eigenvec in ``subject_ids`` order; ``header`` '#FID IID' or '#IID' (None: PLINK 1.9, none)."""
    values = np.random.default_rng(seed).normal(size=(len(subject_ids), n_pcs))
    pcs = [f"PC{i + 1}" for i in range(n_pcs)]
    lines = [] if header is None else ["\t".join([*header.split(), *pcs])]
    for s, row in zip(subject_ids, values):
        ids = [s] if header == "#IID" else [f"F{s}", s]
        lines.append("\t".join([*ids, *(f"{v:.6f}" for v in row)]))
    path.write_text("\n".join(lines) + "\n")
    return values.round(6)


def write_npy_only(folder: Path, c: Cohort) -> Path:
    """The original layout as the original pipeline left it: manifest + .npy blocks, no subjects.tsv."""
    write_original(folder, c, phenotypes=False)
    (folder / "subjects.tsv").unlink()
    (folder / "cohort.json").unlink(missing_ok=True)
    return folder
