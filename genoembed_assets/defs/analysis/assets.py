"""The analyses of one cohort: thin assets over ``genoembed_assets.analysis``.

Each asset reads the upstream files of its cohort, calls one pure analysis,
writes ``analysis/<name>.parquet`` + ``.json`` + ``.png`` (atomically), and
reports headline figures, an inline figure preview and its asset checks. All are
cohort-partitioned, follow their upstream eagerly and carry a freshness policy
(see docs/design.md, "Analyses").

No ``from __future__ import annotations`` here: Dagster resolves Config
annotations at runtime.
"""

from datetime import timedelta

import dagster as dg

from ... import analysis as an
from ..automation.conditions import AFTER_EVERY_BLOCK
from ..metadata import markdown_table
from ..partitions import all_blocks_of_cohort, cohort_partitions
from ..resources import GenoembedStorage
from . import _io
from ..models import projection
from .reference_clusters import projected_clusters

GROUP = "analysis"

#: The analyses rerun on their own when upstream changes (eager automation); a
#: materialization older than a week warns and one older than 30 days fails, so a
#: cohort whose analyses stopped following its embeddings shows in the UI.
ANALYSIS_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(days=30), warn_window=timedelta(days=7))

BLOCK_EMBEDDINGS = dg.AssetDep("block_embeddings", partition_mapping=all_blocks_of_cohort)

FINITE = ("statistics_finite", "Every statistic in the table is finite (no NaN or infinite values).")
WARN = dg.AssetCheckSeverity.WARN


def analysis_asset(name: str, *, deps: list, checks: list[tuple[str, str]], description: str):
    """The decorator every analysis shares: partitions, group, automation, freshness, checks."""
    return dg.asset(
        name=name,
        partitions_def=cohort_partitions,
        group_name=GROUP,
        deps=deps,
        kinds={"pandas", "parquet", "matplotlib"},
        check_specs=[dg.AssetCheckSpec(check, asset=name, description=text) for check, text in checks],
        automation_condition=AFTER_EVERY_BLOCK,
        freshness_policy=ANALYSIS_FRESHNESS,
        description=description,
    )


def _report(context, storage: GenoembedStorage, name: str, result: an.AnalysisResult, plot, keys: tuple, *,
            extra: dict | None = None, checks=()) -> dg.MaterializeResult:
    """Write the result and its figure (``plot(result, path)``), then report headline figures, files and checks."""
    paths = _io.write_result(storage, context.partition_key, name, result)
    plot(result, paths["figure"])
    return dg.MaterializeResult(
        metadata={
            **_io.headline(result.summary, keys),
            **(extra or {}),
            "path": dg.MetadataValue.path(str(paths["table"])),
            **_io.figure_metadata(paths["figure"]),
        },
        check_results=list(checks),
    )


# --------------------------------------------------------------------------- block features


class BlockFeaturesConfig(dg.Config):
    """PC1 of each block's Phase 1 embedding, computed once for every analysis."""

    adjust_for_ancestry: bool = True
    n_pcs: int = 10


@analysis_asset(
    "block_features",
    deps=[BLOCK_EMBEDDINGS, "ancestry_pcs", "cohort_input"],
    checks=[FINITE, ("every_block_has_a_feature", "Every block of the cohort has a Phase 1 embedding and a feature (warning).")],
    description="Per subject and block: PC1 of the block's Phase 1 latent means, residualised on the "
    "genotype PCs (ancestry-adjusted by default) and scaled to unit variance. Read by block_drivers, "
    "leave_region_out (and phenotype_associations with block_test='pc1'). analysis/block_features.parquet",
)
def block_features(context: dg.AssetExecutionContext, config: BlockFeaturesConfig, storage: GenoembedStorage) -> dg.MaterializeResult:
    cohort = context.partition_key
    blocks = _io.cohort_blocks(storage, cohort)
    embeddings, missing = _io.block_embedding_store(storage, cohort, blocks)
    pcs = _io.ancestry_pcs(storage, cohort) if config.adjust_for_ancestry else None
    features = an.block_pc1_features(embeddings, covariates=pcs, n_pcs=config.n_pcs)
    context.log.info(f"{cohort}: block features for {embeddings.n_blocks} blocks x {len(features)} subjects; missing {missing}")
    result = an.AnalysisResult(
        table=features,
        summary={"n_blocks": embeddings.n_blocks, "n_subjects": len(features), "missing_blocks": missing,
                 "adjusted_for_ancestry": config.adjust_for_ancestry},
    )
    labels = _io.labels_of(_io.block_annotation(storage, cohort, blocks))
    complete = an.CheckOutcome(not missing, f"{len(missing)} block(s) without a Phase 1 embedding: {missing[:10]}" if missing
                               else f"all {embeddings.n_blocks} blocks have a feature", {"missing": missing})
    return _report(
        context, storage, "block_features", result, lambda r, path: an.plot_block_features(r.table, path, block_labels=labels),
        ("n_blocks", "n_subjects", "adjusted_for_ancestry"),
        checks=[_io.check_result(FINITE[0], an.check_all_finite(features)), _io.check_result("every_block_has_a_feature", complete, WARN)],
    )


