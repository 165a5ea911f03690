"""Split an original-layout cohort folder by subjects (pure, no Dagster).

Used to test projection: train a reference on one part, project the other.
Each part is a complete cohort folder (manifest, blocks, subjects, phenotypes,
eigenvec, settings), plus ``variants.parquet`` built from the simulator's
``variants.tsv`` so that ingestion keeps real positions and alleles and the
parts can be matched variant by variant, and ``truth_subjects.tsv`` cut to
the part's subjects when the folder has one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .. import storage
from .layout import BlockArray, find_eigenvec, load_block, read_cohort_settings, read_manifest, read_subjects, write_cohort
from .sources import VARIANT_COLUMNS, VARIANTS

__all__ = ["split_cohort"]

TRUTH_SUBJECTS = "truth_subjects.tsv"
SIMULATED_VARIANTS = "variants.tsv"


def split_cohort(folder: str | Path, parts: dict[str, Sequence[int]]) -> dict[str, Path]:
    """Write one cohort folder per entry of ``parts`` (``out folder -> subject row indices``).

    Returns the written folders by the keys given.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    subjects = read_subjects(folder)
    settings = read_cohort_settings(folder)
    pheno = pd.read_csv(folder / "phenotypes.csv", dtype={"subject_id": str}) if (folder / "phenotypes.csv").exists() else None
    eigen_path = find_eigenvec(folder)
    eigen = pd.read_csv(eigen_path, sep="\t", dtype={"IID": str, "#FID": str}) if eigen_path else None
    truth = pd.read_csv(folder / TRUTH_SUBJECTS, sep="\t", dtype={"subject_id": str}) if (folder / TRUTH_SUBJECTS).exists() else None
    variants = _variants(folder)
    for out, index in parts.items():
        out = Path(out)
        index = np.asarray(index, dtype=np.int64)
        ids = subjects[index]
        keep = set(ids)
        blocks = (BlockArray(r.block_id, str(r.chrom), int(r.start), int(r.end),
                             np.asarray(load_block(folder, r._asdict(), len(subjects), mmap=True)[index]))
                  for r in manifest.itertuples(index=False))
        phen = None if pheno is None else pheno.set_index("subject_id").loc[ids].reset_index()
        eig = None
        if eigen is not None:
            eig = eigen.set_index("IID").loc[ids].reset_index().drop(columns="#FID").rename(columns={"IID": "subject_id"})
        out.mkdir(parents=True, exist_ok=True)
        if variants is not None:
            storage.write_parquet(out / VARIANTS, variants)
        if truth is not None:
            storage.write_tsv(out / TRUTH_SUBJECTS, truth[truth["subject_id"].isin(keep)])
        write_cohort(out, ids, blocks, phenotypes=phen, eigenvec=eig, settings=settings)
    return {key: Path(key) for key in parts}


def _variants(folder: Path) -> pd.DataFrame | None:
    """``variants.parquet`` in the ingest's columns, from the simulator's ``variants.tsv``."""
    path = folder / SIMULATED_VARIANTS
    if not path.exists():
        return None
    table = pd.read_csv(path, sep="\t", dtype={"chrom": str, "ref": str, "alt": str})
    table = table.rename(columns={"variant_id": "id"})
    table["source_index"] = table.groupby("block_id").cumcount()
    table["pos"] = table["pos"].astype("Int64")
    return table[VARIANT_COLUMNS]
