"""Which subject each row of an original-layout ``.npy`` block is.

The block matrices carry no IDs, so the row order comes from a file beside
them, in this order of precedence:

1. ``subjects.tsv``: one row per genotype row (ID column ``subject_id``,
   ``IID``, ``FID``+``IID``, ``#IID``, ``sample`` ...; see :mod:`.ids`);
2. a PLINK ``.fam`` (the fileset the blocks were cut from);
3. a PLINK ``.eigenvec`` in PLINK order (first two columns FID IID, or a
   ``#FID IID`` / ``#IID`` header), as the original pipeline left it.

Nothing is guessed silently: the file used is returned (and recorded by the
ingest as ``subject_order_source``); ``subjects.tsv`` and a ``.fam`` that
disagree, several ``.fam`` files without a ``subjects.tsv``, a source whose
row count differs from the blocks', or no source at all are refused with a
message naming the files and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import CohortInputError
from .layout import SUBJECTS, find_eigenvec, read_eigenvec, read_subject_table
from .plink import read_fam

__all__ = ["SubjectOrder", "subject_order"]

_FIX = (f"add {SUBJECTS} (a 'subject_id' or 'IID' column, one row per .npy row, in row order), "
        "or the PLINK .fam / .eigenvec the blocks were made from")


@dataclass(frozen=True)
class SubjectOrder:
    """Subjects in block row order and the file that said so.

    Attributes
    ----------
    subjects : pandas.DataFrame
        ``subject_id`` (+ ``fid`` when the source has family IDs).
    path : pathlib.Path
        The file read; ``path.name`` is what the ingest records.
    kind : {'subjects.tsv', 'fam', 'eigenvec'}
    """

    subjects: pd.DataFrame
    path: Path
    kind: str

    @property
    def label(self) -> str:
        return self.path.name


def _visible(folder: Path, suffix: str) -> list[Path]:
    return sorted(p for p in folder.glob(f"*{suffix}") if p.is_file() and not p.name.startswith("."))


def _first_difference(a: np.ndarray, b: np.ndarray) -> str:
    if len(a) != len(b):
        return f"{len(a)} vs {len(b)} subjects"
    i = int(np.flatnonzero(a != b)[0])
    return f"row {i + 1}: {a[i]!r} vs {b[i]!r}"


def _eigenvec_subjects(path: Path) -> pd.DataFrame:
    """``subject_id`` (IID) and, where the file has one, ``fid`` of a PLINK .eigenvec, in file order."""
    subjects = read_eigenvec(path)[["subject_id"]]  # validates IDs and PCs
    with open(path) as fh:
        rows = [line.split() for line in fh if line.strip()]
    header = rows[0][0].lstrip("#").upper() in {"FID", "IID"}
    if not header or rows[0][0].lstrip("#").upper() == "FID":
        subjects["fid"] = [r[0] for r in rows[int(header):]]
    return subjects


def subject_order(folder: str | Path, n_rows: int | None = None, rows_file: Path | None = None) -> SubjectOrder:
    """The subject order of an original-layout folder (see module notes).

    Parameters
    ----------
    folder
        The cohort folder (with ``manifest.tsv``).
    n_rows, rows_file
        Row count of the first block matrix and its file, when known: a source
        listing another number of subjects is refused naming both.
    """
    folder = Path(folder)
    tsv = folder / SUBJECTS
    fams = _visible(folder, ".fam")
    if tsv.exists():
        order = SubjectOrder(read_subject_table(tsv), tsv, "subjects.tsv")
        ids = order.subjects["subject_id"].to_numpy()
        for fam in fams:
            fam_ids = read_fam(fam)["subject_id"].to_numpy()
            if len(fam_ids) != len(ids) or not np.array_equal(fam_ids, ids):
                raise CohortInputError(folder, f"{SUBJECTS} and {fam.name} disagree on the subject order "
                                       f"({_first_difference(ids, fam_ids)}); keep the one that matches the .npy "
                                       f"rows (delete or fix the other)")
    elif len(fams) > 1:
        raise CohortInputError(folder, f"several .fam files ({', '.join(p.name for p in fams)}) and no {SUBJECTS}: "
                               f"the .npy row order is ambiguous; keep one .fam or add {SUBJECTS}")
    elif fams:
        order = SubjectOrder(read_fam(fams[0]), fams[0], "fam")
    else:
        eig = find_eigenvec(folder)
        if eig is None:
            raise CohortInputError(folder, f"no subject order for the .npy blocks: {_FIX}")
        order = SubjectOrder(_eigenvec_subjects(eig), eig, "eigenvec")
    n = len(order.subjects)
    if n_rows is not None and n_rows != n:
        where = f" but {rows_file.relative_to(folder) if rows_file else 'the first block'} has {n_rows} rows"
        raise CohortInputError(order.path, f"lists {n} subjects{where}; the subject order source must list one "
                               f"subject per genotype row, in row order")
    return order
