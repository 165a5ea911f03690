"""Cohort ingestion: any accepted format -> the normalised original layout.

``detect_format`` names a folder's format, ``scan_cohort`` summarises it
cheaply (for a sensor), ``ingest_cohort`` validates, filters and writes the
normalised layout, and ``load_or_compute_pcs`` returns ancestry PCs.

Policies:

* Variants on contigs that map to no modelled chromosome (1-22, X; e.g.
  ``GL000192.1``, ``MT``, ``Y``, PLINK code 0) are skipped and counted per
  contig name; when no variant maps at all the input is an error naming the
  file and the first record. Variants outside every block of the map are
  skipped and counted too. Multiallelic VCF records: see :mod:`.vcf`.
* Block keys come from the build's LD block map before QC, so ``scan_cohort``
  and ``ingest_cohort`` agree and sub-block splits do not move when filters
  change. A block left empty by QC is an error naming the block and counts.
* Atomicity: everything is written into a hidden temporary sibling of
  ``out_dir`` (``.<name>.ingest-*``) that is renamed onto ``out_dir`` at the
  end; an old ``out_dir`` is moved aside first and deleted after. A failed run
  removes its temporary folder, so ``out_dir`` is either absent, the previous
  good ingest, or the new complete one. Two ingests into one ``out_dir`` must
  not run at once (Dagster runs one partition at a time).
* Fingerprint: SHA-256 over every non-hidden file's relative path, size and
  mtime (ns); it reads no file contents, so it is cheap on large cohorts and
  changes whenever a file is rewritten.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Literal

import numpy as np
import pandas as pd

from .. import paths, storage
from .blockmap import assign_blocks, chrom_sort_key, normalize_chrom, read_block_map
from .errors import CohortInputError
from .layout import (
    MANIFEST,
    PHENOTYPES,
    SUBJECTS,
    BlockArray,
    find_eigenvec,
    load_block,
    read_cohort_settings,
    read_eigenvec,
    read_manifest,
    read_phenotypes,
    read_subjects,
    write_cohort,
)
from .pcs import genotype_pcs
from .plink import PlinkFileset, open_plink
from .qc import block_qc, filter_variants
from .vcf import VCF_SUFFIXES, VcfSet, iter_dosages, open_vcfs

__all__ = [
    "CohortScan",
    "IngestReport",
    "detect_format",
    "fingerprint",
    "ingest_cohort",
    "load_or_compute_pcs",
    "scan_cohort",
]

Format = Literal["original", "plink", "vcf"]
VARIANTS = "variants.parquet"
QC = "qc.json"
DEFAULT_BUILD = "hg19"
VARIANT_COLUMNS = ["block_id", "chrom", "pos", "id", "ref", "alt", "source_index"]


@dataclass(frozen=True)
class CohortScan:
    """Cheap summary of a cohort folder.

    ``blocks`` has ``block_id, chrom, start, end, n_snps`` in genomic order;
    ``n_snps`` counts variants before QC. ``skipped`` counts variants left out
    by policy (multiallelic, no ALT, unknown contigs, outside every block).
    """

    folder: Path
    format: Format
    build: str
    n_subjects: int
    blocks: pd.DataFrame
    fingerprint: str
    skipped: dict = field(default_factory=dict)

    @property
    def n_variants(self) -> int:
        return int(self.blocks["n_snps"].sum())


@dataclass(frozen=True)
class IngestReport:
    """What ``ingest_cohort`` wrote and filtered.

    ``blocks`` has one row per block: ``block_id, chrom, start, end, n_in,
    failed_missing, failed_maf, n_monomorphic, n_kept`` and QC of the kept
    variants (``missing_rate, maf_mean, maf_min, maf_max``).
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

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)

    @property
    def n_variants_in(self) -> int:
        return int(self.blocks["n_in"].sum())

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
        }


# ---------------------------------------------------------------- format detection


def _visible_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _vcf_files(folder: Path) -> list[Path]:
    return [p for p in _visible_files(folder) if p.name.lower().endswith(VCF_SUFFIXES)]


