"""The original cohort layout: one int8 ``.npy`` per block plus tables.

A cohort folder in this layout holds::

    manifest.tsv      block_id, chrom, start, end, n_snps, file (relative path)
    subjects.tsv      subject_id (row order of every .npy), optional fid
    phenotypes.csv    subject_id plus one column per trait
    *.eigenvec        optional PLINK eigenvec (FID IID PC1 ...), header optional
    cohort.json       optional settings, e.g. {"build": "hg19"}
    ingest_record.tsv written by an ingest: each block file's size, mtime, SHA-256

An ingested folder always has these names. A user's folder may give the
subject order another way and other phenotype tables: see
:mod:`.subject_order` and :mod:`.phenotype_tables`.

Genotypes are ``int8`` (subjects x variants) with values in {-1, 0, 1, 2},
-1 meaning missing. Every reader validates and raises
:class:`CohortInputError` naming the file and the block, row or column.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .. import storage
from . import ingest_record
from .blockmap import chrom_sort_key, normalize_chrom
from .errors import CohortInputError
from .ids import check_ids as _check_ids
from .ids import id_columns

__all__ = [
    "MANIFEST",
    "PHENOTYPES",
    "SUBJECTS",
    "BlockArray",
    "find_eigenvec",
    "load_block",
    "read_cohort_settings",
    "read_eigenvec",
    "read_manifest",
    "read_phenotypes",
    "read_subject_table",
    "read_subjects",
    "read_text_tsv",
    "validate_genotypes",
    "write_cohort",
]

MANIFEST = "manifest.tsv"
SUBJECTS = "subjects.tsv"
PHENOTYPES = "phenotypes.csv"
SETTINGS = "cohort.json"
MANIFEST_COLUMNS = ["block_id", "chrom", "start", "end", "n_snps", "file"]
VALID_GENOTYPES = np.array([-1, 0, 1, 2], dtype=np.int8)


@dataclass(frozen=True)
class BlockArray:
    """One block's genotypes with its coordinates, for writing a cohort."""

    block_id: str
    chrom: str
    start: int
    end: int
    genotypes: np.ndarray


def read_cohort_settings(folder: str | Path) -> dict:
    path = Path(folder) / SETTINGS
    if not path.exists():
        return {}
    try:
        settings = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CohortInputError(path, f"not valid JSON ({exc.msg})", where=f"line {exc.lineno}") from None
    if not isinstance(settings, dict):
        raise CohortInputError(path, "expected a JSON object of settings")
    return settings


