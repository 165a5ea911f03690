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
from .blockmap import read_block_map, with_gaps
from .errors import CohortInputError
from .layout import MANIFEST, SETTINGS, load_block, read_cohort_settings, read_manifest
from .pgen import PgenFileset, open_pgen
from .plink import PlinkFileset, open_plink
from .subject_order import subject_order
from .vcf import VCF_SUFFIXES, VcfSet, iter_dosages, open_vcfs

__all__ = ["DEFAULT_BUILD", "ENTRY_SUFFIXES", "Format", "Source", "VARIANTS", "VARIANT_COLUMNS", "detect_format",
           "open_source"]

Format = Literal["original", "plink", "plink2", "vcf"]
VARIANTS = "variants.parquet"
DEFAULT_BUILD = "hg19"
VARIANT_COLUMNS = ["block_id", "chrom", "pos", "id", "ref", "alt", "source_index"]
# a file with one of these endings (or a manifest.tsv) means the folder holds genotypes
ENTRY_SUFFIXES = (".bed", ".pgen") + VCF_SUFFIXES


def _visible_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _vcf_files(folder: Path) -> list[Path]:
    return [p for p in _visible_files(folder) if p.name.lower().endswith(VCF_SUFFIXES)]


_ENTRIES = {"original": f"{MANIFEST} + .npy blocks", "plink": "PLINK .bed/.bim/.fam fileset",
            "plink2": "PLINK 2 .pgen/.pvar/.psam fileset", "vcf": ".vcf/.vcf.gz/.bcf files"}
_FORMAT_NAMES = {"npy": "original", "original": "original", "plink": "plink", "plink1": "plink", "bed": "plink",
                 "plink2": "plink2", "pgen": "plink2", "vcf": "vcf", "bcf": "vcf"}
_EXPECTED = ", ".join(_ENTRIES.values())


def _found_formats(folder: Path, files: list[Path]) -> dict[Format, str]:
    """Each format present -> the file that shows it."""
    found: dict[Format, str] = {}
    if (folder / MANIFEST).exists():
        found["original"] = MANIFEST
    for fmt, suffix in (("plink", ".bed"), ("plink2", ".pgen")):
        hits = [p.name for p in files if p.suffix.lower() == suffix]
        if hits:
            found[fmt] = hits[0]
    vcfs = _vcf_files(folder)
    if vcfs:
        found["vcf"] = vcfs[0].name
    return found