def detect_format(folder: str | Path) -> Format:
    """Which input format a cohort folder holds: 'original', 'plink' or 'vcf'.

    Raises
    ------
    CohortInputError
        The folder is missing or empty, holds none of the formats (the message
        lists what it found), or holds more than one.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CohortInputError(folder, "cohort folder does not exist")
    files = _visible_files(folder)
    if not files:
        raise CohortInputError(folder, "empty cohort folder: expected manifest.tsv + blocks/, a PLINK "
                               ".bed/.bim/.fam fileset, or VCF/BCF files")
    found: list[Format] = []
    if (folder / MANIFEST).exists():
        found.append("original")
    if any(p.suffix.lower() == ".bed" for p in files):
        found.append("plink")
    if _vcf_files(folder):
        found.append("vcf")
    if not found:
        names = ", ".join(p.name for p in files[:10])
        raise CohortInputError(folder, f"unrecognised cohort content ({names}); expected manifest.tsv + blocks/, "
                               "a PLINK .bed/.bim/.fam fileset, or .vcf/.vcf.gz/.bcf files")
    if len(found) > 1:
        raise CohortInputError(folder, f"several genotype formats in one folder ({', '.join(found)}); keep one")
    return found[0]


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


# ---------------------------------------------------------------- sources


@dataclass
class _Source:
    """A cohort opened for reading, in any format (internal).

    ``variants`` (PLINK/VCF only) holds the variants that went into blocks, in
    genomic order: ``block_id, chrom, pos, id, ref, alt, source_index``.
    """

    folder: Path
    format: Format
    build: str
    settings: dict
    path: Path  # the file genotype errors name
    subjects: pd.DataFrame  # subject_id (+ fid)
    blocks: pd.DataFrame
    skipped: dict
    variants: pd.DataFrame | None = None
    plink: PlinkFileset | None = None
    vcfs: VcfSet | None = None

    def iter_blocks(self, *, mmap: bool = False) -> Iterator[tuple[pd.Series, np.ndarray, pd.DataFrame]]:
        """Yield ``(block row, int8 genotypes, variants of the block)`` in genomic order."""
        if self.format == "original":
            yield from self._iter_original(mmap)
        elif self.format == "plink":
            for (_, row), (_, var) in zip(self.blocks.iterrows(), self.variants.groupby("block_id", sort=False)):
                yield row, self.plink.read(var["source_index"].to_numpy()), var.drop(columns="_col")
        else:
            yield from self._iter_vcf()

    def _iter_original(self, mmap: bool):
        known = _read_known_variants(self.folder, self.blocks)
        n = len(self.subjects)
        for _, row in self.blocks.iterrows():
            g = load_block(self.folder, row, n, mmap=mmap)
            var = known.get(row["block_id"])
            if var is None:
                var = pd.DataFrame({"block_id": row["block_id"], "chrom": row["chrom"],
                                    "pos": pd.array([pd.NA] * g.shape[1], dtype="Int64"),
                                    "id": "", "ref": "", "alt": "", "source_index": np.arange(g.shape[1])})
            yield row, g, var

    def _iter_vcf(self):
        # Records stream in file order; each goes to its block's buffer, and a
        # block is emitted once all its variants arrived. For sorted input that
        # holds one block at a time.
        var = self.variants
        wanted = np.zeros(len(self.vcfs.sites), dtype=bool)
        wanted[var["source_index"].to_numpy()] = True
        where = dict(zip(var["source_index"].to_numpy(), zip(var["block_id"], var["_col"])))
        groups = {b: v for b, v in var.groupby("block_id", sort=False)}
        rows = {r["block_id"]: r for _, r in self.blocks.iterrows()}
        buffers: dict[str, np.ndarray] = {}
        filled: dict[str, int] = {}
        n = len(self.subjects)
        pending = list(self.blocks["block_id"])
        ready: dict[str, np.ndarray] = {}
        stream = iter_dosages(self.vcfs, wanted)
        site = -1
        while True:
            try:
                site, dose = next(stream)
            except StopIteration:
                break
            except CohortInputError:
                raise
            except Exception as exc:  # htslib errors surface as bare Exceptions
                lines = self.vcfs.sites["line"]
                at = lines.iloc[min(site + 1, len(lines) - 1)]
                raise CohortInputError(self.path, f"cannot read genotypes ({exc})",
                                       where=f"near {self.vcfs.line_unit} {at}") from None
            b, col = where[site]
            if b not in buffers:
                buffers[b] = np.empty((n, len(groups[b])), dtype=np.int8)
                filled[b] = 0
            buffers[b][:, col] = dose
            filled[b] += 1
            if filled[b] == buffers[b].shape[1]:
                ready[b] = buffers.pop(b)
                # emit in genomic order, as soon as the next block is complete
                while pending and pending[0] in ready:
                    done = pending.pop(0)
                    yield rows[done], ready.pop(done), groups[done].drop(columns="_col")
        if pending:  # the files changed between the scan and this read
            raise CohortInputError(self.path, f"block {pending[0]} is incomplete: the VCF changed while it was read")


def _read_known_variants(folder: Path, blocks: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """An earlier ingest's variants.parquet, when it matches the manifest."""
    path = folder / VARIANTS
    if not path.exists():
        return {}
    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise CohortInputError(path, f"not a readable Parquet table ({exc})") from None
    if not set(VARIANT_COLUMNS) <= set(table.columns):
        return {}
    known = {b: v.reset_index(drop=True) for b, v in table[VARIANT_COLUMNS].groupby("block_id", sort=False)}
    expected = dict(zip(blocks["block_id"], blocks["n_snps"]))
    if {b: len(v) for b, v in known.items()} != expected:
        return {}  # stale: positions would not line up with the matrices
    return known


