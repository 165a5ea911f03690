"""Pure checks on analysis outputs; the Dagster layer turns them into asset checks.

Each returns a :class:`CheckOutcome` ``(passed, message, metadata)``.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "CheckOutcome",
    "check_all_finite",
    "check_cluster_sizes",
    "check_phenotypes_tested",
    "check_pvalues_vary",
]


class CheckOutcome(NamedTuple):
    passed: bool
    message: str
    metadata: dict


def check_all_finite(table: pd.DataFrame, columns: Sequence[str] | None = None) -> CheckOutcome:
    """Every value in the numeric ``columns`` (default: all numeric) is finite."""
    cols = list(columns) if columns is not None else [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])]
    bad = {c: int((~np.isfinite(table[c].to_numpy(dtype=float))).sum()) for c in cols}
    bad = {c: n for c, n in bad.items() if n}
    if bad:
        return CheckOutcome(False, f"non-finite values in {', '.join(f'{c} ({n})' for c, n in bad.items())}", {"non_finite": bad})
    return CheckOutcome(True, f"all {len(cols)} numeric columns finite over {len(table)} rows", {"n_rows": len(table)})


def check_cluster_sizes(labels: pd.DataFrame | np.ndarray, min_size: int = 10, column: str = "cluster") -> CheckOutcome:
    """No cluster (noise label -1 excluded) has fewer than ``min_size`` members."""
    values = np.asarray(labels[column] if isinstance(labels, pd.DataFrame) else labels)
    values = values[values >= 0]
    ids, counts = np.unique(values, return_counts=True)
    sizes = {int(i): int(c) for i, c in zip(ids, counts)}
    small = {i: c for i, c in sizes.items() if c < min_size}
    if small:
        return CheckOutcome(False, f"clusters below {min_size} subjects: {small}", {"sizes": sizes, "min_size": min_size})
    return CheckOutcome(True, f"{len(sizes)} clusters, smallest {min(counts, default=0)} >= {min_size}", {"sizes": sizes, "min_size": min_size})


def check_pvalues_vary(table: pd.DataFrame, column: str = "p") -> CheckOutcome:
    """The p-values are in [0, 1] and not all identical (a sign of a broken test)."""
    p = table[column].to_numpy(dtype=float)
    p = p[np.isfinite(p)]
    if p.size == 0:
        return CheckOutcome(False, f"no finite {column!r} values", {"n": 0})
    if (p < 0).any() or (p > 1).any():
        return CheckOutcome(False, f"{column!r} values outside [0, 1]", {"min": float(p.min()), "max": float(p.max())})
    if p.size > 1 and np.ptp(p) == 0:
        return CheckOutcome(False, f"all {p.size} {column!r} values equal {p[0]:.3g}", {"n": int(p.size)})
    return CheckOutcome(True, f"{p.size} {column!r} values in [{p.min():.3g}, {p.max():.3g}]", {"n": int(p.size)})


def check_phenotypes_tested(table: pd.DataFrame, expected: Sequence[str]) -> CheckOutcome:
    """The association table holds rows for every expected phenotype."""
    present = set(table["phenotype"].astype(str)) if "phenotype" in table.columns else set()
    missing = sorted(set(expected) - present)
    if missing:
        return CheckOutcome(False, f"phenotypes missing from the association table: {missing}", {"missing": missing})
    return CheckOutcome(True, f"all {len(set(expected))} phenotypes tested", {"phenotypes": sorted(present)})
