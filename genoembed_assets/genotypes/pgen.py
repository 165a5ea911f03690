"""PLINK 2 filesets (.pgen/.pvar/.psam) through pgenlib.

The .psam and .pvar text files are parsed here (their errors name the line);
pgenlib reads the .pgen. Dosages count the first ALT allele (pgenlib's
``allele_idx=1``), so ``alt`` is the .pvar ALT column, as for VCF.

* ``.psam``: a header line ``#FID IID ...`` or ``#IID ...`` (plink2), or none
  (then the .fam columns ``FID IID PAT MAT SEX PHENO``). Subjects are keyed by
  IID; FID is kept when present.
* ``.pvar``: ``##`` meta lines, then a ``#CHROM POS ID REF ALT ...`` header, or
  no header (then the .bim columns ``CHROM ID CM POS ALT REF``). A record with
  several ALT alleles is ``status == 'multiallelic'`` and one with ALT ``.`` is
  ``'no_alt'``; both are skipped and counted, as for VCF.
* Compressed ``.pvar.zst`` is not read: decompress it first
  (``plink2 --pfile x vzs --make-just-pvar --out x``, or ``zstd -d``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import CohortInputError

__all__ = ["PGEN_MAGIC", "PgenFileset", "open_pgen", "read_psam", "read_pvar"]

PGEN_MAGIC = bytes([0x6C, 0x1B])
_MISSING = -9  # pgenlib's missing genotype code


@dataclass(frozen=True)
class PgenFileset:
    """A validated .pgen/.pvar/.psam triple.

    Attributes
    ----------
    pgen : pathlib.Path
    subjects : pandas.DataFrame
        ``subject_id`` (IID), plus ``fid`` when the .psam has one; .psam order.
    variants : pandas.DataFrame
        ``chrom`` (as written), ``pos, id, ref, alt, line, status``, .pvar order.
    """

    pgen: Path
    subjects: pd.DataFrame
    variants: pd.DataFrame

    def read(self, columns: np.ndarray) -> np.ndarray:
        """Genotypes of the given .pvar rows as int8 (subjects x variants), -1 = missing."""
        import pgenlib

        columns = np.asarray(columns, dtype=np.int64)
        order = np.argsort(columns, kind="stable")
        out = np.empty((len(columns), len(self.subjects)), dtype=np.int8)
        try:
            reader = pgenlib.PgenReader(bytes(self.pgen), raw_sample_ct=len(self.subjects))
            try:
                reader.read_list(columns[order].astype(np.uint32), out, allele_idx=1)
            finally:
                reader.close()
        except RuntimeError as exc:
            first = int(columns[order[0]]) if len(columns) else 0
            raise CohortInputError(self.pgen, f"pgenlib could not read the genotypes ({_text(exc)}); is the "
                                   ".pgen truncated or from another .pvar?",
                                   where=f"variants from .pvar record {first + 1}") from None
        g = np.empty_like(out)
        g[order] = out
        g[g == _MISSING] = -1
        return np.ascontiguousarray(g.T)


def _text(exc: Exception) -> str:
    arg = exc.args[0] if exc.args else exc
    return (arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)).strip()


def open_pgen(pgen: str | Path) -> PgenFileset:
    """Parse and validate a fileset named by its .pgen path."""
    import pgenlib

    pgen = Path(pgen)
    pvar, psam = pgen.with_suffix(".pvar"), pgen.with_suffix(".psam")
    for part in (pgen, pvar, psam):
        if not part.exists():
            hint = " (.pvar.zst is not read: decompress it)" if part == pvar and pvar.with_name(pvar.name + ".zst").exists() else ""
            raise CohortInputError(part, "missing part of a PLINK 2 fileset (expected .pgen, .pvar and .psam "
                                   f"with one stem){hint}")
    subjects = read_psam(psam)
    variants = read_pvar(pvar)
    with open(pgen, "rb") as fh:
        head = fh.read(2)
    if head != PGEN_MAGIC:
        raise CohortInputError(pgen, f"not a PLINK 2 .pgen: first bytes {head.hex() or 'none'} (expected magic 6c1b)",
                               where="header (bytes 1-2)")
    try:
        reader = pgenlib.PgenReader(bytes(pgen), raw_sample_ct=len(subjects))
    except RuntimeError as exc:
        raise CohortInputError(pgen, f"pgenlib cannot open it ({_text(exc)}); expected {len(subjects)} samples "
                               f"(.psam rows)") from None
    try:
        n_variants = reader.get_variant_ct()
    finally:
        reader.close()
    if n_variants != len(variants):
        raise CohortInputError(pgen, f"holds {n_variants} variants but {pvar.name} lists {len(variants)}; "
                               "the .pgen and .pvar must come from one plink2 run")
    return PgenFileset(pgen=pgen, subjects=subjects, variants=variants)


def _lines(path: Path):
    """(line number, fields) of the non-empty lines that are not ``##`` meta lines."""
    with open(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            if line.startswith("##"):
                continue
            fields = line.split()
            if fields:
                yield line_no, fields


def _table(path: Path, default: list[str], what: str) -> pd.DataFrame:
    """Rows of a plink2 text table, named by its ``#...`` header line or else by ``default``."""
    rows, header = [], None
    for line_no, fields in _lines(path):
        if header is None and not rows and fields[0].startswith("#"):
            header = [f.lstrip("#").upper() for f in fields]
            continue
        names = header or default
        if len(fields) != len(names):
            raise CohortInputError(path, f"expected {len(names)} whitespace-separated columns ({' '.join(names)}), "
                                   f"got {len(fields)}", where=f"line {line_no}")
        rows.append(fields + [line_no])
    if not rows:
        raise CohortInputError(path, f"no {what} rows")
    return pd.DataFrame(rows, columns=[*(header or default), "line"])


def read_psam(path: str | Path) -> pd.DataFrame:
    """.psam -> ``subject_id`` (IID) and, when present, ``fid``; a repeated IID is an error."""
    path = Path(path)
    frame = _table(path, ["FID", "IID", "PAT", "MAT", "SEX", "PHENO1"], "sample")
    if "IID" not in frame.columns:
        raise CohortInputError(path, f"header has no IID column (found {list(frame.columns[:-1])})", where="header")
    dup = frame["IID"].duplicated()
    if dup.any():
        row = frame[dup].iloc[0]
        raise CohortInputError(path, f"duplicate subject IID {row['IID']!r} (IIDs must be unique; subjects are "
                               "keyed by IID)", where=f"line {row['line']}")
    out = pd.DataFrame({"subject_id": frame["IID"].to_numpy()})
    if "FID" in frame.columns:
        out["fid"] = frame["FID"].to_numpy()
    return out


def read_pvar(path: str | Path) -> pd.DataFrame:
    """.pvar -> ``chrom, pos, id, ref, alt, line, status`` with integer positions."""
    path = Path(path)
    frame = _table(path, ["CHROM", "ID", "CM", "POS", "ALT", "REF"], "variant")
    missing = [c for c in ("CHROM", "POS", "ID", "REF", "ALT") if c not in frame.columns]
    if missing:
        raise CohortInputError(path, f"header lacks column(s) {missing}; expected #CHROM POS ID REF ALT",
                               where="header")
    pos = pd.to_numeric(frame["POS"], errors="coerce")
    bad = pos.isna() | (pos < 0)
    if bad.any():
        row = frame[bad].iloc[0]
        raise CohortInputError(path, f"base-pair position must be a non-negative integer, got {row['POS']!r}",
                               where=f"line {row['line']} (variant {row['ID']!r})")
    alt = frame["ALT"].astype(str)
    status = np.where(alt.str.contains(","), "multiallelic", np.where(alt == ".", "no_alt", "ok"))
    return pd.DataFrame({"chrom": frame["CHROM"].to_numpy(), "pos": pos.to_numpy(dtype=np.int64),
                         "id": frame["ID"].replace(".", "").to_numpy(), "ref": frame["REF"].to_numpy(),
                         "alt": alt.to_numpy(), "line": frame["line"].to_numpy(), "status": status})