def _build(folder: Path, settings: dict) -> str:
    build = str(settings.get("build", DEFAULT_BUILD))
    if build not in paths.BLOCK_MAPS:
        raise CohortInputError(folder / "cohort.json", f"unknown genome build {build!r}; expected one of "
                               f"{sorted(paths.BLOCK_MAPS)}", where="key 'build'")
    return build


def _open_source(folder: Path, max_variants_per_block: int) -> _Source:
    fmt = detect_format(folder)
    settings = read_cohort_settings(folder)
    build = _build(folder, settings)
    common = dict(folder=folder, format=fmt, build=build, settings=settings)
    if fmt == "original":
        manifest = read_manifest(folder)
        subject_ids = read_subjects(folder)
        subjects = pd.read_csv(folder / SUBJECTS, sep="\t", dtype=str, keep_default_na=False)
        subjects = pd.DataFrame({"subject_id": subject_ids}) if "fid" not in subjects else \
            pd.DataFrame({"subject_id": subject_ids, "fid": subjects["fid"].to_numpy()})
        return _Source(**common, path=folder / MANIFEST, subjects=subjects,
                       blocks=manifest[["block_id", "chrom", "start", "end", "n_snps", "file"]], skipped={})
    block_map = read_block_map(paths.block_map_path(build))
    if fmt == "plink":
        beds = [p for p in _visible_files(folder) if p.suffix.lower() == ".bed"]
        if len(beds) > 1:
            raise CohortInputError(folder, f"several .bed files ({[p.name for p in beds]}); keep one fileset")
        plink = open_plink(beds[0])
        bim = plink.variants
        sites = pd.DataFrame({"chrom": bim["chrom"], "pos": bim["pos"], "id": bim["id"], "ref": bim["ref"],
                              "alt": bim["alt"], "status": "ok", "line": np.arange(1, len(bim) + 1)})
        variants, blocks, skipped = _assign(sites, block_map, max_variants_per_block,
                                           plink.bed.with_suffix(".bim"))
        return _Source(**common, path=plink.bed, subjects=plink.subjects, blocks=blocks, skipped=skipped,
                       variants=variants, plink=plink)
    files = _vcf_files(folder)
    vcfs = open_vcfs(files)
    label = files[0] if len(files) == 1 else folder
    variants, blocks, skipped = _assign(vcfs.sites, block_map, max_variants_per_block, label, vcfs.line_unit)
    return _Source(**common, path=label, subjects=pd.DataFrame({"subject_id": vcfs.samples}), blocks=blocks,
                   skipped=skipped, variants=variants, vcfs=vcfs)


