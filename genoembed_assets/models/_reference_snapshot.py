"""Frozen, versioned copies of a reference cohort's models (pure, no Dagster).

A projected cohort must keep meaning what it meant when it was projected,
even after the reference is retrained. So projection never reads the
reference's live ``results/<reference>/`` folder: it first freezes what it
needs into ``results/<new>/reference/<reference>-<version>/`` and reads only
that snapshot. Files are hard-linked (copied across file systems): the
reference writes every artifact by atomic rename, so retraining gives the
reference a new file and leaves the linked one as it was.

The version is the first 12 hex digits of a SHA-256 over the snapshot's
files (path and content hash of each), so the same models always give the
same version and any retrained block gives a new one. ``reference.json`` in
the snapshot lists every file with its SHA-256 and each block's training
fingerprint (input file + config, see ``defs/models/block_embeddings.py``);
it is written last and marks the snapshot complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import storage
from ..genotypes.errors import CohortInputError

__all__ = ["ReferenceSnapshot", "freeze_reference", "open_snapshot"]

SNAPSHOT_JSON = "reference.json"
PHASE1_FILES = ("model.pt", "metrics.json", "embedding.npy")
# Optional: present once the reference ran Phase 2 and its clustering.
PHASE2_FILES = ("metrics.json", "subject_embeddings.parquet", "block_importance.parquet")
ANALYSIS_FILES = ("subject_clusters.parquet",)
INPUT_FILES = ("manifest.tsv", "variants.parquet", "subjects.tsv")


@dataclass(frozen=True)
class ReferenceSnapshot:
    """A frozen reference: its folder (laid out like a cohort's results), name, version and manifest."""

    folder: Path
    reference: str
    version: str
    info: dict

    @property
    def manifest(self) -> pd.DataFrame:
        return pd.read_csv(self.folder / "input" / "manifest.tsv", sep="\t", dtype={"block_id": str, "chrom": str})

    @property
    def variants(self) -> pd.DataFrame:
        return pd.read_parquet(self.folder / "input" / "variants.parquet")

    def phase1_dir(self, block: str) -> Path:
        return self.folder / "phase1" / block

    @property
    def phase2_dir(self) -> Path:
        return self.folder / "phase2"

    @property
    def label(self) -> str:
        return f"{self.reference}-{self.version}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _wanted(reference_dir: Path) -> list[str]:
    """Relative paths to freeze; names the first missing Phase 1 file."""
    manifest_path = reference_dir / "input" / "manifest.tsv"
    if not manifest_path.exists():
        raise CohortInputError(manifest_path, "the reference cohort has no ingested input; materialize it (genoembed run) first")
    blocks = pd.read_csv(manifest_path, sep="\t", dtype={"block_id": str})["block_id"]
    files = [f"input/{n}" for n in INPUT_FILES if (reference_dir / "input" / n).exists()]
    for block in blocks:
        for name in PHASE1_FILES:
            rel = f"phase1/{block}/{name}"
            if not (reference_dir / rel).exists():
                raise CohortInputError(reference_dir / rel, "missing: the reference's block model is not trained; "
                                       "materialize block_embeddings of the reference first", where=f"block {block}")
            files.append(rel)
    phase2 = reference_dir / "phase2"
    files += sorted(f"phase2/{p.name}" for p in phase2.glob("model_seed*.pt"))
    files += [f"phase2/{n}" for n in PHASE2_FILES if (phase2 / n).exists()]
    files += [f"analysis/{n}" for n in ANALYSIS_FILES if (reference_dir / "analysis" / n).exists()]
    return files


def _place(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst)


def freeze_reference(reference_dir: str | os.PathLike, reference: str, snapshots_root: str | os.PathLike) -> ReferenceSnapshot:
    """Freeze the reference's current models under ``snapshots_root/<reference>-<version>/``.

    Idempotent: the same models give the same version, and an existing
    complete snapshot of that version is reused as it is.

    Raises
    ------
    CohortInputError
        When the reference has no ingested input or an untrained block.
    """
    reference_dir, snapshots_root = Path(reference_dir), Path(snapshots_root)
    files = _wanted(reference_dir)
    hashes = {rel: _sha256(reference_dir / rel) for rel in files}
    version = hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:12]
    folder = snapshots_root / f"{reference}-{version}"
    if (folder / SNAPSHOT_JSON).exists():
        return open_snapshot(folder)
    fingerprints = {}
    for marker in sorted((reference_dir / "phase1").glob("*/fingerprint.json")):
        fingerprints[marker.parent.name] = json.loads(marker.read_text()).get("fingerprint")
    snapshots_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=snapshots_root))
    try:
        for rel in files:
            _place(reference_dir / rel, tmp / rel)
        # a file replaced while we linked it: the hashes would not describe the snapshot
        changed = [rel for rel in files if _sha256(tmp / rel) != hashes[rel]]
        if changed:
            raise RuntimeError(f"the reference {reference!r} changed while it was frozen ({changed[0]}); try again")
        info = {"reference": reference, "version": version, "source": str(reference_dir),
                "files": hashes, "block_fingerprints": fingerprints}
        storage.write_json(tmp / SNAPSHOT_JSON, info)
        try:
            os.replace(tmp, folder)
        except OSError:  # another run froze the same version meanwhile
            if not (folder / SNAPSHOT_JSON).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return open_snapshot(folder)


def open_snapshot(folder: str | os.PathLike) -> ReferenceSnapshot:
    """Read a complete snapshot folder (its ``reference.json``)."""
    folder = Path(folder)
    path = folder / SNAPSHOT_JSON
    if not path.exists():
        raise CohortInputError(path, "missing: not a complete reference snapshot")
    info = json.loads(path.read_text())
    return ReferenceSnapshot(folder=folder, reference=info["reference"], version=info["version"], info=info)
