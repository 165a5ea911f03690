"""Subject ID columns of the tables a cohort brings (subjects, phenotypes, PCs).

Recognised names (case-insensitive, a leading ``#`` ignored): ``subject_id``,
``IID``, ``sample_id`` or ``sample`` name the subject; ``FID`` is the PLINK
family ID, kept beside the IID but never the key (subjects are keyed by IID,
as PLINK 2 does). So ``FID IID`` (PLINK 1), ``#FID IID`` and ``#IID``
(PLINK 2), ``subject_id`` (genoembed) and ``sample``/``sample_id`` all work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .errors import CohortInputError

__all__ = ["ID_NAMES", "check_ids", "id_columns", "is_id_name"]

ID_NAMES = ("subject_id", "iid", "sample_id", "sample")
FID_NAME = "fid"
_EXPECTED = "subject_id, IID, FID + IID, #IID, #FID IID, sample or sample_id"


def _norm(name: object) -> str:
    return str(name).strip().lstrip("#").strip().lower()


def is_id_name(name: object) -> bool:
    """Whether a header token names a subject ID column (or FID)."""
    return _norm(name) in (*ID_NAMES, FID_NAME)


def id_columns(columns: Sequence[str], path: Path) -> tuple[str, str | None]:
    """(subject ID column, FID column or None) of a table's header.

    Raises
    ------
    CohortInputError
        No ID column, several (e.g. ``subject_id`` and ``IID``), or an FID
        without an IID.
    """
    iids = [c for c in columns if _norm(c) in ID_NAMES]
    fids = [c for c in columns if _norm(c) == FID_NAME]
    if len(iids) > 1:
        raise CohortInputError(path, f"several subject ID columns ({', '.join(map(str, iids))}); keep one "
                               f"(recognised: {_EXPECTED})", where="header")
    if len(fids) > 1:
        raise CohortInputError(path, f"several FID columns ({', '.join(map(str, fids))}); keep one", where="header")
    if not iids:
        shown = ", ".join(map(str, list(columns)[:8]))
        if fids:
            raise CohortInputError(path, f"an FID column but no IID column (found {shown}); subjects are keyed by "
                                   "IID: add an IID column", where="header")
        raise CohortInputError(path, f"no subject ID column (found {shown}); expected one of {_EXPECTED}",
                               where="header")
    return iids[0], (fids[0] if fids else None)


def check_ids(path: Path, ids: pd.Series, *, row_offset: int = 2, rows: Sequence[int] | None = None) -> None:
    """Refuse empty or repeated subject IDs, naming the row (``rows`` gives each ID's line number)."""
    where = (lambda i: f"row {rows[i]}") if rows is not None else (lambda i: f"row {i + row_offset}")
    empty = np.flatnonzero(ids.to_numpy() == "")
    if empty.size:
        raise CohortInputError(path, "empty subject ID", where=where(int(empty[0])))
    dup = ids.duplicated(keep="first").to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise CohortInputError(path, f"duplicate subject ID {ids.iloc[i]!r}", where=where(i))