# --------------------------------------------------------------------------- clusters


class ClusterConfig(dg.Config):
    """Subject clustering of the Phase 2 embedding (see analysis/clusters.py)."""

    adjust_for_ancestry: bool = True
    k_min: int = 2
    k_max: int = 8
    n_seeds: int = 10
    stability_min: float = 0.8
    n_null: int = 10
    z_min: float = 3.0
    min_cluster_size: int = 10
    seed: int = 0


@analysis_asset(
    "subject_clusters",
    deps=["subject_embeddings", "ancestry_pcs"],
    checks=[FINITE, ("cluster_sizes_above_floor", "No k-means cluster is smaller than min_cluster_size (warning).")],
    description="k-means clusters of the subject embedding after regressing out the ancestry PCs; k by "
    "subsample stability (mean ARI over seeds) and silhouette against Gaussian and uniform nulls of the same covariance "
    "(k=1: no discrete clusters, the structure is continuous); HDBSCAN as a second opinion. "
    "analysis/subject_clusters.parquet (+ _k_scan)",
)
def subject_clusters(context: dg.AssetExecutionContext, config: ClusterConfig, storage: GenoembedStorage) -> dg.MaterializeResult:
    cohort = context.partition_key
    snapshot = projection.snapshot_of(storage, cohort)
    if snapshot is not None:  # a projected cohort keeps the reference's clusters
        return projected_clusters(context, storage, snapshot, config.min_cluster_size, FINITE[0], "cluster_sizes_above_floor")
    result = an.cluster_subjects(
        _io.subject_embedding(storage, cohort), _io.ancestry_pcs(storage, cohort),
        adjust_for_ancestry=config.adjust_for_ancestry, k_range=range(config.k_min, config.k_max + 1),
        n_seeds=config.n_seeds, stability_min=config.stability_min, n_null=config.n_null, z_min=config.z_min,
        random_state=config.seed,
    )
    s = result.summary
    context.log.info(f"{cohort}: {s['verdict']}; sizes {s['cluster_sizes']} stability {s['stability_ari']:.3f}")
    return _report(
        context, storage, "subject_clusters", result, an.plot_clusters,
        ("k", "discrete_clusters", "verdict", "silhouette", "silhouette_z", "best_k_tested", "stability_ari",
         "continuous_axes", "cluster_sizes", "hdbscan_n_clusters", "hdbscan_noise_fraction",
         "hdbscan_ari_vs_kmeans", "adjusted_for_ancestry", "n_subjects"),
        extra={"k_scan": markdown_table(result.tables["k_scan"])},
        checks=[
            _io.check_result(FINITE[0], an.check_all_finite(result.table, ["pc1", "pc2"])),
            _io.check_result("cluster_sizes_above_floor", an.check_cluster_sizes(result.table, config.min_cluster_size), WARN),
        ],
    )


# --------------------------------------------------------------------------- drivers