def _assign(sites: pd.DataFrame, block_map: pd.DataFrame, max_variants: int, path: Path, unit: str = "line"):
    """Map sites to blocks; return (variants in genomic order, blocks, skipped counts).

    ``unit`` says what ``sites['line']`` counts ('line' or, for BCF, 'record').
    """
    skipped: dict = {}
    for status in ("multiallelic", "no_alt"):
        n_status = int((sites["status"] == status).sum())
        if n_status:
            skipped[status] = n_status
    ok = sites["status"].to_numpy() == "ok"
    raw = sites["chrom"].astype(str)
    mapping = {c: normalize_chrom(c) for c in raw.unique()}
    chrom = raw.map(mapping)
    unknown = ok & chrom.isna().to_numpy()
    if unknown.any():
        skipped["unknown_contig"] = {str(k): int(v) for k, v in raw[unknown].value_counts().items()}
    usable = ok & ~unknown
    if not usable.any():
        first = sites.iloc[int(np.flatnonzero(ok)[0])] if ok.any() else sites.iloc[0] if len(sites) else None
        if first is None:
            raise CohortInputError(path, "no variant records found")
        if not ok.any():
            raise CohortInputError(path, f"no usable variant: all {len(sites)} records skipped {skipped}",
                                   where=f"{unit} {first['line']}")
        raise CohortInputError(path, f"no variant on a chromosome we can map: contig {first['chrom']!r} "
                               "(expected 1-22 or X, with or without 'chr'; PLINK codes 23/25 for X)",
                               where=f"{unit} {first['line']} (variant {first['id'] or first['pos']})")
    idx = np.flatnonzero(usable)
    c = chrom.to_numpy()[idx].astype(str)
    pos = sites["pos"].to_numpy()[idx]
    order = np.lexsort((pos, np.array([chrom_sort_key(x) for x in c])))
    idx, c, pos = idx[order], c[order], pos[order]
    ids = assign_blocks(c, pos, block_map, max_variants=max_variants)
    inside = ids != ""
    if (~inside).any():
        skipped["outside_blocks"] = int((~inside).sum())
    if not inside.any():
        raise CohortInputError(path, f"none of the {len(idx)} usable variants falls inside a block of the map "
                               f"(is the genome build right?)", where=f"{unit} {sites['line'].iloc[idx[0]]}")
    sel = idx[inside]
    variants = pd.DataFrame({
        "block_id": ids[inside].astype(str), "chrom": c[inside], "pos": pos[inside],
        "id": sites["id"].to_numpy()[sel], "ref": sites["ref"].to_numpy()[sel],
        "alt": sites["alt"].to_numpy()[sel], "source_index": sel,
    })
    variants["_col"] = variants.groupby("block_id", sort=False).cumcount()
    return variants, _block_table(variants, block_map), skipped


def _block_table(variants: pd.DataFrame, block_map: pd.DataFrame) -> pd.DataFrame:
    """One row per (sub-)block; sub-blocks tile their parent block contiguously."""
    spans = block_map.set_index("block_id")
    rows = []
    grouped = list(variants.groupby("block_id", sort=False))
    for i, (b, v) in enumerate(grouped):
        parent, _, sub = b.partition("_s")
        start, end = int(spans.at[parent, "start"]), int(spans.at[parent, "end"])
        if sub:
            if sub != "1":
                start = int(v["pos"].iloc[0])
            nxt = grouped[i + 1] if i + 1 < len(grouped) else None
            if nxt is not None and nxt[0].partition("_s")[0] == parent:
                end = int(nxt[1]["pos"].iloc[0])
        rows.append((b, v["chrom"].iloc[0], start, end, len(v)))
    return pd.DataFrame(rows, columns=["block_id", "chrom", "start", "end", "n_snps"])


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
                      fingerprint=fingerprint(folder), skipped=src.skipped)


def _tables(src: _Source, log: Callable[[str], object]) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    ids = list(src.subjects["subject_id"])
    pheno_path = src.folder / PHENOTYPES
    phenotypes = read_phenotypes(pheno_path, ids) if pheno_path.exists() else None
    if phenotypes is None:
        log(f"no {PHENOTYPES} in {src.folder}: ingesting genotypes only")
    eig_path = find_eigenvec(src.folder)
    eigenvec = read_eigenvec(eig_path, ids) if eig_path is not None else None
    return phenotypes, eigenvec


