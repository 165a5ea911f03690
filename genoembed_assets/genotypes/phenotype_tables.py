"""Phenotype and covariate tables as users bring them.

Accepted, in a cohort folder:

* ``phenotypes.csv`` (comma) or ``phenotypes.tsv`` (tab): a header row with a
  subject ID column and one column per trait; empty cells, ``NA`` and ``nan``
  are missing.
* PLINK ``*.pheno`` / ``*.phen`` (traits) and ``*.cov`` / ``*.covar``
  (covariates): whitespace-separated, with a header (``FID IID ...``,
  ``#FID IID ...``, ``#IID ...``) or without one (then ``FID IID`` and traits
  named ``PHENO1..`` / ``COV1..``); ``-9`` and ``NA`` are missing, as in PLINK.

ID columns are those :mod:`.ids` recognises (``subject_id``, ``IID``,
``FID`` + ``IID``, ``#IID``, ``sample``, ``sample_id``); subjects are matched
by IID, and FID is an ID column, not a trait. Every other column must be
numeric. At most one trait table and one covariate table are picked up by
name; ``cohort.json`` ``{"phenotypes": ["traits.pheno", "extra.cov"]}`` names
them explicitly (their columns are joined on the subject ID).

Aligned to the genotyped subjects: a genotyped subject the tables lack is
kept with missing traits and counted; rows for subjects without genotypes are
dropped and counted; tables sharing no subject with the genotypes are an
error (usually the wrong ID column).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .errors import CohortInputError
from .ids import check_ids, id_columns, is_id_name

__all__ = ["align_phenotypes", "find_phenotype_files", "load_phenotypes", "phenotype_coverage", "read_phenotype_table"]

TABLE_NAMES = ("phenotypes.csv", "phenotypes.tsv")
TRAIT_SUFFIXES = (".pheno", ".phen")
COVARIATE_SUFFIXES = (".cov", ".covar")
_MISSING = {"", "NA", "nan", "NaN"}
_PLINK_MISSING = _MISSING | {"-9"}


def _is_plink(path: Path) -> bool:
    return path.suffix.lower() in TRAIT_SUFFIXES + COVARIATE_SUFFIXES


def find_phenotype_files(folder: str | Path, settings: dict | None = None) -> list[Path]:
    """The phenotype/covariate tables of a cohort folder (possibly none).

    Raises
    ------
    CohortInputError
        A file named in cohort.json is missing, or the folder holds several
        trait tables (or several covariate tables) and cohort.json names none.
    """
    folder = Path(folder)
    named = (settings or {}).get("phenotypes")
    if named is not None:
        names = [named] if isinstance(named, str) else named
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise CohortInputError(folder / "cohort.json", "'phenotypes' must be a file name or a list of file "
                                   f"names, got {named!r}", where="key 'phenotypes'")
        paths = [folder / n for n in names]
        for path in paths:
            if not path.is_file():
                raise CohortInputError(folder / "cohort.json", f"names phenotype table {path.name!r}, which is not "
                                       f"in {folder}", where="key 'phenotypes'")
        return paths
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    traits = [p for p in files if p.name in TABLE_NAMES or p.suffix.lower() in TRAIT_SUFFIXES]
    covariates = [p for p in files if p.suffix.lower() in COVARIATE_SUFFIXES]
    for kind, found in (("phenotype", traits), ("covariate", covariates)):
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise CohortInputError(folder, f"several {kind} tables ({names}); keep one, or name the ones to use "
                                   f'in cohort.json, e.g. {{"phenotypes": ["{found[0].name}"]}}')
    return traits + covariates


def _empty(path: Path) -> CohortInputError:
    return CohortInputError(path, "empty phenotype file: expected a header row with a subject ID column "
                            "(subject_id, IID, FID IID, #IID, sample or sample_id) and one column per trait")


def _read_delimited(path: Path, sep: str) -> tuple[pd.DataFrame, list[int]]:
    try:
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, skip_blank_lines=True)
    except pd.errors.EmptyDataError:
        raise _empty(path) from None
    except pd.errors.ParserError as exc:
        raise CohortInputError(path, f"cannot parse as {'CSV' if sep == ',' else 'TSV'} ({exc})") from None
    return frame, list(range(2, len(frame) + 2))


def _read_whitespace(path: Path) -> tuple[pd.DataFrame, list[int]]:
    rows, lines = [], []
    with open(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            fields = line.split()
            if fields:
                rows.append(fields)
                lines.append(line_no)
    if not rows:
        raise _empty(path)
    header = is_id_name(rows[0][0])
    if header:
        names, rows, lines = rows[0], rows[1:], lines[1:]
    else:
        prefix = "COV" if path.suffix.lower() in COVARIATE_SUFFIXES else "PHENO"
        names = ["FID", "IID"] + [f"{prefix}{i}" for i in range(1, len(rows[0]) - 1)]
    for fields, line_no in zip(rows, lines):
        if len(fields) != len(names):
            raise CohortInputError(path, f"expected {len(names)} whitespace-separated columns "
                                   f"({' '.join(names[:6])}{' ...' if len(names) > 6 else ''}), got {len(fields)}",
                                   where=f"line {line_no}")
    return pd.DataFrame(rows, columns=names), lines


def read_phenotype_table(path: str | Path) -> pd.DataFrame:
    """One table -> ``subject_id`` plus one float column per trait, in file order.

    ``attrs['id_column']`` names the ID column used.
    """
    path = Path(path)
    if not path.exists():
        raise CohortInputError(path, "phenotype table not found")
    if path.stat().st_size == 0:
        raise _empty(path)
    plink = _is_plink(path)
    if plink:
        frame, lines = _read_whitespace(path)
    else:
        frame, lines = _read_delimited(path, "\t" if path.suffix.lower() == ".tsv" else ",")
    iid, fid = id_columns(list(frame.columns), path)
    traits = [c for c in frame.columns if c not in (iid, fid)]
    if frame.empty:
        raise CohortInputError(path, "header but no data rows: expected one row per subject")
    if not traits:
        raise CohortInputError(path, f"no trait column beside the ID column(s) {[c for c in (fid, iid) if c]}; "
                               "remove the file for a genotype-only cohort", where="header")
    out = pd.DataFrame({"subject_id": frame[iid].str.strip()})
    check_ids(path, out["subject_id"], rows=lines)
    missing = _PLINK_MISSING if plink else _MISSING
    for col in traits:
        raw = frame[col].str.strip()
        absent = raw.isin(missing)
        values = pd.to_numeric(raw.where(~absent), errors="coerce")
        bad = values.isna() & ~absent
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            allowed = "-9, NA" if plink else "an empty cell or NA"
            raise CohortInputError(
                path, f"non-numeric value {raw.iloc[i]!r} in column {col!r}; expected a number or {allowed}",
                where=f"{'line' if plink else 'row'} {lines[i]} (subject {out['subject_id'].iloc[i]!r})",
            )
        name = str(col).lstrip("#")
        if name in out.columns:
            raise CohortInputError(path, f"column {col!r} appears twice", where="header")
        out[name] = values.astype(float).to_numpy()
    out.attrs["id_column"] = str(iid)
    return out


def align_phenotypes(table: pd.DataFrame, subject_ids: Sequence[str], path: Path) -> tuple[pd.DataFrame, dict]:
    """Reorder ``table`` to ``subject_ids``; missing subjects get NaN traits.

    Returns the aligned table and counts: ``n_subjects_missing`` (genotyped,
    not in the table), ``missing_subjects`` (up to 5 of them),
    ``n_rows_not_genotyped`` (dropped rows).
    """
    ids = pd.Index([str(s) for s in subject_ids])
    indexed = table.set_index("subject_id")
    common = ids.intersection(indexed.index)
    if common.empty:
        raise CohortInputError(path, f"no subject ID in common with the genotypes (table: {indexed.index[0]!r} ..., "
                               f"genotypes: {ids[0]!r} ...); the table must be keyed by the genotypes' IID")
    missing = ids.difference(indexed.index, sort=False)
    aligned = indexed.reindex(ids).rename_axis("subject_id").reset_index()
    return aligned, {
        "n_subjects_missing": int(len(missing)),
        "missing_subjects": [str(s) for s in missing[:5]],
        "n_rows_not_genotyped": int(len(indexed.index.difference(ids))),
    }


def load_phenotypes(folder: str | Path, subject_ids: Sequence[str],
                    settings: dict | None = None) -> tuple[pd.DataFrame | None, dict]:
    """Every phenotype/covariate table of a folder, joined and aligned to ``subject_ids``.

    Returns ``(None, {"files": []})`` when the folder has none (genotype-only),
    else the aligned table (``subject_id`` + traits) and a summary: ``files``,
    ``id_column``, ``traits`` and the counts of :func:`align_phenotypes`.
    """
    files = find_phenotype_files(folder, settings)
    if not files:
        return None, {"files": []}
    merged, id_cols, origin = None, [], {}
    for path in files:
        table = read_phenotype_table(path)
        id_cols.append(table.attrs["id_column"])
        clash = [c for c in table.columns[1:] if c in origin]
        if clash:
            raise CohortInputError(path, f"trait column {clash[0]!r} is also in {origin[clash[0]]}; rename one")
        origin.update({c: path.name for c in table.columns[1:]})
        merged = table if merged is None else merged.merge(table, on="subject_id", how="outer", sort=False)
    aligned, counts = align_phenotypes(merged, subject_ids, files[0] if len(files) == 1 else Path(folder))
    info = {"files": [p.name for p in files], "id_column": ", ".join(dict.fromkeys(id_cols)),
            "traits": list(aligned.columns[1:]), **counts}
    return aligned, info


def phenotype_coverage(table: pd.DataFrame, info: dict | None = None) -> dict:
    """How far an aligned table covers its subjects: per-trait counts and the missing subjects.

    ``info`` is the ingest's phenotype summary (qc.json ``phenotypes``); without
    it, subjects whose traits are all missing count as missing.
    """
    traits = table.drop(columns="subject_id")
    if info and "n_subjects_missing" in info:
        n_missing, shown = int(info["n_subjects_missing"]), list(info.get("missing_subjects", []))
        extra = int(info.get("n_rows_not_genotyped", 0))
    else:
        absent = traits.isna().all(axis=1) if traits.shape[1] else pd.Series(False, index=table.index)
        n_missing, shown, extra = int(absent.sum()), list(table.loc[absent, "subject_id"].astype(str)[:5]), 0
    summary = pd.DataFrame({
        "trait": traits.columns,
        "n_observed": traits.notna().sum().to_numpy(),
        "n_missing": traits.isna().sum().to_numpy(),
        "mean": traits.mean().to_numpy(),
        "sd": traits.std().to_numpy(),
    })
    if n_missing:
        # no IDs in the message: it is a check result, stored in Dagster's event log (IDs: ``missing_subjects``)
        message = (f"{n_missing} of {len(table)} genotyped subject(s) have no phenotype row (kept, traits missing; "
                   f"tests use complete cases per trait)")
    else:
        message = f"all {len(table)} genotyped subjects have a phenotype row"
    if extra:
        message += f"; {extra} phenotype row(s) without genotypes dropped"
    return {"n_subjects_missing": n_missing, "missing_subjects": shown, "n_rows_not_genotyped": extra,
            "summary": summary, "message": message}