@analysis_asset(
    "block_drivers",
    deps=["subject_clusters", "block_features", "ancestry_pcs", "subject_embeddings", "block_importance"],
    checks=[FINITE],
    description="What separates the clusters: eta squared of cluster membership by each block's PC1 and by "
    "genotype PCs 1-10, with genes and Phase 2 importance rank. analysis/block_drivers.parquet",
)
def block_drivers(context: dg.AssetExecutionContext, storage: GenoembedStorage) -> dg.MaterializeResult:
    cohort = context.partition_key
    clusters = _io.read_result(storage, cohort, "subject_clusters")
    features = _io.read_result(storage, cohort, "block_features").table
    result = an.block_drivers(clusters.table, features, _io.ancestry_pcs(storage, cohort), _io.subject_embedding(storage, cohort))
    blocks = _io.cohort_blocks(storage, cohort)
    annotation = _io.block_annotation(storage, cohort, blocks).set_index("block_id")
    table = result.table.assign(
        genes=result.table["feature"].map(annotation["genes"]).fillna(""),
        importance_rank=result.table["feature"].map(annotation["importance_rank"]).astype("Float64"),
    )
    result = an.AnalysisResult(table=table, summary=result.summary)
    labels = _io.labels_of(annotation.reset_index())
    s = result.summary
    context.log.info(f"{cohort}: {s['leading_feature']} leads (eta2 {s['leading_eta2']:.3f}); best PC {s['top_genotype_pc']} {s['top_genotype_pc_eta2']:.3f}")
    return _report(
        context, storage, "block_drivers", result, lambda r, path: an.plot_drivers(r, path, block_labels=labels, blocks=blocks),
        ("leading_feature", "leading_kind", "leading_eta2", "leading_block", "leading_block_eta2", "top_genotype_pc",
         "top_genotype_pc_eta2", "block_leads", "n_subjects"),
        extra={"top_drivers": markdown_table(table.head(15))},
        checks=[_io.check_result(FINITE[0], an.check_all_finite(
            table, ["eta2" if s.get("explains") == "cluster membership" else "r2_axis1", "corr_main_axis"]))],
    )


# --------------------------------------------------------------------------- leave region out


class LeaveRegionOutConfig(dg.Config):
    """Regions dropped together (locus names, gene symbols or chrom:start-end) and the re-clustering method."""

    regions: list[str] = ["MHC"]
    method: str = "split"
    expand_mhc: bool = True
    fdr: float = 0.05
    seed: int = 0


@analysis_asset(
    "leave_region_out",
    deps=["block_features", "subject_clusters", "cohort_input"],
    checks=[FINITE],
    description="Re-cluster without the blocks of a region (default the MHC): which block leads next, and "
    "how the clusters change (ARI old vs new). Default method 'split': blocks weighted by the dropped region's own "
    "structure on one half of the subjects and tested on the other (no double dipping); naming the MHC drops the "
    "extended MHC. "
    "analysis/leave_region_out.parquet (+ _labels)",
)
def leave_region_out(context: dg.AssetExecutionContext, config: LeaveRegionOutConfig, storage: GenoembedStorage) -> dg.MaterializeResult:
    cohort = context.partition_key
    blocks = _io.cohort_blocks(storage, cohort)
    result = an.leave_region_out(
        _io.read_result(storage, cohort, "block_features").table, blocks,
        _io.read_result(storage, cohort, "subject_clusters").table, config.regions,
        build=_io.cohort_build(storage, cohort), method=config.method, fdr=config.fdr, random_state=config.seed,
        expand_mhc=config.expand_mhc,
    )
    labels = _io.labels_of(_io.block_annotation(storage, cohort, blocks))
    s = result.summary
    context.log.info(f"{cohort}: without {s['regions']} ({s['n_dropped']} blocks) {s['leading_block']} leads; ARI old/new {s['ari_old_new']:.3f}")
    return _report(
        context, storage, "leave_region_out", result, lambda r, path: an.plot_leave_region_out(r, path, block_labels=labels),
        ("regions", "dropped_blocks", "n_dropped", "n_remaining", "k", "leading_block", "leading_eta2", "leading_p",
         "leading_q", "leading_block_old", "ari_old_new", "method", "reference", "structure_remains"),
        extra={"top_blocks": markdown_table(result.table.head(15))},
        checks=[_io.check_result(FINITE[0], an.check_all_finite(result.table, ["eta2"]))],
    )


# --------------------------------------------------------------------------- phenotype association


class AssociationConfig(dg.Config):
    """Trait models and how blocks are tested (see analysis/association.py).

    ``models``: trait -> 'log', 'linear' or 'count'; empty: inferred (demo traits keep their
    defaults). ``block_test``: 'joint' (default) tests each block's whole latent matrix at once
    (partial F / likelihood ratio); 'pc1' tests its PC1 feature only.
    """

    models: dict[str, str] = {}
    covariates: list[str] = ["age", "sex"]
    n_pcs: int = 10
    overdispersion_p: float = 0.05
    block_test: str = "joint"


