"""``subject_clusters`` of a projected cohort: its subjects assigned to the reference's clusters."""

from __future__ import annotations

import dagster as dg

from ... import analysis as an
from ...analysis.reference_clusters import assign_to_reference, plot_reference_assignment
from ..metadata import markdown_table
from ..models import projection
from ..resources import GenoembedStorage
from . import _io


def projected_clusters(context, storage: GenoembedStorage, snapshot, min_cluster_size: int, finite_check: str,
                       size_check: str) -> dg.MaterializeResult:
    """Nearest reference centroid per subject, with the novelty flag; same files and checks as a clustering."""
    cohort = context.partition_key
    embedding = _io.subject_embedding(storage, cohort)
    table, summary = assign_to_reference(embedding, *projection.reference_tables(snapshot))
    summary = {**summary, "discrete_clusters": summary["k"] > 1, "projected": True, "reference": snapshot.reference,
               "reference_version": snapshot.version,
               "verdict": f"assigned to the {summary['k']} clusters of {snapshot.label}; "
               f"{summary['novel_fraction']:.1%} novel (farther than {summary['novelty_quantile']:.0%} of the reference's subjects)"}
    table = table.assign(hdbscan_cluster=-1)
    result = an.AnalysisResult(table=table, summary=summary)
    paths = _io.write_result(storage, cohort, "subject_clusters", result)
    plot_reference_assignment(table, paths["figure"])
    context.log.info(f"{cohort}: {summary['verdict']}")
    return dg.MaterializeResult(
        metadata={**_io.headline(summary, ("k", "verdict", "cluster_sizes", "novel_fraction", "novelty_radius", "n_subjects")),
                  **projection.lineage(snapshot), "path": dg.MetadataValue.path(str(paths["table"])),
                  "assignment": markdown_table(table.head(20)), **_io.figure_metadata(paths["figure"])},
        check_results=[
            _io.check_result(finite_check, an.check_all_finite(table, ["distance"])),
            _io.check_result(size_check, an.check_cluster_sizes(table, min_cluster_size), dg.AssetCheckSeverity.WARN),
        ],
    )