def ingest_cohort(
    folder: str | Path,
    out_dir: str | Path,
    *,
    maf_min: float = 0.01,
    max_missing: float = 0.1,
    max_variants_per_block: int = 2000,
    log: Callable[[str], object] = print,
) -> IngestReport:
    """Validate a cohort in any format and write it in the normalised layout.

    Parameters
    ----------
    folder
        Cohort folder: original layout, PLINK fileset or VCF/BCF file(s), with
        optional ``phenotypes.csv``, ``*.eigenvec`` and ``cohort.json``.
    out_dir
        Destination; replaced as a whole at the end (see module notes).
    maf_min, max_missing
        Variant filters (see :func:`.qc.filter_variants`), counted per block.
    max_variants_per_block
        Sub-block split threshold (before filtering).
    log
        Progress messages (one per block).

    Returns
    -------
    IngestReport

    Raises
    ------
    CohortInputError
        Any malformed input, a block with no variant left after filtering, or
        a phenotype/eigenvec table lacking genotyped subjects.
    """
    t0 = time.perf_counter()
    folder, out_dir = Path(folder), Path(out_dir)
    src = _open_source(folder, max_variants_per_block)
    phenotypes, eigenvec = _tables(src, log)
    n_subjects = len(src.subjects)
    n_blocks = len(src.blocks)
    log(f"ingesting {folder.name}: {src.format}, build {src.build}, {n_subjects} subjects, {n_blocks} blocks")
    rows: list[dict] = []
    kept_variants: list[pd.DataFrame] = []
    subject_missing = np.zeros(n_subjects, dtype=np.int64)

    def blocks() -> Iterator[BlockArray]:
        for i, (row, g, var) in enumerate(src.iter_blocks(), start=1):
            keep, counts = filter_variants(g, maf_min=maf_min, max_missing=max_missing)
            if counts["n_kept"] == 0:
                bad = src.folder / row["file"] if src.format == "original" else src.path
                raise CohortInputError(bad, f"no variant left after QC (maf >= {maf_min}, missing <= {max_missing}): "
                                       f"{counts}", where=f"block {row['block_id']}")
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
        settings = {**src.settings, "build": src.build, "source_format": src.format, "source": str(folder)}
        write_cohort(tmp, src.subjects["subject_id"], blocks(), phenotypes=phenotypes, eigenvec=eigenvec,
                     settings=settings, fids=src.subjects["fid"] if "fid" in src.subjects else None)
        variants = pd.concat(kept_variants, ignore_index=True)[VARIANT_COLUMNS]
        variants["pos"] = variants["pos"].astype("Int64")
        storage.write_parquet(tmp / VARIANTS, variants)
        table = pd.DataFrame(rows)
        subject_rate = subject_missing / max(len(variants), 1)
        fp = fingerprint(folder)
        storage.write_json(tmp / QC, {
            "format": src.format, "build": src.build, "source": str(folder), "fingerprint": fp,
            "maf_min": maf_min, "max_missing": max_missing, "max_variants_per_block": max_variants_per_block,
            "n_subjects": n_subjects, "skipped": src.skipped,
            "subject_missing_rate_max": float(subject_rate.max()) if n_subjects else 0.0,
            "n_subjects_missing_over_half": int((subject_rate > 0.5).sum()),
            "blocks": table.to_dict(orient="records"),
        })
        _swap_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - t0
    log(f"ingested {folder.name}: {len(table)} blocks, {len(variants)}/{int(table['n_in'].sum())} variants kept "
        f"in {seconds:.1f}s -> {out_dir}")
    return IngestReport(out_dir=out_dir, format=src.format, build=src.build, n_subjects=n_subjects, blocks=table,
                        skipped=src.skipped, has_phenotypes=phenotypes is not None,
                        has_eigenvec=eigenvec is not None, fingerprint=fp, seconds=seconds)


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


def load_or_compute_pcs(
    folder: str | Path,
    *,
    n_pcs: int = 10,
    seed: int = 0,
    maf_min: float = 0.01,
    max_variants: int = 20_000,
    max_variants_per_block: int = 2000,
) -> pd.DataFrame:
    """Ancestry PCs of a cohort: its ``.eigenvec`` if it has one, else computed.

    Parameters
    ----------
    folder
        A cohort folder in any format, typically the ingested ``input/`` folder.
    n_pcs, seed, maf_min, max_variants
        Passed to :func:`.pcs.genotype_pcs` when computing; a given eigenvec
        keeps its first ``n_pcs`` columns.

    Returns
    -------
    pandas.DataFrame
        ``subject_id, PC1..PCk`` in the cohort's subject order (k <= n_pcs);
        ``attrs['source']`` is ``'eigenvec'`` or ``'computed'``.
    """
    folder = Path(folder)
    src = _open_source(folder, max_variants_per_block)
    ids = list(src.subjects["subject_id"])
    eig_path = find_eigenvec(folder)
    if eig_path is not None:
        pcs = read_eigenvec(eig_path, ids)
        pcs = pcs[["subject_id"] + [c for c in pcs.columns if c != "subject_id"][:n_pcs]]
        pcs.attrs["source"] = "eigenvec"
        return pcs
    genotypes = (g for _, g, _ in src.iter_blocks(mmap=True))
    pcs = genotype_pcs(genotypes, ids, n_pcs=n_pcs, seed=seed, maf_min=maf_min, max_variants=max_variants)
    pcs.attrs["source"] = "computed"
    return pcs