ASSOCIATION_CHECKS = [
    FINITE,
    ("pvalues_vary", "P-values lie in [0, 1] and are not all identical (a sign of a broken test)."),
    ("phenotypes_tested", "The table holds rows for every trait of the phenotype table."),
]


@analysis_asset(
    "phenotype_associations",
    deps=[BLOCK_EMBEDDINGS, "block_features", "subject_embeddings", "phenotypes", "ancestry_pcs", "cohort_input"],
    checks=ASSOCIATION_CHECKS,
    description="Every LD block (its whole Phase 1 latent matrix, one joint test) and every subject-embedding "
    "axis against every trait: OLS on log or raw traits, Poisson or negative binomial (by a dispersion test) "
    "for counts; covariates genotype PCs, age, sex; Benjamini-Hochberg FDR over all tests. "
    "analysis/phenotype_associations.parquet",
)
def phenotype_associations(context: dg.AssetExecutionContext, config: AssociationConfig, storage: GenoembedStorage) -> dg.MaterializeResult:
    cohort = context.partition_key
    if config.block_test not in ("joint", "pc1"):
        raise ValueError(f"block_test must be 'joint' or 'pc1', got {config.block_test!r}")
    phenotypes, reason = _io.phenotypes_or_reason(storage, cohort, config.covariates)
    if phenotypes is None:  # a genotype-only cohort: an explicit skipped result, not a failure
        return _io.write_skipped(context, storage, "phenotype_associations", reason, [c for c, _ in ASSOCIATION_CHECKS])
    models = dict(config.models) or an.infer_models(phenotypes, config.covariates)
    feature_sets = {"embedding": _io.subject_embedding(storage, cohort)}
    blocks = _io.cohort_blocks(storage, cohort)
    joint_sets = None
    if config.block_test == "joint":
        joint_sets = {"block": _io.block_embedding_store(storage, cohort, blocks)[0]}
    else:
        feature_sets = {"block": _io.read_result(storage, cohort, "block_features").table, **feature_sets}
    result = an.associate_phenotypes(
        feature_sets, phenotypes, _io.ancestry_pcs(storage, cohort), joint_sets=joint_sets, models=models,
        covariates=config.covariates, n_pcs=config.n_pcs, overdispersion_p=config.overdispersion_p,
    )
    s = result.summary
    context.log.info(f"{cohort}: {s['n_significant']}/{s['n_tests']} tests at q<0.05; strongest trait {s['strongest_phenotype']}")
    table = result.table
    labels = _io.labels_of(_io.block_annotation(storage, cohort, blocks))
    return _report(
        context, storage, "phenotype_associations", result,
        lambda r, path: an.plot_association(r, path, blocks=blocks, block_labels=labels),
        ("n_tests", "n_significant", "strongest_phenotype", "strongest", "phenotypes", "count_models", "skipped_features"),
        extra={"models": dg.MetadataValue.json(models), "top_hits": markdown_table(table.sort_values("p").head(15))},
        checks=[
            _io.check_result(FINITE[0], an.check_all_finite(table, ["effect", "stat", "p", "q"])),
            _io.check_result("pvalues_vary", an.check_pvalues_vary(table)),
            _io.check_result("phenotypes_tested", an.check_phenotypes_tested(table, list(models))),
        ],
    )


# --------------------------------------------------------------------------- locus validation


class LocusConfig(dg.Config):
    """The locus validated (a name from asthma_loci.tsv, a gene or chrom:start-end) against matched blocks."""

    locus: str = "17q21"
    n_background: int = 1000
    seed: int = 0


@analysis_asset(
    "locus_validation",
    deps=["phenotype_associations", "cohort_input"],
    checks=[FINITE],
    description="Does a named locus (default 17q21) associate more strongly than random background blocks "
    "from other chromosomes matched on variant count? Empirical p per trait. analysis/locus_validation.parquet",
)
def locus_validation(context: dg.AssetExecutionContext, config: LocusConfig, storage: GenoembedStorage) -> dg.MaterializeResult:
    cohort = context.partition_key
    association = _io.read_result(storage, cohort, "phenotype_associations")
    if an.is_skipped(association):
        return _io.write_skipped(context, storage, "locus_validation", association.summary["skipped"], [FINITE[0]])
    try:
        result = an.validate_locus(
            association.table, _io.cohort_blocks(storage, cohort), config.locus, build=_io.cohort_build(storage, cohort),
            n_background=config.n_background, random_state=config.seed,
        )
    except an.RegionNotInCohort as exc:  # e.g. no block at 17q21: skipped with the note, nothing downstream stops
        return _io.write_skipped(context, storage, "locus_validation", str(exc), [FINITE[0]])
    s = result.summary
    context.log.info(f"{cohort}: {s['locus']} empirical p {s['empirical_p']:.3g} (best trait {s['best_phenotype']})")
    return _report(
        context, storage, "locus_validation", result, an.plot_locus,
        ("locus", "locus_blocks", "empirical_p", "locus_min_p", "best_phenotype", "n_background"),
        extra={"per_phenotype": markdown_table(result.table)},
        checks=[_io.check_result(FINITE[0], an.check_all_finite(result.table))],
    )


