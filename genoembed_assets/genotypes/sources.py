"""Opening a cohort folder in any accepted format, for scanning and ingesting.

``detect_format`` names what a folder holds; ``open_source`` parses its
tables, maps PLINK/VCF sites to blocks (:mod:`.assign`) and returns a
:class:`Source` whose ``iter_blocks`` yields int8 genotypes block by block in
genomic order. Genotypes are read only by ``iter_blocks``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import pandas as pd

from .. import paths
from .assign import assign_sites
from .blockmap import read_block_map
from .errors import CohortInputError
from .layout import MANIFEST, SUBJECTS, load_block, read_cohort_settings, read_manifest, read_subjects
from .plink import PlinkFileset, open_plink
from .vcf import VCF_SUFFIXES, VcfSet, iter_dosages, open_vcfs

__all__ = ["DEFAULT_BUILD", "Format", "Source", "VARIANTS", "VARIANT_COLUMNS", "detect_format", "open_source"]

Format = Literal["original", "plink", "vcf"]
VARIANTS = "variants.parquet"
DEFAULT_BUILD = "hg19"
VARIANT_COLUMNS = ["block_id", "chrom", "pos", "id", "ref", "alt", "source_index"]


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


@dataclass
class Source:
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


def open_source(folder: Path, max_variants_per_block: int) -> Source:
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
        return Source(**common, path=folder / MANIFEST, subjects=subjects,
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
        variants, blocks, skipped = assign_sites(sites, block_map, max_variants_per_block,
                                           plink.bed.with_suffix(".bim"))
        return Source(**common, path=plink.bed, subjects=plink.subjects, blocks=blocks, skipped=skipped,
                       variants=variants, plink=plink)
    files = _vcf_files(folder)
    vcfs = open_vcfs(files)
    label = files[0] if len(files) == 1 else folder
    variants, blocks, skipped = assign_sites(vcfs.sites, block_map, max_variants_per_block, label, vcfs.line_unit)
    return Source(**common, path=label, subjects=pd.DataFrame({"subject_id": vcfs.samples}), blocks=blocks,
                   skipped=skipped, variants=variants, vcfs=vcfs)