def read_manifest(folder: str | Path, *, check_files: bool = True) -> pd.DataFrame:
    """Read and validate ``manifest.tsv``; rows come back in genomic order."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.exists():
        raise CohortInputError(folder, f"no {MANIFEST} found (expected columns {', '.join(MANIFEST_COLUMNS)})")
    frame = read_text_tsv(path, MANIFEST_COLUMNS)
    if frame.empty:
        raise CohortInputError(path, "manifest lists no blocks")
    for i, row in frame.iterrows():
        where = f"row {i + 2} (block {row['block_id']!r})"  # +2: header is line 1
        chrom = normalize_chrom(row["chrom"])
        if chrom is None:
            raise CohortInputError(path, f"unknown chromosome {row['chrom']!r}; expected 1-22 or X, with or without 'chr'", where=where)
        frame.at[i, "chrom"] = chrom
        for col in ("start", "end", "n_snps"):
            if not row[col].strip().lstrip("-").isdigit():
                raise CohortInputError(path, f"column {col} must be an integer, got {row[col]!r}", where=where)
        if int(row["n_snps"]) < 1:
            raise CohortInputError(path, f"n_snps must be >= 1, got {row['n_snps']}", where=where)
        if check_files and not (folder / row["file"]).exists():
            raise CohortInputError(path, f"file {row['file']!r} does not exist in {folder}", where=where)
    dup = frame["block_id"][frame["block_id"].duplicated()]
    if not dup.empty:
        raise CohortInputError(path, f"duplicate block id {dup.iloc[0]!r}")
    bad_ids = [b for b in frame["block_id"] if not _safe_key(b)]
    if bad_ids:
        raise CohortInputError(path, f"block id {bad_ids[0]!r} may only use letters, digits, '_', '-' and '.'")
    frame = frame.astype({"start": np.int64, "end": np.int64, "n_snps": np.int64})
    frame["_o"] = frame["chrom"].map(chrom_sort_key)
    return frame.sort_values(["_o", "start", "end"]).drop(columns="_o").reset_index(drop=True)


def read_text_tsv(path: Path, columns: list[str], *, hint: str = "") -> pd.DataFrame:
    """A TSV read as strings (no NA parsing) that must have ``columns``; errors name the file."""
    try:
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise CohortInputError(path, f"cannot parse as TSV ({exc}){hint}") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise CohortInputError(path, f"missing column(s) {missing}; expected {columns}{hint}")
    return frame


def _safe_key(text: str) -> bool:
    return bool(text) and all(ch.isalnum() or ch in "_-." for ch in text)


def read_subjects(folder: str | Path) -> np.ndarray:
    """Subject IDs (strings) in the row order of every block matrix, from ``subjects.tsv``."""
    path = Path(folder) / SUBJECTS
    if not path.exists():
        raise CohortInputError(Path(folder), f"no {SUBJECTS} found (expected a 'subject_id' column, one row per genotype row)")
    return read_subject_table(path)["subject_id"].to_numpy(dtype=object)


def read_subject_table(path: str | Path) -> pd.DataFrame:
    """A tab-separated subject list -> ``subject_id`` (+ ``fid``), in file order.

    The ID column may be any name :func:`.ids.id_columns` recognises
    (``subject_id``, ``IID``, ``FID`` + ``IID``, ``#IID``, ``sample`` ...).
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise CohortInputError(path, "empty file: expected a header with a subject ID column, one row per genotype row") from None
    except pd.errors.ParserError as exc:
        raise CohortInputError(path, f"cannot parse as TSV ({exc})") from None
    iid, fid = id_columns(list(frame.columns), path)
    out = pd.DataFrame({"subject_id": frame[iid].str.strip()})
    if fid is not None:
        out["fid"] = frame[fid].str.strip().to_numpy()
    _check_ids(path, out["subject_id"])
    return out


def validate_genotypes(genotypes: np.ndarray, *, path: Path | str, block_id: str, expected_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Check dtype, shape and values; return the matrix as int8."""
    where = f"block {block_id}"
    if not isinstance(genotypes, np.ndarray) or genotypes.ndim != 2:
        shape = getattr(genotypes, "shape", None)
        raise CohortInputError(path, f"expected a 2-D matrix (subjects x variants), got shape {shape}", where=where)
    if not np.issubdtype(genotypes.dtype, np.integer):
        raise CohortInputError(path, f"expected int8 genotypes coded -1/0/1/2, got dtype {genotypes.dtype}", where=where)
    if expected_shape is not None and genotypes.shape != tuple(expected_shape):
        raise CohortInputError(
            path,
            f"shape {genotypes.shape} does not match the expected (subjects, n_snps) = {tuple(expected_shape)}",
            where=where,
        )
    bad = ~np.isin(genotypes, VALID_GENOTYPES)
    if bad.any():
        r, c = (int(v) for v in np.argwhere(bad)[0])
        raise CohortInputError(
            path,
            f"invalid genotype value {int(genotypes[r, c])} at subject row {r}, variant column {c}; "
            f"expected -1 (missing), 0, 1 or 2 ({int(bad.sum())} invalid entries)",
            where=where,
        )
    return genotypes.astype(np.int8, copy=False)


def load_block(folder: str | Path, row: pd.Series | dict, n_subjects: int, *, mmap: bool = False) -> np.ndarray:
    """Load and validate one block's ``.npy`` named by a manifest row."""
    path = Path(folder) / row["file"]
    try:
        genotypes = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise CohortInputError(path, "file listed in the manifest does not exist", where=f"block {row['block_id']}") from None
    except (ValueError, OSError, EOFError) as exc:
        raise CohortInputError(path, f"not a readable .npy array ({exc})", where=f"block {row['block_id']}") from None
    return validate_genotypes(
        np.asarray(genotypes), path=path, block_id=row["block_id"], expected_shape=(n_subjects, int(row["n_snps"]))
    )


def read_phenotypes(path: str | Path, subject_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Phenotype CSV with a ``subject_id`` column; all other columns numeric.

    Empty cells become NaN; any other non-numeric cell is an error naming the
    row and column. When ``subject_ids`` is given the table is reordered to
    them and every subject must be present.
    """
    path = Path(path)
    if not path.exists():
        raise CohortInputError(path, "phenotype table not found")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "subject_id" not in frame.columns:
        raise CohortInputError(path, f"missing column 'subject_id' (found {list(frame.columns)})")
    frame["subject_id"] = frame["subject_id"].str.strip()
    _check_ids(path, frame["subject_id"])
    for col in frame.columns.drop("subject_id"):
        raw = frame[col].str.strip()
        values = pd.to_numeric(raw.replace({"": None, "NA": None, "nan": None, "NaN": None}), errors="coerce")
        bad = values.isna() & ~raw.isin(["", "NA", "nan", "NaN"])
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise CohortInputError(
                path, f"non-numeric value {raw.iloc[i]!r} in column {col!r}; expected a number or an empty cell",
                where=f"row {i + 2} (subject {frame['subject_id'].iloc[i]!r})",
            )
        frame[col] = values.astype(float)
    return _align(path, frame, subject_ids, "phenotype table")


def _align(path: Path, frame: pd.DataFrame, subject_ids: Sequence[str] | None, what: str) -> pd.DataFrame:
    if subject_ids is None:
        return frame.reset_index(drop=True)
    indexed = frame.set_index("subject_id")
    missing = pd.Index(subject_ids).difference(indexed.index)
    if len(missing):
        shown = ", ".join(map(str, missing[:5]))
        raise CohortInputError(path, f"{what} lacks {len(missing)} genotyped subject(s): {shown}{' ...' if len(missing) > 5 else ''}")
    return indexed.loc[list(subject_ids)].reset_index()


def find_eigenvec(folder: str | Path) -> Path | None:
    found = sorted(Path(folder).glob("*.eigenvec"))
    if len(found) > 1:
        raise CohortInputError(Path(folder), f"several .eigenvec files ({[p.name for p in found]}); keep one")
    return found[0] if found else None


def read_eigenvec(path: str | Path, subject_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """PLINK ``.eigenvec`` (1.9 headerless or 2.0 ``#FID IID PC1..``) -> subject_id, PC1.."""
    path = Path(path)
    with open(path) as fh:
        first = fh.readline().split()
    if not first:
        raise CohortInputError(path, "empty .eigenvec file")
    has_header = first[0].lstrip("#").upper() in {"FID", "IID"}
    frame = pd.read_csv(path, sep=r"\s+", header=0 if has_header else None, dtype=str)
    if not has_header:
        n_pc = frame.shape[1] - 2
        frame.columns = ["FID", "IID"] + [f"PC{i}" for i in range(1, n_pc + 1)]
    frame.columns = [c.lstrip("#") for c in frame.columns]
    if "IID" not in frame.columns:
        raise CohortInputError(path, f"expected an IID column, found {list(frame.columns)}")
    pcs = [c for c in frame.columns if c.upper().startswith("PC")]
    if not pcs:
        raise CohortInputError(path, "no PC columns found")
    out = pd.DataFrame({"subject_id": frame["IID"].astype(str).str.strip()})
    _check_ids(path, out["subject_id"], row_offset=2 if has_header else 1)
    for col in pcs:
        values = pd.to_numeric(frame[col], errors="coerce")
        if values.isna().any():
            i = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise CohortInputError(path, f"non-numeric value {frame[col].iloc[i]!r} in column {col}", where=f"row {i + (2 if has_header else 1)}")
        out[col.upper()] = values.to_numpy(dtype=float)
    return _align(path, out, subject_ids, "eigenvec table")


def write_cohort(
    folder: str | Path,
    subject_ids: Sequence[str],
    blocks: Iterable[BlockArray],
    phenotypes: pd.DataFrame | None = None,
    eigenvec: pd.DataFrame | None = None,
    settings: dict | None = None,
    *,
    fids: Sequence[str] | None = None,
    record: bool = False,
) -> pd.DataFrame:
    """Write a cohort in the original layout (atomically, file by file).

    The manifest is written last, so a folder without one was never finished.
    ``fids`` (PLINK family IDs, same order as ``subject_ids``) add a ``fid``
    column to subjects.tsv. ``record`` also writes ``ingest_record.tsv``
    (each block file's size, mtime and SHA-256, hashed right after it is
    written; see :mod:`.ingest_record`). Returns the manifest.
    """
    folder = Path(folder)
    (folder / "blocks").mkdir(parents=True, exist_ok=True)
    subject_ids = [str(s) for s in subject_ids]
    rows, hashes = [], {}
    for block in blocks:
        g = validate_genotypes(block.genotypes, path=folder / "blocks" / f"{block.block_id}.npy",
                               block_id=block.block_id, expected_shape=(len(subject_ids), block.genotypes.shape[1]))
        rel = f"blocks/{block.block_id}.npy"
        storage.write_npy(folder / rel, np.ascontiguousarray(g, dtype=np.int8))
        if record:
            # hashed while the bytes just written are still in the page cache: the one full read per ingest
            hashes[rel] = ingest_record.hash_file(folder / rel)
        rows.append((block.block_id, block.chrom, int(block.start), int(block.end), g.shape[1], rel))
    subjects = pd.DataFrame({"subject_id": subject_ids})
    if fids is not None:
        subjects["fid"] = [str(f) for f in fids]
    storage.write_tsv(folder / SUBJECTS, subjects)
    if phenotypes is not None:
        with storage.atomic_path(folder / PHENOTYPES) as tmp:
            phenotypes.to_csv(tmp, index=False)
    if eigenvec is not None:
        pcs = eigenvec.rename(columns={"subject_id": "IID"})
        pcs.insert(0, "#FID", pcs["IID"])
        with storage.atomic_path(folder / "pcs.eigenvec") as tmp:
            pcs.to_csv(tmp, sep="\t", index=False)
    if settings:
        storage.write_json(folder / SETTINGS, settings)
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    if record:
        ingest_record.write_record(folder, manifest["file"], hashes)
    storage.write_tsv(folder / MANIFEST, manifest)
    return manifest
