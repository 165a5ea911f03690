"""Missing-aware variant QC for int8 genotype blocks.

Every statistic here counts observed entries only: -1 (missing) never enters
an allele count as if it were 0, which is the silent bias the design forbids.
"""

from __future__ import annotations

import numpy as np

__all__ = ["allele_stats", "block_qc", "filter_variants"]


def allele_stats(genotypes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-variant observed count, ALT allele frequency and missing rate.

    Parameters
    ----------
    genotypes
        int8 matrix (subjects x variants) with values in {-1, 0, 1, 2}.

    Returns
    -------
    n_obs : numpy.ndarray of int64
        Observed (non-missing) calls per variant.
    alt_freq : numpy.ndarray of float64
        ALT allele frequency among observed calls; NaN where nothing is observed.
    missing_rate : numpy.ndarray of float64
        Fraction of subjects missing per variant (0 for a matrix without subjects).
    """
    g = np.asarray(genotypes)
    observed = g >= 0
    n_obs = observed.sum(axis=0, dtype=np.int64)
    # where() keeps -1 out of the dosage sum instead of letting it subtract
    alt = np.where(observed, g, 0).sum(axis=0, dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        alt_freq = np.where(n_obs > 0, alt / (2.0 * np.maximum(n_obs, 1)), np.nan)
    n = g.shape[0]
    missing_rate = (n - n_obs) / n if n else np.zeros(g.shape[1])
    return n_obs, alt_freq, np.asarray(missing_rate, dtype=float)


def filter_variants(
    genotypes: np.ndarray, maf_min: float = 0.01, max_missing: float = 0.1
) -> tuple[np.ndarray, dict[str, int]]:
    """Keep variants with missing rate <= ``max_missing`` and MAF >= ``maf_min``.

    The missingness test runs first; the MAF test is applied to the variants
    that pass it, so ``n_kept + failed_missing + failed_maf == n_in``.

    Parameters
    ----------
    genotypes
        int8 matrix (subjects x variants), -1 = missing.
    maf_min
        Minimum minor allele frequency among observed calls (inclusive).
    max_missing
        Maximum fraction of missing calls (inclusive).

    Returns
    -------
    keep : numpy.ndarray of bool
        One flag per variant.
    counts : dict
        ``n_in``, ``failed_missing``, ``failed_maf``, ``n_monomorphic``
        (observed MAF == 0, a subset of ``failed_maf`` when ``maf_min > 0``)
        and ``n_kept``.
    """
    if not 0.0 <= maf_min <= 0.5:
        raise ValueError(f"maf_min must be within [0, 0.5], got {maf_min}")
    if not 0.0 <= max_missing <= 1.0:
        raise ValueError(f"max_missing must be within [0, 1], got {max_missing}")
    n_obs, alt_freq, missing_rate = allele_stats(genotypes)
    maf = np.minimum(alt_freq, 1.0 - alt_freq)
    pass_missing = (missing_rate <= max_missing) & (n_obs > 0)
    # NaN MAF (nothing observed) already failed missingness; treat it as 0 here
    pass_maf = np.nan_to_num(maf, nan=0.0) >= maf_min
    keep = pass_missing & pass_maf
    counts = {
        "n_in": int(keep.size),
        "failed_missing": int((~pass_missing).sum()),
        "failed_maf": int((pass_missing & ~pass_maf).sum()),
        "n_monomorphic": int((n_obs > 0).sum() - (np.nan_to_num(maf, nan=0.0) > 0).sum()),
        "n_kept": int(keep.sum()),
    }
    return keep, counts


def block_qc(genotypes: np.ndarray) -> dict[str, float | int]:
    """Summary statistics of one block, all computed over observed calls.

    Returns
    -------
    dict
        ``n_subjects``, ``n_snps``, ``missing_rate`` (overall fraction),
        ``missing_rate_max_snp``, ``missing_rate_max_subject``,
        ``n_all_missing_snps``, ``maf_mean``, ``maf_min``, ``maf_max``
        (over variants with at least one call; NaN when there are none),
        ``n_monomorphic`` and ``het_rate`` (fraction of observed calls that
        are heterozygous).
    """
    g = np.asarray(genotypes)
    n_subjects, n_snps = g.shape
    n_obs, alt_freq, missing_rate = allele_stats(g)
    maf = np.minimum(alt_freq, 1.0 - alt_freq)
    seen = n_obs > 0
    total = g.size
    n_observed = int(n_obs.sum())
    subject_missing = (g < 0).mean(axis=1) if n_snps else np.zeros(n_subjects)
    return {
        "n_subjects": int(n_subjects),
        "n_snps": int(n_snps),
        "missing_rate": float((total - n_observed) / total) if total else 0.0,
        "missing_rate_max_snp": float(missing_rate.max()) if n_snps else 0.0,
        "missing_rate_max_subject": float(subject_missing.max()) if n_subjects else 0.0,
        "n_all_missing_snps": int((~seen).sum()),
        "maf_mean": float(maf[seen].mean()) if seen.any() else float("nan"),
        "maf_min": float(maf[seen].min()) if seen.any() else float("nan"),
        "maf_max": float(maf[seen].max()) if seen.any() else float("nan"),
        "n_monomorphic": int((maf[seen] == 0).sum()),
        "het_rate": float((g == 1).sum() / n_observed) if n_observed else float("nan"),
    }
