"""Whole-cohort validation of an ingested (original-layout) folder.

These are the input tests behind the Dagster asset checks: each returns a
:class:`CheckOutcome` rather than raising, so every problem is reported at
once and the UI shows which check failed and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import CohortInputError
from .layout import PHENOTYPES, VALID_GENOTYPES, read_manifest, read_subjects

__all__ = ["CheckOutcome", "validate_ingested_cohort"]


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    message: str
    metadata: dict = field(default_factory=dict)


def validate_ingested_cohort(
    folder: str | Path,
    *,
    max_subject_missing: float = 0.2,
    max_block_missing: float = 0.1,
    pcs: pd.DataFrame | None = None,
) -> list[CheckOutcome]:
    """Run every input check over an ingested cohort folder."""
    folder = Path(folder)
    outcomes: list[CheckOutcome] = []
    try:
        manifest = read_manifest(folder)
        subjects = read_subjects(folder)
    except CohortInputError as exc:
        return [CheckOutcome("cohort_readable", False, str(exc))]
    n = len(subjects)

    dup = pd.Index(subjects)[pd.Index(subjects).duplicated()]
    outcomes.append(CheckOutcome(
        "no_duplicate_ids", dup.empty,
        # rows, not IDs: a check message is stored in Dagster's event log, outside the cohort's access control
        "subject IDs are unique" if dup.empty else f"{folder / 'subjects.tsv'}: duplicate subject IDs at rows "
        f"{[int(i) + 2 for i in np.flatnonzero(pd.Index(subjects).duplicated())[:5]]}",
        {"n_subjects": n},
    ))

    id_problems = []
    pheno_path = folder / PHENOTYPES
    if pheno_path.exists():
        pheno_ids = pd.read_csv(pheno_path, usecols=["subject_id"], dtype=str)["subject_id"].to_numpy()
        if len(pheno_ids) != n or not np.array_equal(pheno_ids, subjects):
            id_problems.append(f"{pheno_path}: subject IDs differ from subjects.tsv in content or order")
    # no phenotype table is a genotype-only cohort, not an inconsistency
    if pcs is not None and not np.array_equal(pcs["subject_id"].astype(str).to_numpy(), subjects):
        id_problems.append("ancestry PCs: subject IDs differ from subjects.tsv in content or order")
    outcomes.append(CheckOutcome(
        "subject_ids_consistent", not id_problems,
        ("subjects.tsv, phenotypes and PCs list the same subjects in the same order" if pheno_path.exists()
         else "no phenotype table (genotype-only cohort); PCs, if given, match subjects.tsv")
        if not id_problems else "; ".join(id_problems),
        {"has_phenotypes": pheno_path.exists()},
    ))

    bad_values, bad_shapes, missing_by_block = [], [], {}
    subject_missing = np.zeros(n, dtype=np.int64)
    total_snps = 0
    for row in manifest.itertuples(index=False):
        path = folder / row.file
        try:
            g = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            bad_shapes.append(f"block {row.block_id} ({path}): unreadable ({exc})")
            continue
        if g.shape != (n, row.n_snps):
            bad_shapes.append(f"block {row.block_id} ({path}): shape {g.shape}, manifest says ({n}, {row.n_snps})")
            continue
        if g.dtype != np.int8 or not np.isin(g, VALID_GENOTYPES).all():
            bad_values.append(f"block {row.block_id} ({path}): dtype {g.dtype} or values outside -1/0/1/2")
            continue
        miss = np.asarray(g) == -1
        subject_missing += miss.sum(axis=1)
        total_snps += g.shape[1]
        missing_by_block[row.block_id] = float(miss.mean())
    outcomes.append(CheckOutcome(
        "block_shapes_match_manifest", not bad_shapes,
        f"all {len(manifest)} blocks match the manifest" if not bad_shapes else "; ".join(bad_shapes[:10]),
        {"n_blocks": len(manifest)},
    ))
    outcomes.append(CheckOutcome(
        "genotype_values_valid", not bad_values,
        "every block is int8 with values in {-1, 0, 1, 2}" if not bad_values else "; ".join(bad_values[:10]),
    ))
    worst_block = max(missing_by_block, key=missing_by_block.get) if missing_by_block else None
    subject_rate = subject_missing / max(total_snps, 1)
    problems = []
    if worst_block is not None and missing_by_block[worst_block] > max_block_missing:
        problems.append(f"block {worst_block} missing rate {missing_by_block[worst_block]:.3f} > {max_block_missing}")
    over = np.flatnonzero(subject_rate > max_subject_missing)
    if over.size:
        problems.append(
            f"{over.size} subject(s) missing more than {max_subject_missing:.0%} of calls, e.g. subjects.tsv row "
            f"{int(over[0]) + 2} ({subject_rate[over[0]]:.1%})"
        )
    outcomes.append(CheckOutcome(
        "missingness_within_bounds", not problems,
        "missingness within bounds" if not problems else "; ".join(problems),
        {
            "max_block_missing_rate": float(max(missing_by_block.values(), default=0.0)),
            "max_subject_missing_rate": float(subject_rate.max(initial=0.0)),
        },
    ))
    return outcomes
