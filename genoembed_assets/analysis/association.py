"""Phenotype association of block features and embedding axes.

Each feature (block PC1, subject-embedding axis) is tested against each
phenotype, adjusted for genotype PCs 1-10, age and sex:

* ``log`` traits (IgE, eosinophils): OLS on log(value) (log1p when a zero occurs);
* ``linear`` traits (FEV1): OLS on the value;
* ``count`` traits (exacerbations): Poisson GLM, or negative binomial (NB2)
  when the covariates-only Poisson model is overdispersed by the Cameron &
  Trivedi (1990) auxiliary-regression test (one-sided, p < 0.05). The NB
  dispersion alpha is estimated once on the covariates-only model and then
  held fixed for every feature, as genome-wide count tests do: one
  dispersion fit instead of hundreds, and the per-feature GLMs stay fast.

Features are standardised within each test's subjects, so ``effect`` is per SD
of the feature (log scale for log traits, log rate ratio for counts). OLS uses
the Frisch-Waugh-Lovell form: covariates are projected out once per trait and
every feature is then a one-column regression with exactly statsmodels' OLS
estimate, standard error and t p-value, which makes hundreds of tests take
milliseconds. Rows with a missing phenotype or covariate are dropped per test.
Multiple testing: Benjamini-Hochberg across all tests.

Joint (block-level) tests
-------------------------
``joint_sets`` gives features that are tested as a group, one test per group:
typically a block's whole Phase 1 latent matrix. A block's genetic effect
axis need not be the first principal axis of its latent space (we measured on
the demo cohort: the planted effect axis is 90-99 % inside the latent span,
yet its correlation with the ancestry-adjusted latent PC1 was often below
0.1), so a one-column test of PC1 misses real effects. The joint test asks
whether the block's latent space explains the trait beyond covariates:

* OLS traits: partial F test (covariates projected out, as above);
* count traits: likelihood-ratio test of the GLM with the block's columns
  against the covariates-only GLM (same family and fixed NB alpha).

Columns are reduced to their numerical rank first (SVD), so collapsed latent
units cost nothing. For joint rows ``effect`` is the partial R^2 (OLS) or the
share of deviance explained (counts), ``se`` is NaN, ``df`` the number of
columns tested, and ``stat`` the two-sided z with the same p-value, so
strengths compare across one-column and joint tests.
"""

from __future__ import annotations

from typing import Literal, Mapping, Sequence

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats
from scipy.special import ndtri_exp
from threadpoolctl import threadpool_limits

from .features import SUBJECT_ID, AnalysisResult, align_subjects, ancestry_matrix, feature_columns, standardize

__all__ = [
    "DEFAULT_MODELS",
    "associate_phenotypes",
    "bh_fdr",
    "dispersion_test",
    "infer_models",
    "joint_ols_tests",
    "ols_feature_tests",
]

Model = Literal["log", "linear", "count"]
DEFAULT_MODELS: dict[str, Model] = {"ige": "log", "eosinophils": "log", "fev1": "linear", "exacerbations": "count"}
DEFAULT_COVARIATES = ("age", "sex")


