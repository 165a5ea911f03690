"""PLINK 1 binary filesets (.bed/.bim/.fam) through bed-reader.

The .fam and .bim text files are parsed here (they are small and their errors
must name the row); the .bed header and size are checked here too before
bed-reader opens it, so a malformed file gives a :class:`CohortInputError`
rather than a library traceback. Dosages count allele 1 of the .bim (column 5,
the ALT/minor allele as PLINK writes it), so ``alt`` = A1 and ``ref`` = A2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from bed_reader import open_bed

from .errors import CohortInputError

__all__ = ["BED_MAGIC", "PlinkFileset", "check_bed", "open_plink", "read_bim", "read_fam"]

# SNP-major PLINK 1 .bed: two magic bytes, then 0x01 for variant-major order
BED_MAGIC = bytes([0x6C, 0x1B, 0x01])
_MISSING_INT8 = -127  # bed-reader's missing value for dtype int8


@dataclass(frozen=True)
class PlinkFileset:
    """A validated .bed/.bim/.fam triple.

    Attributes
    ----------
    bed : pathlib.Path
    subjects : pandas.DataFrame
        ``fid, subject_id`` (subject_id = IID), .fam order.
    variants : pandas.DataFrame
        ``chrom`` (as written), ``id, cm, pos, alt, ref``, .bim order.
    """

    bed: Path
    subjects: pd.DataFrame
    variants: pd.DataFrame

    def read(self, columns: np.ndarray | slice | None = None) -> np.ndarray:
        """Genotypes of the given .bim rows as int8 (subjects x variants), -1 = missing."""
        index = np.s_[:, columns] if columns is not None else None
        try:
            with open_bed(self.bed, iid_count=len(self.subjects), sid_count=len(self.variants),
                          count_A1=True, num_threads=1) as bed:
                g = bed.read(index=index, dtype="int8")
        except (ValueError, OSError, RuntimeError) as exc:
            raise CohortInputError(self.bed, f"bed-reader could not read the genotypes ({exc})") from None
        g[g == _MISSING_INT8] = -1
        return np.ascontiguousarray(g)


def open_plink(bed: str | Path) -> PlinkFileset:
    """Parse and validate a fileset named by its .bed path."""
    bed = Path(bed)
    fam, bim = bed.with_suffix(".fam"), bed.with_suffix(".bim")
    for part in (bed, bim, fam):
        if not part.exists():
            raise CohortInputError(part, "missing part of a PLINK fileset (expected .bed, .bim and .fam with one stem)")
    subjects = read_fam(fam)
    variants = read_bim(bim)
    check_bed(bed, len(subjects), len(variants), variant_ids=variants["id"].tolist())
    return PlinkFileset(bed=bed, subjects=subjects, variants=variants)


def _read_whitespace_table(path: Path, names: list[str]) -> pd.DataFrame:
    rows = []
    with open(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != len(names):
                raise CohortInputError(path, f"expected {len(names)} whitespace-separated columns "
                                       f"({' '.join(names)}), got {len(fields)}", where=f"line {line_no}")
            rows.append(fields + [line_no])
    if not rows:
        raise CohortInputError(path, "file is empty")
    return pd.DataFrame(rows, columns=names + ["line"])


def read_fam(path: str | Path) -> pd.DataFrame:
    """.fam -> ``fid, subject_id`` (IID); a repeated IID is an error naming the line."""
    path = Path(path)
    frame = _read_whitespace_table(path, ["fid", "iid", "father", "mother", "sex", "pheno"])
    dup = frame["iid"].duplicated()
    if dup.any():
        row = frame[dup].iloc[0]
        raise CohortInputError(path, f"duplicate subject IID {row['iid']!r} (IIDs must be unique; "
                               "subjects are keyed by IID)", where=f"line {row['line']}")
    return pd.DataFrame({"fid": frame["fid"].to_numpy(), "subject_id": frame["iid"].to_numpy()})


def read_bim(path: str | Path) -> pd.DataFrame:
    """.bim -> ``chrom, id, cm, pos, alt, ref`` with integer positions."""
    path = Path(path)
    frame = _read_whitespace_table(path, ["chrom", "id", "cm", "pos", "alt", "ref"])
    pos = pd.to_numeric(frame["pos"], errors="coerce")
    bad = pos.isna() | (pos < 0)
    if bad.any():
        row = frame[bad].iloc[0]
        raise CohortInputError(path, f"base-pair position must be a non-negative integer, got {row['pos']!r}",
                               where=f"line {row['line']} (variant {row['id']!r})")
    frame["pos"] = pos.astype(np.int64)
    return frame.drop(columns="line")


def check_bed(path: str | Path, n_subjects: int, n_variants: int, *, variant_ids: list[str] | None = None) -> None:
    """Check the .bed magic bytes and that its size fits the .fam/.bim counts.

    A short file is reported at the first variant whose bytes are incomplete
    (named from ``variant_ids`` when given).
    """
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(3)
    if len(head) < 3:
        raise CohortInputError(path, f"truncated .bed: {len(head)} bytes, shorter than the 3-byte header",
                               where="header (bytes 1-3)")
    if head[:2] != BED_MAGIC[:2]:
        raise CohortInputError(path, f"not a PLINK 1 .bed: first bytes {head[:2].hex()} (expected magic 6c1b)",
                               where="header (bytes 1-2)")
    if head[2] != BED_MAGIC[2]:
        raise CohortInputError(path, f"mode byte {head[2]:#04x} is not SNP-major (0x01); "
                               "individual-major .bed files are not supported, rewrite with plink --make-bed",
                               where="header (byte 3)")
    bytes_per_variant = (n_subjects + 3) // 4
    expected = 3 + bytes_per_variant * n_variants
    size = path.stat().st_size
    if size != expected:
        complete = (size - 3) // bytes_per_variant if bytes_per_variant else 0
        if size < expected:
            kind, i = "truncated .bed", complete  # 0-based index of the first incomplete variant
            name = f" {variant_ids[i]!r}" if variant_ids is not None and i < len(variant_ids) else ""
            where = f"variant {i + 1}{name} (.bim line {i + 1}) onwards"
        else:
            kind, where = ".bed larger than expected", f"bytes after variant {n_variants} (last .bim line)"
        raise CohortInputError(
            path,
            f"{kind}: {size} bytes, expected {expected} = 3 + {n_variants} variants (.bim rows) x "
            f"{bytes_per_variant} bytes for {n_subjects} subjects (.fam rows)",
            where=where,
        )
