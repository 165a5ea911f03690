"""The ingest record: each block file's size, mtime and SHA-256, taken once at ingest.

Phase 1 decides whether a block is already trained with this input by a hash
of the block file's contents. Re-reading every block file on every run costs a
full read of the cohort (1,703 blocks x all subjects), so the ingest writes
``ingest_record.tsv`` beside the manifest::

    file        relative path, as in manifest.tsv
    size        bytes
    mtime_ns    modification time when the hash was taken
    sha256      hex digest of the file's contents

:func:`content_hashes` trusts a recorded hash only while the file's current
size and mtime_ns equal the recorded ones, and re-hashes otherwise (a folder
ingested before the record existed, a file rewritten or copied without its
mtime). A rewrite within one mtime tick that keeps the size is not detected;
file systems with nanosecond mtimes (ext4, xfs, most object-store mounts with
write times) make that practically impossible for a fresh ingest.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable

import pandas as pd

from .. import storage
from . import layout  # layout imports this module too: attributes are looked up at call time
from .errors import CohortInputError

__all__ = ["RECORD", "RECORD_COLUMNS", "content_hashes", "hash_file", "read_record", "write_record"]

RECORD = "ingest_record.tsv"
RECORD_COLUMNS = ["file", "size", "mtime_ns", "sha256"]
_REHASH = "; delete it to have Phase 1 re-hash the block files, or re-ingest the cohort"


def hash_file(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file's contents (streamed: a biobank-sized block never sits in memory)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def write_record(folder: str | Path, files: Iterable[str], hashes: dict[str, str] | None = None) -> Path:
    """Write ``ingest_record.tsv`` for ``files`` (relative to ``folder``), atomically.

    ``hashes`` gives digests already taken (e.g. right after writing each file);
    files without one are hashed here. Size and mtime are read after hashing,
    so the record describes the file as it is when the record is written.
    """
    folder = Path(folder)
    hashes = hashes or {}
    rows = []
    for rel in files:
        path = folder / rel
        sha = hashes.get(rel) or hash_file(path)
        st = path.stat()
        rows.append((rel, st.st_size, st.st_mtime_ns, sha))
    return storage.write_tsv(folder / RECORD, pd.DataFrame(rows, columns=RECORD_COLUMNS))


def read_record(folder: str | Path) -> dict[str, tuple[int, int, str]]:
    """``file -> (size, mtime_ns, sha256)`` from ``ingest_record.tsv``; {} when the folder has none."""
    path = Path(folder) / RECORD
    if not path.exists():
        return {}
    frame = layout.read_text_tsv(path, RECORD_COLUMNS, hint=_REHASH)
    out = {}
    for i, row in frame.iterrows():
        size, mtime, sha = row["size"].strip(), row["mtime_ns"].strip(), row["sha256"].strip().lower()
        if not (size.isdigit() and mtime.isdigit() and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
            raise CohortInputError(path, f"expected integer size and mtime_ns and a 64-digit hex sha256, got "
                                   f"{row['size']!r}, {row['mtime_ns']!r}, {row['sha256']!r}{_REHASH}",
                                   where=f"row {i + 2} (file {row['file']!r})")  # +2: header is line 1
        out[row["file"]] = (int(size), int(mtime), sha)
    return out


def content_hashes(folder: str | Path, files: Iterable[str]) -> tuple[dict[str, str], dict[str, str]]:
    """SHA-256 of each file's contents, from the ingest record where it still describes the file.

    Parameters
    ----------
    folder
        An ingested cohort folder.
    files
        Paths relative to ``folder`` (manifest ``file`` values).

    Returns
    -------
    hashes, rehashed
        ``file -> sha256`` for every file, and ``file -> reason`` for those
        whose contents had to be read (``"no ingest record"``, ``"not in the
        ingest record"`` or ``"changed since ingest"``).
    """
    folder = Path(folder)
    record = read_record(folder)
    hashes, rehashed = {}, {}
    for rel in files:
        st = (folder / rel).stat()
        known = record.get(rel)
        if known is not None and known[:2] == (st.st_size, st.st_mtime_ns):
            hashes[rel] = known[2]
            continue
        rehashed[rel] = ("no ingest record" if not record else "not in the ingest record" if known is None
                         else "changed since ingest")
        hashes[rel] = hash_file(folder / rel)
    return hashes, rehashed
