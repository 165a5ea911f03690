"""Cohort ingestion: any accepted format -> the normalised original layout.

``detect_format`` names a folder's format, ``scan_cohort`` summarises it
cheaply (for a sensor), ``ingest_cohort`` validates, filters and writes the
normalised layout, and ``load_or_compute_pcs`` returns ancestry PCs. Opening
a folder (readers per format) lives in :mod:`.sources`, block assignment and
sub-block splitting in :mod:`.assign`; ``detect_format`` is re-exported here.

Policies:

* Variants on contigs that map to no modelled chromosome (1-22, X; e.g.
  ``GL000192.1``, ``MT``, ``Y``, PLINK code 0) are skipped and counted per
  contig name; when no variant maps at all the input is an error naming the
  file and the first record. Variants outside every block of the map are
  skipped and counted too, unless ``cover_gaps`` puts them in gap blocks
  (``genoembed impute``: an imputation returns every variant). Multiallelic VCF records: see :mod:`.vcf`.
* Block keys come from the build's LD block map before QC, so ``scan_cohort``
  and ``ingest_cohort`` agree and sub-block splits do not move when filters
  change.
* Degrade, don't stop: a block with no variant left after QC (monomorphic,
  all missing, everything filtered) is left out of the ingested manifest and
  recorded in ``skipped_blocks`` (``{block_id, reason}``; qc.json and the
  report); the cohort fails only when no block is left, naming the file and
  the first block. Genotyped subjects a phenotype table lacks are kept with
  missing traits and counted (``phenotypes`` in qc.json); no phenotype table
  at all ingests the genotypes only. See :mod:`.phenotype_tables`.
* Subject order: recorded as ``subject_order_source`` (the file whose rows
  give it); for the original layout see :mod:`.subject_order`.
* Atomicity: everything is written into a hidden temporary sibling of
  ``out_dir`` (``.<name>.ingest-*``) that is renamed onto ``out_dir`` at the
  end; an old ``out_dir`` is moved aside first and deleted after. A failed run
  removes its temporary folder, so ``out_dir`` is either absent, the previous
  good ingest, or the new complete one. Two ingests into one ``out_dir`` must
  not run at once (Dagster runs one partition at a time).
* Ingest record: ``ingest_record.tsv`` gives each block file's size, mtime
  and SHA-256, hashed once as it is written, so Phase 1's resume check reads
  no block contents (see :mod:`.ingest_record`). The folder swap keeps mtimes.
* Fingerprint: SHA-256 over every non-hidden file's relative path, size and
  mtime (ns); it reads no file contents, so it is cheap on large cohorts and
  changes whenever a file is rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from .. import storage
from .errors import CohortInputError
from .layout import BlockArray, find_eigenvec, read_eigenvec, write_cohort
from .phenotype_tables import load_phenotypes
from .qc import block_qc, filter_variants
from .sources import VARIANT_COLUMNS, VARIANTS, Format, Source, detect_format
from .sources import open_source as _open_source
from .ancestry import load_or_compute_pcs  # re-exported: callers import it from here

__all__ = [
    "CohortScan",
    "IngestReport",
    "detect_format",
    "fingerprint",
    "ingest_cohort",
    "load_or_compute_pcs",
    "scan_cohort",
    "skipped_blocks",
]

QC = "qc.json"


@dataclass(frozen=True)
class CohortScan:
    """Cheap summary of a cohort folder.

    ``blocks`` has ``block_id, chrom, start, end, n_snps`` in genomic order;
    ``n_snps`` counts variants before QC. ``skipped`` counts variants left out
    by policy (multiallelic, no ALT, unknown contigs, outside every block).
    ``subject_order_source`` names the file that gives the subject order.
    """

    folder: Path
    format: Format
    build: str
    n_subjects: int
    blocks: pd.DataFrame
    fingerprint: str
    skipped: dict = field(default_factory=dict)
    subject_order_source: str = ""

    @property
    def n_variants(self) -> int:
        return int(self.blocks["n_snps"].sum())


@dataclass(frozen=True)
class IngestReport:
    """What ``ingest_cohort`` wrote and filtered.

    ``blocks`` has one row per block: ``block_id, chrom, start, end, n_in,
    failed_missing, failed_maf, n_monomorphic, n_kept`` and QC of the kept
    variants (``missing_rate, maf_mean, maf_min, maf_max``); blocks QC left
    empty are not in it but in ``skipped_blocks`` (``{block_id, reason}``).
    ``subject_order_source`` names the file that gave the subject order;
    ``phenotypes`` summarises the phenotype tables (``files`` is empty for a
    genotype-only cohort; see :func:`.phenotype_tables.load_phenotypes`).
    """

    out_dir: Path
    format: Format
    build: str
    n_subjects: int
    blocks: pd.DataFrame
    skipped: dict
    has_phenotypes: bool
    has_eigenvec: bool
    fingerprint: str
    seconds: float
    subject_order_source: str = ""
    skipped_blocks: list = field(default_factory=list)
    phenotypes: dict = field(default_factory=dict)
    n_variants_in_skipped_blocks: int = 0

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)

    @property
    def n_variants_in(self) -> int:
        return int(self.blocks["n_in"].sum()) + self.n_variants_in_skipped_blocks

    @property
    def n_variants_kept(self) -> int:
        return int(self.blocks["n_kept"].sum())

    def summary(self) -> dict:
        """Flat JSON-ready numbers, e.g. for Dagster metadata."""
        return {
            "format": self.format, "build": self.build, "n_subjects": self.n_subjects,
            "n_blocks": self.n_blocks, "n_variants_in": self.n_variants_in,
            "n_variants_kept": self.n_variants_kept, "has_phenotypes": self.has_phenotypes,
            "has_eigenvec": self.has_eigenvec, "fingerprint": self.fingerprint,
            "seconds": round(self.seconds, 3), "skipped": self.skipped,
            "subject_order_source": self.subject_order_source, "skipped_blocks": self.skipped_blocks,
            "phenotypes": self.phenotypes,
        }


def fingerprint(folder: str | Path) -> str:
    """SHA-256 of every non-hidden file's relative path, size and mtime_ns (no contents read)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(root) / name
            st = path.stat()
            digest.update(f"{path.relative_to(folder).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


# ---------------------------------------------------------------- public API


def scan_cohort(folder: str | Path, *, max_variants_per_block: int = 2000) -> CohortScan:
    """Summarise a cohort folder without reading genotypes.

    Parameters
    ----------
    folder
        A cohort folder in any accepted format.
    max_variants_per_block
        Blocks with more variants are split into contiguous sub-blocks
        (PLINK/VCF only; the original layout keeps its manifest's blocks).

    Returns
    -------
    CohortScan
        Format, build (cohort.json ``build``, default hg19), subject count,
        blocks (``block_id, chrom, start, end, n_snps``) in genomic order, a
        fingerprint (see :func:`fingerprint`) and skipped-variant counts.
        For VCF the scan reads every record's site (no genotypes).
    """
    folder = Path(folder)
    src = _open_source(folder, max_variants_per_block)
    return CohortScan(folder=folder, format=src.format, build=src.build, n_subjects=len(src.subjects),
                      blocks=src.blocks[["block_id", "chrom", "start", "end", "n_snps"]].reset_index(drop=True),
                      fingerprint=fingerprint(folder), skipped=src.skipped,
                      subject_order_source=src.subject_order_source)


def _tables(src: Source, log: Callable[[str], object]) -> tuple[pd.DataFrame | None, dict, pd.DataFrame | None]:
    ids = list(src.subjects["subject_id"])
    phenotypes, info = load_phenotypes(src.folder, ids, src.settings)
    if phenotypes is None:
        log(f"no phenotype table in {src.folder}: ingesting genotypes only")
    elif info["n_subjects_missing"] or info["n_rows_not_genotyped"]:
        log(f"phenotypes ({', '.join(info['files'])}): {info['n_subjects_missing']} genotyped subject(s) without a "
            f"row kept with missing traits, {info['n_rows_not_genotyped']} row(s) without genotypes dropped")
    eig_path = find_eigenvec(src.folder)
    eigenvec = read_eigenvec(eig_path, ids) if eig_path is not None else None
    return phenotypes, info, eigenvec


def _empty_reason(counts: dict, maf_min: float, max_missing: float) -> str:
    return (f"no variant left after QC (maf >= {maf_min}, missing <= {max_missing}): {counts['n_in']} in, "
            f"{counts['failed_missing']} failed missing, {counts['failed_maf']} failed maf "
            f"({counts['n_monomorphic']} monomorphic)")


def ingest_cohort(
    folder: str | Path,
    out_dir: str | Path,
    *,
    maf_min: float = 0.01,
    max_missing: float = 0.1,
    max_variants_per_block: int = 2000,
    cover_gaps: bool = False,
    log: Callable[[str], object] = print,
) -> IngestReport:
    """Validate a cohort in any format and write it in the normalised layout.

    Parameters
    ----------
    folder
        Cohort folder: original layout, PLINK 1 or 2 fileset or VCF/BCF
        file(s), with optional phenotype tables (``phenotypes.csv``/``.tsv``,
        ``*.pheno``, ``*.cov``), ``*.eigenvec`` and ``cohort.json``.
    out_dir
        Destination; replaced as a whole at the end (see module notes).
    maf_min, max_missing
        Variant filters (see :func:`.qc.filter_variants`), counted per block.
    max_variants_per_block
        Sub-block split threshold (before filtering).
    cover_gaps
        Keep variants outside the LD block map's blocks, in gap blocks
        ``chr{chrom}_g{index}`` (:func:`.blockmap.with_gaps`), instead of
        skipping them (``genoembed impute`` returns every variant it was given).
    log
        Progress messages (one per block).

    Returns
    -------
    IngestReport

    Raises
    ------
    CohortInputError
        Any malformed input, no block left after filtering, a phenotype table
        sharing no subject with the genotypes, or an eigenvec table lacking
        genotyped subjects.
    """
    t0 = time.perf_counter()
    folder, out_dir = Path(folder), Path(out_dir)
    src = _open_source(folder, max_variants_per_block, cover_gaps)
    phenotypes, pheno_info, eigenvec = _tables(src, log)
    n_subjects = len(src.subjects)
    n_blocks = len(src.blocks)
    log(f"ingesting {folder.name}: {src.format}, build {src.build}, {n_subjects} subjects (order from "
        f"{src.subject_order_source}), {n_blocks} blocks")
    rows: list[dict] = []
    skipped_blocks: list[dict] = []
    skipped_counts: list[dict] = []
    kept_variants: list[pd.DataFrame] = []
    subject_missing = np.zeros(n_subjects, dtype=np.int64)

    def blocks() -> Iterator[BlockArray]:
        for i, (row, g, var) in enumerate(src.iter_blocks(), start=1):
            keep, counts = filter_variants(g, maf_min=maf_min, max_missing=max_missing)
            if counts["n_kept"] == 0:
                reason = _empty_reason(counts, maf_min, max_missing)
                skipped_blocks.append({"block_id": row["block_id"], "reason": reason})
                skipped_counts.append(counts)
                log(f"block {i}/{n_blocks} {row['block_id']}: skipped, {reason}")
                continue
            g = g[:, keep]
            subject_missing[:] += (g < 0).sum(axis=1)
            qc = block_qc(g)
            rows.append({"block_id": row["block_id"], "chrom": row["chrom"], "start": int(row["start"]),
                         "end": int(row["end"]), **counts,
                         **{k: qc[k] for k in ("missing_rate", "maf_mean", "maf_min", "maf_max")}})
            kept_variants.append(var[keep].assign(block_id=row["block_id"]))
            log(f"block {i}/{n_blocks} {row['block_id']}: kept {counts['n_kept']}/{counts['n_in']} "
                f"(missing {counts['failed_missing']}, maf {counts['failed_maf']})")
            yield BlockArray(row["block_id"], row["chrom"], int(row["start"]), int(row["end"]), g)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.ingest-", dir=out_dir.parent))
    try:
        # the ingested folder is the original layout with phenotypes.csv: a format or table choice no longer applies
        settings = {**{k: v for k, v in src.settings.items() if k not in ("format", "phenotypes")},
                    "build": src.build, "source_format": src.format, "source": str(folder)}
        write_cohort(tmp, src.subjects["subject_id"], blocks(), phenotypes=phenotypes, eigenvec=eigenvec,
                     settings=settings, fids=src.subjects["fid"] if "fid" in src.subjects else None, record=True)
        if not rows:
            first = skipped_blocks[0]["block_id"]
            bad = src.folder / src.blocks["file"].iloc[0] if src.format == "original" else src.path
            raise CohortInputError(bad, f"no block left after QC: all {len(skipped_blocks)} block(s) empty, e.g. "
                                   f"{skipped_counts[0]}; relax maf_min/max_missing or check the genotypes",
                                   where=f"block {first}")
        variants = pd.concat(kept_variants, ignore_index=True)[VARIANT_COLUMNS]
        variants["pos"] = variants["pos"].astype("Int64")
        storage.write_parquet(tmp / VARIANTS, variants)
        table = pd.DataFrame(rows)
        subject_rate = subject_missing / max(len(variants), 1)
        fp = fingerprint(folder)
        storage.write_json(tmp / QC, {
            "format": src.format, "build": src.build, "source": str(folder), "fingerprint": fp,
            "maf_min": maf_min, "max_missing": max_missing, "max_variants_per_block": max_variants_per_block,
            "cover_gaps": cover_gaps, "n_subjects": n_subjects, "subject_order_source": src.subject_order_source,
            "skipped": src.skipped,
            "skipped_blocks": skipped_blocks, "phenotypes": pheno_info,
            "subject_missing_rate_max": float(subject_rate.max()) if n_subjects else 0.0,
            "n_subjects_missing_over_half": int((subject_rate > 0.5).sum()),
            "blocks": table.to_dict(orient="records"),
        })
        _swap_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - t0
    n_in_skipped = sum(c["n_in"] for c in skipped_counts)
    log(f"ingested {folder.name}: {len(table)} blocks ({len(skipped_blocks)} skipped), {len(variants)}/"
        f"{int(table['n_in'].sum()) + n_in_skipped} variants kept in {seconds:.1f}s -> {out_dir}")
    return IngestReport(out_dir=out_dir, format=src.format, build=src.build, n_subjects=n_subjects, blocks=table,
                        skipped=src.skipped, has_phenotypes=phenotypes is not None,
                        has_eigenvec=eigenvec is not None, fingerprint=fp, seconds=seconds,
                        subject_order_source=src.subject_order_source, skipped_blocks=skipped_blocks,
                        phenotypes=pheno_info, n_variants_in_skipped_blocks=n_in_skipped)


def skipped_blocks(folder: str | Path) -> dict[str, str]:
    """``block_id -> reason`` of the blocks an ingest left out (qc.json ``skipped_blocks``); {} when none."""
    path = Path(folder) / QC
    if not path.exists():
        return {}
    return {b["block_id"]: b["reason"] for b in json.loads(path.read_text()).get("skipped_blocks", [])}


def _remove_stale(out_dir: Path) -> None:
    """Delete temporary siblings a killed ingest left behind (never trusted)."""
    for stale in out_dir.parent.glob(f".{out_dir.name}.ingest-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise CohortInputError(out_dir, "output path exists and is not a folder")
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.ingest-old-", dir=out_dir.parent))
        os.replace(out_dir, old / out_dir.name)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out_dir)
