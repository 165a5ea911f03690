"""Post-hoc analyses of block and subject embeddings (pure: no Dagster).

Every analysis is a function returning an :class:`AnalysisResult` (a main
table, a dict of headline figures, optional extra tables); ``figures`` turns
each result into a PNG, ``checks`` holds the pure checks the Dagster layer
reports, and :func:`png_preview_markdown` makes a small inline preview.

Typical order::

    feats = block_pc1_features(block_embeddings, covariates=pcs)   # ancestry-adjusted
    clusters = cluster_subjects(embedding, pcs)                     # adjusted by default
    drivers = block_drivers(clusters.table, feats, pcs, embedding)
    leave_out = leave_region_out(feats, blocks, clusters.table)     # default: the MHC
    assoc = associate_phenotypes({"block": feats, "embedding": embedding}, phenotypes, pcs)
    locus = validate_locus(assoc.table, blocks, "17q21")
    geometry = embedding_geometry(block_embeddings, embedding, pcs)
    summary = findings_summary(drivers, leave_out, assoc, locus)
"""

from .association import (
    DEFAULT_MODELS,
    associate_phenotypes,
    bh_fdr,
    dispersion_test,
    infer_models,
    joint_ols_tests,
    ols_feature_tests,
)
from .checks import CheckOutcome, check_all_finite, check_cluster_sizes, check_phenotypes_tested, check_pvalues_vary
from .clusters import DEFAULT_K_RANGE, StabilityKMeans, cluster_subjects
from .drivers import block_drivers
from .block_features import block_pc1_features
from .block_source import BlockSource, MappingBlockSource, as_block_source
from .features import AnalysisResult, align_subjects, eta_squared, is_skipped, residualize, skipped_result
from .figures import (
    plot_association,
    plot_block_features,
    plot_clusters,
    plot_drivers,
    plot_geometry,
    plot_leave_region_out,
    plot_locus,
    plot_skipped,
    plot_summary,
)
from .geometry import embedding_geometry
from .leave_region_out import DEFAULT_REGIONS, leave_region_out
from .locus import RegionNotInCohort, validate_locus
from .manhattan import MANHATTAN_MIN_BLOCKS, genome_axis, manhattan_figure, plot_manhattan
from .preview import png_preview_markdown
from .regions import MHC_HG19, Region, block_genes, blocks_in_regions, resolve_region, short_gene_label
from .sparse_kmeans import SparseKMeans
from .summary import findings_summary

__all__ = [
    "DEFAULT_K_RANGE",
    "DEFAULT_MODELS",
    "DEFAULT_REGIONS",
    "MANHATTAN_MIN_BLOCKS",
    "MHC_HG19",
    "MappingBlockSource",
    "AnalysisResult",
    "BlockSource",
    "CheckOutcome",
    "Region",
    "RegionNotInCohort",
    "SparseKMeans",
    "StabilityKMeans",
    "align_subjects",
    "as_block_source",
    "associate_phenotypes",
    "bh_fdr",
    "block_drivers",
    "block_genes",
    "block_pc1_features",
    "blocks_in_regions",
    "check_all_finite",
    "check_cluster_sizes",
    "check_phenotypes_tested",
    "check_pvalues_vary",
    "cluster_subjects",
    "dispersion_test",
    "embedding_geometry",
    "eta_squared",
    "findings_summary",
    "genome_axis",
    "infer_models",
    "is_skipped",
    "joint_ols_tests",
    "leave_region_out",
    "manhattan_figure",
    "ols_feature_tests",
    "plot_association",
    "plot_block_features",
    "plot_clusters",
    "plot_drivers",
    "plot_geometry",
    "plot_leave_region_out",
    "plot_locus",
    "plot_manhattan",
    "plot_skipped",
    "plot_summary",
    "png_preview_markdown",
    "residualize",
    "resolve_region",
    "short_gene_label",
    "skipped_result",
    "validate_locus",
]