def detect_format(folder: str | Path) -> Format:
    """Which input format a cohort folder holds: 'original', 'plink', 'plink2' or 'vcf'.

    A folder holding several takes the one ``cohort.json`` names as
    ``{"format": "npy" | "plink" | "plink2" | "vcf"}``.

    Raises
    ------
    CohortInputError
        The folder is missing or empty, holds none of the formats (the message
        lists what it found), holds several and cohort.json names none, or
        cohort.json names one it does not hold.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CohortInputError(folder, "cohort folder does not exist")
    files = _visible_files(folder)
    if not files:
        raise CohortInputError(folder, f"empty cohort folder: expected {_EXPECTED}")
    found = _found_formats(folder, files)
    if not found:
        names = ", ".join(p.name for p in files[:10])
        raise CohortInputError(folder, f"unrecognised cohort content ({names}); expected {_EXPECTED}")
    chosen = read_cohort_settings(folder).get("format")
    if chosen is not None:
        fmt = _FORMAT_NAMES.get(str(chosen).lower())
        if fmt is None:
            raise CohortInputError(folder / SETTINGS, f"unknown format {chosen!r}; expected one of npy, plink, "
                                   "plink2, vcf", where="key 'format'")
        if fmt not in found:
            raise CohortInputError(folder / SETTINGS, f"names format {chosen!r} but the folder holds no "
                                   f"{_ENTRIES[fmt]} (found: {', '.join(f'{k} ({v})' for k, v in found.items())})",
                                   where="key 'format'")
        return fmt
    if len(found) > 1:
        listed = ", ".join(f"{k} ({v})" for k, v in found.items())
        choice = " or ".join(f'{{"format": "{"npy" if k == "original" else k}"}}' for k in found)
        raise CohortInputError(folder, f"several genotype formats in one folder: {listed}; name the one to use in "
                               f"cohort.json, {choice}, or keep one")
    return next(iter(found))


@dataclass
class Source:
    """A cohort opened for reading, in any format (internal).

    ``variants`` (PLINK/pgen/VCF only) holds the variants that went into
    blocks, in genomic order: ``block_id, chrom, pos, id, ref, alt,
    source_index``. ``subject_order_source`` names the file whose rows give the
    subject order (``subjects.tsv``, a ``.fam``, ``.psam``, ``.eigenvec`` or
    the VCF).
    """

    folder: Path
    format: Format
    build: str
    settings: dict
    path: Path  # the file genotype errors name
    subjects: pd.DataFrame  # subject_id (+ fid)
    blocks: pd.DataFrame
    skipped: dict
    subject_order_source: str
    variants: pd.DataFrame | None = None
    plink: PlinkFileset | PgenFileset | None = None  # anything with read(.bim/.pvar rows)
    vcfs: VcfSet | None = None

    def iter_blocks(self, *, mmap: bool = False) -> Iterator[tuple[pd.Series, np.ndarray, pd.DataFrame]]:
        """Yield ``(block row, int8 genotypes, variants of the block)`` in genomic order."""
        if self.format == "original":
            yield from self._iter_original(mmap)
        elif self.format in ("plink", "plink2"):
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
                problem = (f"cannot read genotypes ({exc})" if "couldn't get genotypes" not in str(exc) else
                           "no GT in this record: genoembed reads hard calls (FORMAT GT); hard-call a dosage-only "
                           "VCF first, e.g. `plink2 --vcf FILE dosage=DS --export vcf`")
                raise CohortInputError(self.path, problem, where=f"near {self.vcfs.line_unit} {at}") from None
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


def _one(folder: Path, suffix: str, what: str) -> Path:
    found = [p for p in _visible_files(folder) if p.suffix.lower() == suffix]
    if len(found) > 1:
        raise CohortInputError(folder, f"several {suffix} files ({', '.join(p.name for p in found)}); keep one {what}")
    return found[0]


def _first_block_rows(folder: Path, manifest: pd.DataFrame) -> tuple[int | None, Path | None]:
    path = folder / manifest["file"].iloc[0]
    try:
        return int(np.load(path, mmap_mode="r", allow_pickle=False).shape[0]), path
    except (OSError, ValueError, EOFError, IndexError):
        return None, None  # load_block reports it, naming the block


def _file_sites(variants: pd.DataFrame) -> pd.DataFrame:
    """.bim-style variants -> the sites table assign_sites takes."""
    return pd.DataFrame({"chrom": variants["chrom"], "pos": variants["pos"], "id": variants["id"],
                         "ref": variants["ref"], "alt": variants["alt"], "status": "ok",
                         "line": np.arange(1, len(variants) + 1)})


def open_source(folder: Path, max_variants_per_block: int, cover_gaps: bool = False) -> Source:
    """Open a cohort folder: tables parsed, sites assigned to blocks, no genotypes read.

    ``cover_gaps``: variants outside the LD block map's blocks go to gap blocks
    (:func:`.blockmap.with_gaps`) instead of being skipped; the original layout
    has its own blocks and ignores it.
    """
    fmt = detect_format(folder)
    settings = read_cohort_settings(folder)
    build = _build(folder, settings)
    common = dict(folder=folder, format=fmt, build=build, settings=settings)
    if fmt == "original":
        manifest = read_manifest(folder)
        order = subject_order(folder, *_first_block_rows(folder, manifest))
        return Source(**common, path=folder / MANIFEST, subjects=order.subjects, subject_order_source=order.label,
                      blocks=manifest[["block_id", "chrom", "start", "end", "n_snps", "file"]], skipped={})
    block_map = read_block_map(paths.block_map_path(build))
    if cover_gaps:
        block_map = with_gaps(block_map)
    if fmt in ("plink", "plink2"):
        if fmt == "plink":
            fileset = open_plink(_one(folder, ".bed", "fileset"))
            path, sites, listing = fileset.bed, _file_sites(fileset.variants), fileset.bed.with_suffix(".bim")
            order = fileset.bed.with_suffix(".fam").name
        else:
            fileset = open_pgen(_one(folder, ".pgen", "fileset"))
            path, sites, listing = fileset.pgen, fileset.variants, fileset.pgen.with_suffix(".pvar")
            order = fileset.pgen.with_suffix(".psam").name
        variants, blocks, skipped = assign_sites(sites, block_map, max_variants_per_block, listing)
        return Source(**common, path=path, subjects=fileset.subjects, blocks=blocks, skipped=skipped,
                      subject_order_source=order, variants=variants, plink=fileset)
    files = _vcf_files(folder)
    vcfs = open_vcfs(files)
    label = files[0] if len(files) == 1 else folder
    variants, blocks, skipped = assign_sites(vcfs.sites, block_map, max_variants_per_block, label, vcfs.line_unit)
    return Source(**common, path=label, subjects=pd.DataFrame({"subject_id": vcfs.samples}), blocks=blocks,
                  skipped=skipped, subject_order_source=", ".join(p.name for p in files), variants=variants, vcfs=vcfs)