# --------------------------------------------------------------------------- geometry


class GeometryConfig(dg.Config):
    n_sample: int = 500
    n_pcs: int = 10
    seed: int = 0


@analysis_asset(
    "embedding_geometry",
    deps=[BLOCK_EMBEDDINGS, "subject_embeddings", "ancestry_pcs", "cohort_input"],
    checks=[FINITE],
    description="Phase 1 vs Phase 2 pairwise-distance correlation on a subject subsample, and the correlation "
    "of each subject-embedding axis with genotype PCs 1-10 (how much of it is ancestry). "
    "analysis/embedding_geometry.parquet",
)
def embedding_geometry(context: dg.AssetExecutionContext, config: GeometryConfig, storage: GenoembedStorage) -> dg.MaterializeResult:
    cohort = context.partition_key
    embeddings, missing = _io.block_embedding_store(storage, cohort, _io.cohort_blocks(storage, cohort))
    result = an.embedding_geometry(
        embeddings, _io.subject_embedding(storage, cohort), _io.ancestry_pcs(storage, cohort),
        n_sample=config.n_sample, n_pcs=config.n_pcs, random_state=config.seed,
    )
    s = result.summary
    context.log.info(f"{cohort}: distance Spearman {s['distance_spearman']:.3f}; max |corr| {s['max_abs_corr']:.2f} ({s['max_corr_axis']} vs {s['max_corr_pc']})")
    return _report(
        context, storage, "embedding_geometry", result, an.plot_geometry,
        ("distance_pearson", "distance_spearman", "n_sample", "max_abs_corr", "max_corr_axis", "max_corr_pc",
         "mean_r2_pcs", "max_r2_pcs"),
        extra={"missing_blocks": dg.MetadataValue.json(missing)},
        checks=[_io.check_result(FINITE[0], an.check_all_finite(
            result.table.assign(distance_spearman=s["distance_spearman"]), ["corr", "distance_spearman"]))],
    )


# --------------------------------------------------------------------------- summary


@analysis_asset(
    "findings_summary",
    deps=["block_drivers", "leave_region_out", "phenotype_associations", "locus_validation", "cohort_input"],
    checks=[("names_leading_block", "The summary names the block leading the cluster drivers.")],
    description="One panel of the cohort's findings (leading block, leader after leaving out a region, strongest "
    "association per trait) and a short Markdown summary. analysis/findings_summary.parquet",
)
def findings_summary(context: dg.AssetExecutionContext, storage: GenoembedStorage) -> dg.MaterializeResult:
    cohort = context.partition_key
    drivers = _io.read_result(storage, cohort, "block_drivers")
    leave_out = _io.read_result(storage, cohort, "leave_region_out")
    association = _io.read_result(storage, cohort, "phenotype_associations")
    locus = _io.read_result(storage, cohort, "locus_validation")
    labels = _io.labels_of(_io.block_annotation(storage, cohort, _io.cohort_blocks(storage, cohort)))
    result = an.findings_summary(drivers, leave_out, association, locus, block_labels=labels)
    s = result.summary
    named = an.CheckOutcome(
        bool(s["leading_block"]) and str(s["leading_block"]) in s["markdown"],
        f"the summary names {s['leading_block']}" if s["leading_block"] else "no leading block", {},
    )
    return _report(
        context, storage, "findings_summary", result,
        lambda r, path: an.plot_summary(drivers, leave_out, association, path, block_labels=labels),
        ("leading_block", "leading_block_after_leave_out", "strongest_phenotype", "strongest_feature"),
        extra={"summary": dg.MetadataValue.md(s["markdown"]), "findings": markdown_table(result.table)},
        checks=[_io.check_result("names_leading_block", named)],
    )
