"""VCF/BCF genotypes through cyvcf2.

Dosage = number of ALT alleles in GT (0/1/2); a call with any missing allele
(``./.``, ``0/.``) is -1; a haploid call counts as homozygous (0 or 2), the
PLINK convention for male X.

Policies:

* Multiallelic records (more than one ALT) are skipped and counted
  (``status == 'multiallelic'``); split them first (``bcftools norm -m-``) to
  keep them. Records without an ALT (``.``) carry nothing and are skipped as
  ``'no_alt'``.
* Several VCFs in one cohort folder are read as one cohort: either they hold
  the same samples (e.g. one file per chromosome; records are concatenated) or
  disjoint samples over the same sites in the same order (e.g. two panels;
  samples are concatenated, as ``bcftools merge`` would). Anything else is an
  error naming the file and the first record that differs.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal, Sequence

import numpy as np
import pandas as pd
from cyvcf2 import VCF

from .errors import CohortInputError

__all__ = ["VCF_SUFFIXES", "VcfSet", "dosage_from_gt", "iter_dosages", "open_vcfs"]

VCF_SUFFIXES = (".vcf", ".vcf.gz", ".vcf.bgz", ".bcf")
_SITE_KEY = ["chrom", "pos", "ref", "alt"]


@dataclass(frozen=True)
class VcfSet:
    """One cohort's VCF files, with every record's site and status.

    Attributes
    ----------
    files : tuple of pathlib.Path
    mode : {'sites', 'samples'}
        'sites': same samples in every file, records concatenated;
        'samples': disjoint samples over identical sites, samples concatenated.
    samples : list of str
        Subject IDs in column order of the dosages.
    sites : pandas.DataFrame
        ``chrom`` (as written), ``pos``, ``id``, ``ref``, ``alt``, ``file``
        (index into ``files``), ``line`` (line number in that file) and
        ``status`` ('ok', 'multiallelic' or 'no_alt'), in stream order. For
        BCF ``line`` is the record number (see ``line_unit``).
    """

    files: tuple[Path, ...]
    mode: Literal["sites", "samples"]
    samples: list[str]
    sites: pd.DataFrame

    @property
    def line_unit(self) -> str:
        """How ``sites['line']`` counts: file lines (text VCF) or records (BCF)."""
        return "record" if any(p.name.lower().endswith(".bcf") for p in self.files) else "line"


def _text_header(path: Path) -> tuple[int, list[str]] | None:
    """(number of header lines, sample names) of a plain or gzipped text VCF; None for BCF."""
    with open(path, "rb") as fh:
        magic = fh.read(4)
    opener = gzip.open if magic[:2] == b"\x1f\x8b" else open
    n = 0
    try:
        with opener(path, "rt", errors="replace") as fh:
            for line in fh:
                if not line.startswith("#"):
                    break
                n += 1
                if line.startswith("#CHROM"):
                    return n, line.rstrip("\n").split("\t")[9:]
    except (OSError, EOFError, UnicodeError):
        return None
    return None  # BCF (binary) or no #CHROM line


def _open(path: Path) -> VCF:
    try:
        return VCF(str(path), gts012=True, lazy=True, threads=1)
    except Exception as exc:  # cyvcf2 raises OSError, ValueError or a bare Exception on bad headers
        header = _text_header(path)
        if header is not None:
            _check_unique(path, header[1])  # htslib rejects duplicates without naming them
        raise CohortInputError(path, f"cannot open as VCF/BCF ({exc})") from None


def _read_sites(path: Path) -> tuple[list[str], pd.DataFrame]:
    """Samples and sites of one file; ``line`` is the file line (text) or record number (BCF)."""
    vcf = _open(path)
    header = _text_header(path)
    n_header = header[0] if header is not None else 0
    samples = list(vcf.samples)
    if not samples:
        raise CohortInputError(path, "VCF has no sample columns (expected genotypes per subject)")
    rows = []
    record = 0
    try:
        for record, v in enumerate(vcf, start=1):
            alts = v.ALT
            status = "ok" if len(alts) == 1 else ("no_alt" if not alts else "multiallelic")
            rows.append((v.CHROM, v.POS, v.ID or "", v.REF, ",".join(alts), n_header + record, status))
    except Exception as exc:  # htslib parse errors surface as bare Exceptions
        unit = "line" if header is not None else "record"
        raise CohortInputError(path, f"cannot parse record ({exc})", where=f"{unit} {n_header + record + 1}") from None
    finally:
        vcf.close()
    sites = pd.DataFrame(rows, columns=["chrom", "pos", "id", "ref", "alt", "line", "status"])
    sites["pos"] = sites["pos"].astype(np.int64)
    return samples, sites


def open_vcfs(paths: Sequence[str | Path]) -> VcfSet:
    """Read headers and every record's site (no genotypes) of a cohort's VCFs."""
    paths = tuple(Path(p) for p in sorted(paths))
    if not paths:
        raise ValueError("no VCF files given")
    parts = [_read_sites(p) for p in paths]
    samples0 = parts[0][0]
    _check_unique(paths[0], samples0)
    if all(p[0] == samples0 for p in parts[1:]):
        mode: Literal["sites", "samples"] = "sites"
        samples = list(samples0)
        sites = pd.concat([s.assign(file=i) for i, (_, s) in enumerate(parts)], ignore_index=True)
    else:
        mode = "samples"
        samples = []
        seen: dict[str, Path] = {}
        for path, (names, _) in zip(paths, parts):
            _check_unique(path, names)
            for name in names:
                if name in seen:
                    raise CohortInputError(path, f"sample {name!r} also appears in {seen[name].name}; several VCFs "
                                           "must hold either the same samples or disjoint samples over the same sites")
                seen[name] = path
            samples.extend(names)
        ref_sites = parts[0][1]
        for path, (_, s) in zip(paths[1:], parts[1:]):
            _check_same_sites(paths[0], ref_sites, path, s)
        sites = ref_sites.assign(file=0)
    return VcfSet(files=paths, mode=mode, samples=samples, sites=sites)


def _check_unique(path: Path, names: list[str]) -> None:
    dup = pd.Index(names).duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise CohortInputError(path, f"duplicate sample ID {names[i]!r}", where=f"sample column {i + 1}")


def _check_same_sites(path0: Path, a: pd.DataFrame, path: Path, b: pd.DataFrame) -> None:
    n = min(len(a), len(b))
    differs = (a[_SITE_KEY].iloc[:n].to_numpy() != b[_SITE_KEY].iloc[:n].to_numpy()).any(axis=1)
    if differs.any():
        i = int(np.flatnonzero(differs)[0])
        got, want = b.iloc[i], a.iloc[i]
        raise CohortInputError(
            path, f"site {got['chrom']}:{got['pos']} {got['ref']}>{got['alt']} differs from "
            f"{want['chrom']}:{want['pos']} {want['ref']}>{want['alt']} at line {want['line']} of {path0.name}; "
            "VCFs with disjoint samples must list the same sites in the same order",
            where=f"line {got['line']}" if _text_header(path) is not None else f"record {i + 1}")
    if len(a) != len(b):
        raise CohortInputError(path, f"{len(b)} records, but {path0.name} has {len(a)}; VCFs with disjoint samples "
                               "must list the same sites")


def dosage_from_gt(gt: np.ndarray) -> np.ndarray:
    """cyvcf2 ``genotype.array()`` (alleles..., phased) -> int8 ALT dosage, -1 missing."""
    alleles = gt[:, :-1] if gt.shape[1] > 2 else gt[:, :1]
    a0 = alleles[:, 0]
    if alleles.shape[1] == 1:
        haploid = np.ones(len(a0), dtype=bool)
        a1 = a0
    else:
        a1 = alleles[:, 1]
        haploid = a1 == -2  # cyvcf2 pads haploid calls with -2
    missing = (a0 < 0) | ((a1 < 0) & ~haploid)
    dose = np.where(haploid, 2 * (a0 == 1), (a0 == 1).astype(np.int16) + (a1 == 1))
    dose = dose.astype(np.int8)
    dose[missing] = -1
    return dose


def iter_dosages(vcfs: VcfSet, wanted: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(site index, int8 dosages over all samples)`` for sites flagged in ``wanted``.

    Sites come in stream order (``vcfs.sites`` row order); the VCFs are read
    once, record by record, so memory holds one record at a time.
    """
    wanted = np.asarray(wanted, dtype=bool)
    if vcfs.mode == "sites":
        offset = 0
        for path in vcfs.files:
            vcf = _open(path)
            try:
                for i, v in enumerate(vcf, start=offset):
                    if wanted[i]:
                        yield i, dosage_from_gt(v.genotype.array())
                    offset = i + 1
            finally:
                vcf.close()
        return
    readers = [_open(p) for p in vcfs.files]
    try:
        for i, records in enumerate(zip(*readers)):
            if wanted[i]:
                yield i, np.concatenate([dosage_from_gt(v.genotype.array()) for v in records])
    finally:
        for r in readers:
            r.close()
