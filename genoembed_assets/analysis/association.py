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

from .block_source import BlockSource, as_block_source, rows_of
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
JOINT_COLUMNS = ["effect", "se", "stat", "p", "df"]


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


class _JointOLS:
    """Partial F tests of groups of columns against one trait: covariates projected out once."""

    def __init__(self, y: np.ndarray, covariates: np.ndarray):
        design = np.column_stack([np.ones(len(y)), covariates])
        self.q, _ = np.linalg.qr(design)
        self.rank = np.linalg.matrix_rank(design)
        self.y_r = y - self.q @ (self.q.T @ y)
        self.rss0 = float((self.y_r**2).sum())

    def test(self, values: np.ndarray) -> tuple:
        """``(effect, se, stat, p, df)`` of one group (NaNs and df 0 for a rank-0 group)."""
        x_r = values - self.q @ (self.q.T @ values)
        basis = _basis(x_r)
        m = basis.shape[1]
        if m == 0:
            return (np.nan, np.nan, np.nan, np.nan, 0)
        explained = float(((basis.T @ self.y_r) ** 2).sum())
        df = len(self.y_r) - self.rank - m
        f = (explained / m) / ((self.rss0 - explained) / df)
        logp = stats.f.logsf(f, m, df)
        return (explained / self.rss0, np.nan, float(_z_from_logp(logp)), float(np.exp(logp)), m)


def joint_ols_tests(y: np.ndarray, groups: Sequence[np.ndarray], covariates: np.ndarray) -> pd.DataFrame:
    """Partial F test of each group of columns, added to covariates (and an intercept).

    Returns ``effect`` (partial R^2), ``se`` (NaN), ``stat`` (two-sided z with the same p),
    ``p`` and ``df`` (numerical rank of the group) per group.
    """
    tester = _JointOLS(y, covariates)
    return pd.DataFrame([tester.test(values) for values in groups], columns=JOINT_COLUMNS)


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


class _JointCount:
    """Likelihood-ratio tests of groups of columns against one count trait (family and null fit once)."""

    def __init__(self, y: np.ndarray, covariates: np.ndarray, overdispersion_p: float):
        self.y = y
        self.design, self.family, self.model, start, self.info = _count_family(y, covariates, overdispersion_p)
        self.null = sm.GLM(y, self.design, family=self.family).fit(start_params=start)

    def test(self, values: np.ndarray) -> tuple:
        """``(effect, se, stat, p, df)`` of one group (NaNs and df 0 for a rank-0 group)."""
        basis = _basis(values)
        m = basis.shape[1]
        if m == 0:
            return (np.nan, np.nan, np.nan, np.nan, 0)
        basis = basis * np.sqrt(len(self.y))  # unit-variance columns keep IRLS well scaled
        null = self.null
        fit = sm.GLM(self.y, np.column_stack([self.design, basis]), family=self.family).fit(
            start_params=np.append(null.params, np.zeros(m)))
        lr = max(2.0 * (fit.llf - null.llf), 0.0)
        logp = stats.chi2.logsf(lr, m)
        share = (null.deviance - fit.deviance) / null.deviance if null.deviance > 0 else np.nan
        return (share, np.nan, float(_z_from_logp(logp)), float(np.exp(logp)), m)


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
    joint_sets: Mapping[str, Mapping[str, pd.DataFrame] | BlockSource] | None = None,
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
    joint_sets : mapping of kind to block source or mapping of name to DataFrame, optional
        Groups tested jointly, one test per name, e.g.
        ``{"block": {block_id: its latent means (subject_id, z0..)}}`` or
        ``{"block": BlockEmbeddingStore(...)}``. Groups are read one at a time
        (each tested against every trait, then dropped), so a genome-wide
        store is never held in memory at once.
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
    # empty groups test nothing; a mapping is wrapped so every group streams one block at a time
    sources = [(kind, as_block_source(group)) for kind, group in (joint_sets or {}).items()
               if not (isinstance(group, Mapping) and not group)]
    if not kinds and not sources:
        raise ValueError("no features to test: pass feature_sets and/or joint_sets")
    source_ids = [pd.DataFrame({SUBJECT_ID: np.asarray(src.subject_ids).astype(str)}) for _, src in sources]
    frames = align_subjects(phenotypes, *feature_sets.values(), *source_ids, *([pcs] if pcs is not None else []))
    pheno, feats = frames[0], frames[1 : 1 + len(kinds)]
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
    x_all = np.column_stack(columns) if columns else np.empty((len(pheno), 0))
    # one-column tests per trait first; each trait keeps what its joint tests need (subjects kept, tester)
    traits, count_models = [], {}
    for trait, model in models.items():
        y = _transform(pheno[trait], model)
        keep = np.isfinite(y) & np.isfinite(cov).all(axis=1)
        x = standardize(x_all[keep])
        if model == "count":
            table, label, info = _count_tests(y[keep], x, cov[keep], overdispersion_p)
            count_models[trait] = info
            tester = _JointCount(y[keep], cov[keep], overdispersion_p) if sources else None
            joint_test = "joint_lr"
        else:
            table, label = ols_feature_tests(y[keep], x, cov[keep]), "ols_log" if model == "log" else "ols"
            tester = _JointOLS(y[keep], cov[keep]) if sources else None
            joint_test = "joint_f"
        traits.append((trait, label, keep, table.assign(feature=names, kind=kind_of, test="wald", df=1), tester, joint_test))
    # joint tests: one pass over the blocks, each block tested against every trait while it is in memory
    group_names, group_kinds, joint_rows = [], [], [[] for _ in traits]
    for kind, source in sources:
        rows = rows_of(source, pheno[SUBJECT_ID].to_numpy())
        for name, matrix in source.iter_blocks():
            values = np.asarray(matrix[rows], dtype=float)
            if not np.isfinite(values).all():
                raise ValueError(f"joint feature set {name!r} ({kind}) has missing or non-finite values")
            if values.shape[1] == 0 or (values.std(axis=0) == 0).all():
                skipped.append(str(name))
                continue
            group_names.append(str(name))
            group_kinds.append(kind)
            for (_, _, keep, _, tester, _), out_rows in zip(traits, joint_rows):
                out_rows.append(tester.test(values[keep]))
    parts = []
    for (trait, label, keep, table, _, joint_test), out_rows in zip(traits, joint_rows):
        if out_rows:
            joint_table = pd.DataFrame(out_rows, columns=JOINT_COLUMNS)
            table = pd.concat([table, joint_table.assign(feature=group_names, kind=group_kinds, test=joint_test)], ignore_index=True)
        parts.append(table.assign(phenotype=trait, model=label, n=int(keep.sum())))
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