def bh_fdr(pvalues: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values (NaN p-values stay NaN and do not count)."""
    p = np.asarray(pvalues, dtype=float)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return q
    order = np.argsort(p[ok])
    ranked = p[ok][order] * m / np.arange(1, m + 1)
    # enforce monotonicity from the largest p down
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.clip(ranked, 0, 1)
    q[ok] = out
    return q


def ols_feature_tests(y: np.ndarray, features: np.ndarray, covariates: np.ndarray) -> pd.DataFrame:
    """OLS of ``y`` on each feature column plus covariates (and an intercept).

    Returns ``effect, se, stat, p`` per feature, identical to fitting
    ``sm.OLS(y, [1, covariates, feature])`` one feature at a time.
    """
    design = np.column_stack([np.ones(len(y)), covariates])
    q, _ = np.linalg.qr(design)
    rank = np.linalg.matrix_rank(design)
    y_r = y - q @ (q.T @ y)
    x_r = features - q @ (q.T @ features)
    sxx = (x_r**2).sum(axis=0)
    sxy = x_r.T @ y_r
    df = len(y) - rank - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = sxy / sxx
        rss = (y_r**2).sum() - beta * sxy
        se = np.sqrt(rss / df / sxx)
        t = beta / se
    p = 2 * stats.t.sf(np.abs(t), df)
    return pd.DataFrame({"effect": beta, "se": se, "stat": t, "p": p})


def dispersion_test(y: np.ndarray, covariates: np.ndarray) -> dict:
    """Cameron-Trivedi test of Poisson overdispersion (H1: var = mu + alpha mu^2).

    Returns ``{"alpha_ct": estimate, "p": one-sided p}`` from the auxiliary OLS
    of ((y - mu)^2 - y) / mu on mu without intercept.
    """
    design = sm.add_constant(covariates, has_constant="add")
    mu = sm.GLM(y, design, family=sm.families.Poisson()).fit().fittedvalues
    aux = sm.OLS(((y - mu) ** 2 - y) / mu, mu).fit()
    t = float(aux.tvalues[0])
    return {"alpha_ct": float(aux.params[0]), "p": float(stats.t.sf(t, aux.df_resid))}


def _z_from_logp(logp: np.ndarray) -> np.ndarray:
    """Two-sided z with the given log p-value (exact far into the tail)."""
    return -ndtri_exp(np.minimum(np.asarray(logp, dtype=float), 0.0) - np.log(2))


def _basis(values: np.ndarray, rtol: float = 1e-8) -> np.ndarray:
    """An orthonormal basis of the column span of centred ``values`` (numerical rank)."""
    centred = values - values.mean(axis=0)
    if centred.shape[1] == 0:
        return centred
    u, sv, _ = np.linalg.svd(centred, full_matrices=False)
    keep = sv > rtol * max(sv.max(), 1e-300) if sv.size else np.zeros(0, bool)
    return u[:, keep]


def joint_ols_tests(y: np.ndarray, groups: Sequence[np.ndarray], covariates: np.ndarray) -> pd.DataFrame:
    """Partial F test of each group of columns, added to covariates (and an intercept).

    Returns ``effect`` (partial R^2), ``se`` (NaN), ``stat`` (two-sided z with the same p),
    ``p`` and ``df`` (numerical rank of the group) per group.
    """
    design = np.column_stack([np.ones(len(y)), covariates])
    q, _ = np.linalg.qr(design)
    rank = np.linalg.matrix_rank(design)
    y_r = y - q @ (q.T @ y)
    rss0 = float((y_r**2).sum())
    rows = []
    for values in groups:
        x_r = values - q @ (q.T @ values)
        basis = _basis(x_r)
        m = basis.shape[1]
        if m == 0:
            rows.append((np.nan, np.nan, np.nan, np.nan, 0))
            continue
        explained = float(((basis.T @ y_r) ** 2).sum())
        df = len(y) - rank - m
        f = (explained / m) / ((rss0 - explained) / df)
        logp = stats.f.logsf(f, m, df)
        rows.append((explained / rss0, np.nan, float(_z_from_logp(logp)), float(np.exp(logp)), m))
    return pd.DataFrame(rows, columns=["effect", "se", "stat", "p", "df"])


def _count_family(y, covariates, overdispersion_p):
    """The count family (Poisson, or NB2 with alpha fixed from the covariates-only fit) and its null fit."""
    design = sm.add_constant(covariates, has_constant="add")
    disp = dispersion_test(y, covariates)
    if disp["p"] < overdispersion_p:
        null = sm.NegativeBinomial(y, design, loglike_method="nb2").fit(disp=0, maxiter=200)
        alpha = float(null.params[-1])
        family, model, start = sm.families.NegativeBinomial(alpha=alpha), "negbin", null.params[:-1]
    else:
        alpha = 0.0
        null = sm.GLM(y, design, family=sm.families.Poisson()).fit()
        family, model, start = sm.families.Poisson(), "poisson", null.params
    info = {"model": model, "alpha": alpha, "dispersion_p": disp["p"], "alpha_ct": disp["alpha_ct"]}
    return design, family, model, np.asarray(start), info


def _joint_count_tests(y, groups, covariates, overdispersion_p):
    design, family, model, start, info = _count_family(y, covariates, overdispersion_p)
    null = sm.GLM(y, design, family=family).fit(start_params=start)
    rows = []
    for values in groups:
        basis = _basis(values)
        m = basis.shape[1]
        if m == 0:
            rows.append((np.nan, np.nan, np.nan, np.nan, 0))
            continue
        basis = basis * np.sqrt(len(y))  # unit-variance columns keep IRLS well scaled
        fit = sm.GLM(y, np.column_stack([design, basis]), family=family).fit(start_params=np.append(null.params, np.zeros(m)))
        lr = max(2.0 * (fit.llf - null.llf), 0.0)
        logp = stats.chi2.logsf(lr, m)
        share = (null.deviance - fit.deviance) / null.deviance if null.deviance > 0 else np.nan
        rows.append((share, np.nan, float(_z_from_logp(logp)), float(np.exp(logp)), m))
    return pd.DataFrame(rows, columns=["effect", "se", "stat", "p", "df"]), model, info


def _count_tests(y, features, covariates, overdispersion_p):
    design, family, model, start, info = _count_family(y, covariates, overdispersion_p)
    rows = []
    start = np.append(start, 0.0)  # warm start from the null fit
    for j in range(features.shape[1]):
        fit = sm.GLM(y, np.column_stack([design, features[:, j]]), family=family).fit(start_params=start)
        rows.append((fit.params[-1], fit.bse[-1], fit.tvalues[-1], fit.pvalues[-1]))
    table = pd.DataFrame(rows, columns=["effect", "se", "stat", "p"])
    return table, model, info


def infer_models(phenotypes: pd.DataFrame, covariates: Sequence[str] = DEFAULT_COVARIATES) -> dict[str, Model]:
    """A model per trait column of ``phenotypes`` (every numeric column but IDs and covariates).

    Known demo traits keep :data:`DEFAULT_MODELS`; another trait whose observed
    values are all non-negative integers with more than two distinct values is
    a ``count``; anything else is ``linear``.
    """
    models: dict[str, Model] = {}
    for col in feature_columns(phenotypes):
        if col in covariates:
            continue
        if col in DEFAULT_MODELS:
            models[col] = DEFAULT_MODELS[col]
            continue
        y = phenotypes[col].to_numpy(dtype=float)
        y = y[np.isfinite(y)]
        is_count = y.size > 0 and (y >= 0).all() and np.array_equal(y, np.round(y)) and np.unique(y).size > 2
        models[col] = "count" if is_count else "linear"
    return models


def _transform(values: pd.Series, model: Model) -> np.ndarray:
    y = values.to_numpy(dtype=float)
    if model == "log":
        if (y[np.isfinite(y)] < 0).any():
            raise ValueError(f"phenotype {values.name!r} has negative values; it cannot be log-transformed")
        return np.log1p(y) if (y[np.isfinite(y)] == 0).any() else np.log(y)
    return y


# hundreds of small fits: multi-threaded BLAS costs far more than it saves (16x slower
# measured on 2 shared cores), so run them single-threaded
@threadpool_limits.wrap(limits=1)
def associate_phenotypes(
    feature_sets: Mapping[str, pd.DataFrame],
    phenotypes: pd.DataFrame,
    pcs: pd.DataFrame | None,
    *,
    joint_sets: Mapping[str, Mapping[str, pd.DataFrame]] | None = None,
    models: Mapping[str, Model] | None = None,
    covariates: Sequence[str] = DEFAULT_COVARIATES,
    n_pcs: int = 10,
    overdispersion_p: float = 0.05,
) -> AnalysisResult:
    """Test every feature (and every joint group) against every phenotype (see the module docstring).

    Parameters
    ----------
    feature_sets : mapping of kind to DataFrame
        E.g. ``{"block": block_pc1_features(...), "embedding": subject_embedding}``;
        each ``subject_id`` plus numeric feature columns, one test per column.
    phenotypes : DataFrame
        ``subject_id`` plus the traits and the covariate columns.
    pcs : DataFrame or None
        Genotype PCs ``subject_id, PC1..`` (None: no ancestry adjustment).
    joint_sets : mapping of kind to mapping of name to DataFrame, optional
        Groups tested jointly, one test per name, e.g.
        ``{"block": {block_id: its latent means (subject_id, z0..)}}``.
    models : mapping of phenotype to {"log", "linear", "count"}, optional
        Default: the demo traits present (ige, eosinophils: log; fev1: linear;
        exacerbations: count).
    covariates : sequence of str
        Phenotype-table columns adjusted for (default age, sex; missing ones are skipped).
    n_pcs : int
    overdispersion_p : float
        Level of the dispersion test that switches counts from Poisson to NB.

    Returns
    -------
    AnalysisResult
        ``table``: ``feature, kind, phenotype, model, test, df, effect, se, stat, p, q, n``
        (model: ols_log, ols, poisson or negbin; test: wald (one column),
        joint_f or joint_lr). ``summary``: ``n_tests``, ``n_significant``
        (q < 0.05), ``phenotypes``, ``strongest`` (the test with the largest
        |stat|), ``strongest_phenotype``, ``per_phenotype`` (min p, number
        with q < 0.05, max |stat|), ``count_models`` (dispersion test and
        alpha per count trait), ``skipped_features`` (constant columns, not tested).
    """
    if models is None:
        models = {k: v for k, v in DEFAULT_MODELS.items() if k in phenotypes.columns}
    missing = [p for p in models if p not in phenotypes.columns]
    if missing:
        raise ValueError(f"phenotypes {missing} are not columns of the phenotype table ({list(phenotypes.columns)})")
    if not models:
        raise ValueError("no phenotype to test: pass models={column: 'log'|'linear'|'count'}")
    for trait, model in models.items():
        if model not in ("log", "linear", "count"):
            raise ValueError(f"model for {trait!r} must be 'log', 'linear' or 'count', got {model!r}")
    kinds = list(feature_sets)
    joint = [(kind, str(name), frame) for kind, group in (joint_sets or {}).items() for name, frame in group.items()]
    if not kinds and not joint:
        raise ValueError("no features to test: pass feature_sets and/or joint_sets")
    frames = align_subjects(phenotypes, *feature_sets.values(), *[f for _, _, f in joint], *([pcs] if pcs is not None else []))
    pheno, feats = frames[0], frames[1 : 1 + len(kinds)]
    joint_frames = frames[1 + len(kinds) : 1 + len(kinds) + len(joint)]
    cov_cols = [c for c in covariates if c in pheno.columns]
    cov = pheno[cov_cols].to_numpy(dtype=float)
    if pcs is not None:
        cov = np.column_stack([ancestry_matrix(frames[-1], n_pcs), cov])
    names, kind_of, skipped = [], [], []
    columns = []
    for kind, frame in zip(kinds, feats):
        for col in feature_columns(frame):
            values = frame[col].to_numpy(dtype=float)
            if not np.isfinite(values).all():
                raise ValueError(f"feature {col!r} ({kind}) has missing or non-finite values")
            if values.std() == 0:
                skipped.append(str(col))
                continue
            names.append(str(col))
            kind_of.append(kind)
            columns.append(values)
    groups, group_names, group_kinds = [], [], []
    for (kind, name, _), frame in zip(joint, joint_frames):
        values = frame[feature_columns(frame)].to_numpy(dtype=float)
        if not np.isfinite(values).all():
            raise ValueError(f"joint feature set {name!r} ({kind}) has missing or non-finite values")
        if values.shape[1] == 0 or (values.std(axis=0) == 0).all():
            skipped.append(name)
            continue
        groups.append(values)
        group_names.append(name)
        group_kinds.append(kind)
    x_all = np.column_stack(columns) if columns else np.empty((len(pheno), 0))
    parts, count_models = [], {}
    for trait, model in models.items():
        y = _transform(pheno[trait], model)
        keep = np.isfinite(y) & np.isfinite(cov).all(axis=1)
        x = standardize(x_all[keep])
        kept_groups = [g[keep] for g in groups]
        if model == "count":
            table, label, info = _count_tests(y[keep], x, cov[keep], overdispersion_p)
            count_models[trait] = info
            joint_table = _joint_count_tests(y[keep], kept_groups, cov[keep], overdispersion_p)[0] if groups else None
            joint_test = "joint_lr"
        else:
            table, label = ols_feature_tests(y[keep], x, cov[keep]), "ols_log" if model == "log" else "ols"
            joint_table = joint_ols_tests(y[keep], kept_groups, cov[keep]) if groups else None
            joint_test = "joint_f"
        table = table.assign(feature=names, kind=kind_of, test="wald", df=1)
        if joint_table is not None:
            table = pd.concat([table, joint_table.assign(feature=group_names, kind=group_kinds, test=joint_test)], ignore_index=True)
        table = table.assign(phenotype=trait, model=label, n=int(keep.sum()))
        parts.append(table)
    out = pd.concat(parts, ignore_index=True)
    out["df"] = out["df"].astype(int)
    out["q"] = bh_fdr(out["p"].to_numpy())
    out = out[["feature", "kind", "phenotype", "model", "test", "df", "effect", "se", "stat", "p", "q", "n"]]
    return AnalysisResult(table=out, summary=_summary(out, count_models, skipped))


def _summary(table: pd.DataFrame, count_models: dict, skipped: list) -> dict:
    strength = table["stat"].abs()
    per = {}
    for trait, rows in table.groupby("phenotype", sort=False):
        per[trait] = {
            "min_p": float(rows["p"].min()),
            "n_q05": int((rows["q"] < 0.05).sum()),
            "max_abs_stat": float(rows["stat"].abs().max()),
        }
    if strength.notna().any():
        top = table.loc[strength.idxmax()]
        strongest = {k: (v.item() if hasattr(v, "item") else v) for k, v in top.items()}
    else:
        strongest = None
    return {
        "n_tests": int(len(table)),
        "n_significant": int((table["q"] < 0.05).sum()),
        "phenotypes": list(per),
        "strongest": strongest,
        "strongest_phenotype": None if strongest is None else str(strongest["phenotype"]),
        "per_phenotype": per,
        "count_models": count_models,
        "skipped_features": skipped,
    }
