"""Input side of the graph: cohort ingestion, per-block genotypes, phenotypes, PCs.

Assets stay thin: read the partition key, call the pure layer, write, report.
"""


import json

import dagster as dg
import numpy as np
import pandas as pd

from ... import storage as atomic
from ...genotypes import ancestry, ingest, layout, qc
from ...genotypes.phenotype_tables import phenotype_coverage
from ...genotypes.validate import validate_ingested_cohort
from ..metadata import check_results, markdown_table
from ..partitions import (
    all_blocks_of_cohort,
    block_backfill_policy,
    cohort_block_partitions,
    cohort_partitions,
    group_by_cohort,
    multi_key,
    run_partition_keys,
)
from ..resources import GenoembedStorage

INPUT_CHECKS = [
    ("no_duplicate_ids", "Subject IDs are unique."),
    ("subject_ids_consistent", "Genotypes, phenotypes and PCs list the same subjects in the same order."),
    ("block_shapes_match_manifest", "Every block matrix has the shape its manifest row says."),
    ("genotype_values_valid", "Every block is int8 with values in {-1, 0, 1, 2}."),
    ("missingness_within_bounds", "Per-block and per-subject missing rates are within bounds."),
]


# keys of the ingest's reports that name subjects: kept in qc.json (beside the data, under its access
# control), left out of Dagster metadata, which the event log stores for anyone with the UI or database
SUBJECT_LEVEL_KEYS = frozenset({"missing_subjects"})


def aggregates_only(report):
    """``report`` (JSON-like) without the keys in :data:`SUBJECT_LEVEL_KEYS`, at any depth."""
    if isinstance(report, dict):
        return {k: aggregates_only(v) for k, v in report.items() if k not in SUBJECT_LEVEL_KEYS}
    if isinstance(report, list):
        return [aggregates_only(v) for v in report]
    return report


class IngestConfig(dg.Config):
    """Variant filters applied while ingesting a cohort (counts are reported)."""

    maf_min: float = 0.01
    max_missing: float = 0.1
    max_variants_per_block: int = 2000
    max_subject_missing: float = 0.2


@dg.asset(
    partitions_def=cohort_partitions,
    group_name="inputs",
    kinds={"python", "numpy"},
    check_specs=[dg.AssetCheckSpec(name, asset="cohort_input", blocking=True, description=d) for name, d in INPUT_CHECKS],
    description="A cohort folder (original .npy layout, PLINK 1/2 or VCF) validated, filtered and normalised "
    "into the original layout under results/<cohort>/input. Blocks QC leaves empty are skipped and listed.",
)
def cohort_input(context: dg.AssetExecutionContext, config: IngestConfig, storage: GenoembedStorage) -> dg.MaterializeResult:
    cohort = context.partition_key
    source, out = storage.source_dir(cohort), storage.input_dir(cohort)
    context.log.info(f"ingesting cohort {cohort!r} from {source}")
    report = ingest.ingest_cohort(
        source, out, maf_min=config.maf_min, max_missing=config.max_missing,
        max_variants_per_block=config.max_variants_per_block, log=context.log.info,
    )
    outcomes = validate_ingested_cohort(out, max_subject_missing=config.max_subject_missing, max_block_missing=config.max_missing)
    manifest = layout.read_manifest(out)
    n_subjects = len(layout.read_subjects(out))
    qc_path = out / "qc.json"
    filtering = json.loads(qc_path.read_text()) if qc_path.exists() else {}
    return dg.MaterializeResult(
        metadata={
            "format": report.format,
            "build": report.build,
            "n_variants_in": report.n_variants_in,
            "fingerprint": report.fingerprint,
            "source": dg.MetadataValue.path(str(source)),
            "path": dg.MetadataValue.path(str(out)),
            "n_subjects": n_subjects,
            "n_blocks": len(manifest),
            "n_variants": int(manifest["n_snps"].sum()),
            "subject_order_source": report.subject_order_source,
            "n_skipped_blocks": len(report.skipped_blocks),
            "skipped_blocks": dg.MetadataValue.json(report.skipped_blocks),
            "phenotypes": dg.MetadataValue.json(aggregates_only(report.phenotypes)) if report.has_phenotypes else "no phenotypes",
            "variant_filtering": dg.MetadataValue.json(aggregates_only(filtering)) if filtering else "not reported",
            "qc_report": dg.MetadataValue.path(str(qc_path)),
            "blocks": markdown_table(manifest[["block_id", "chrom", "start", "end", "n_snps"]]),
        },
        check_results=check_results(outcomes),
    )


PHENOTYPE_COVERAGE = "phenotypes_cover_subjects"


@dg.asset(
    partitions_def=cohort_partitions,
    group_name="inputs",
    deps=["cohort_input"],
    kinds={"pandas", "parquet"},
    check_specs=[
        dg.AssetCheckSpec("phenotypes_usable", asset="phenotypes", blocking=True,
                          description="Every trait is numeric and at most half missing (passes with no phenotypes)."),
        dg.AssetCheckSpec(PHENOTYPE_COVERAGE, asset="phenotypes",
                          description="Every genotyped subject has a phenotype row (warning: those without are "
                          "kept with missing traits)."),
    ],
    description="The cohort's phenotype table aligned to the genotyped subjects (results/<cohort>/phenotypes.parquet): "
    "subject_id plus one column per trait; subject_id only for a genotype-only cohort.",
)
def phenotypes(context: dg.AssetExecutionContext, storage: GenoembedStorage) -> dg.MaterializeResult:
    cohort = context.partition_key
    inp = storage.input_dir(cohort)
    subjects = layout.read_subjects(inp)
    has_table = (inp / layout.PHENOTYPES).exists()
    table = layout.read_phenotypes(inp / layout.PHENOTYPES, subjects) if has_table else pd.DataFrame({"subject_id": subjects})
    path = atomic.write_parquet(storage.cohort_dir(cohort) / "phenotypes.parquet", table)
    if not has_table:
        context.log.info(f"{cohort}: no phenotypes (genotype-only cohort); wrote subject_id only")
        message = "no phenotypes: genotype-only cohort"
        return dg.MaterializeResult(
            metadata={"path": dg.MetadataValue.path(str(path)), "n_subjects": len(table), "n_traits": 0,
                      "has_phenotypes": False, "phenotypes": "no phenotypes"},
            check_results=[dg.AssetCheckResult(check_name=name, passed=True, metadata={"message": message})
                           for name in ("phenotypes_usable", PHENOTYPE_COVERAGE)],
        )
    qc_path = inp / "qc.json"
    info = json.loads(qc_path.read_text()).get("phenotypes", {}) if qc_path.exists() else {}
    coverage = phenotype_coverage(table, info)
    traits = table.drop(columns="subject_id")
    worst = traits.isna().mean()
    too_missing = worst[worst > 0.5]
    n_missing = coverage["n_subjects_missing"]
    return dg.MaterializeResult(
        metadata={"path": dg.MetadataValue.path(str(path)), "n_subjects": len(table), "n_traits": traits.shape[1],
                  "has_phenotypes": True, "n_subjects_missing": n_missing,
                  "source_files": dg.MetadataValue.json(info.get("files", [])),
                  "traits": markdown_table(coverage["summary"])},
        check_results=[
            dg.AssetCheckResult(
                check_name="phenotypes_usable", passed=too_missing.empty and traits.shape[1] > 0,
                metadata={"message": "every trait observed in at least half the subjects" if too_missing.empty
                          else f"traits more than half missing: {list(too_missing.index)}"},
            ),
            dg.AssetCheckResult(
                check_name=PHENOTYPE_COVERAGE, passed=n_missing == 0, severity=dg.AssetCheckSeverity.WARN,
                metadata={"message": coverage["message"], "n_subjects_missing": n_missing,
                          # which subjects: in qc.json beside the data, not in the event log
                          "missing_subjects_listed_in": dg.MetadataValue.path(str(qc_path)),
                          "n_rows_not_genotyped": coverage["n_rows_not_genotyped"]},
            ),
        ],
    )


class PcsConfig(dg.Config):
    """Ancestry covariates (see genotypes/pcs.py and genotypes/pc_diagnosis.py).

    ``drop_regional``: leave PCs that are not genome-wide axes (carried by one region or by a few
    blocks) out of the adjustment (default); ``keep_pcs``: PCs kept anyway (the override, e.g. ["PC3"]).
    """

    n_pcs: int = 10
    seed: int = 0
    ld_r2: float = 0.2
    exclude_high_ld_regions: bool = True
    drop_regional: bool = True
    keep_pcs: list[str] = []


@dg.asset(
    partitions_def=cohort_partitions,
    group_name="inputs",
    deps=["cohort_input"],
    kinds={"pandas", "parquet"},
    check_specs=[
        dg.AssetCheckSpec("pcs_match_subjects", asset="ancestry_pcs", blocking=True,
                          description="PCs are finite and cover exactly the genotyped subjects."),
        dg.AssetCheckSpec("pcs_genome_wide", asset="ancestry_pcs",
                          description="Every PC is a genome-wide axis, not carried by one region or a few blocks "
                          "(warning; such PCs are left out of the adjustment)."),
    ],
    description="Ancestry PCs: the cohort's .eigenvec when given, else computed from the genotypes "
    "(LD-pruned, long-range LD regions excluded, missing-aware); each PC diagnosed, and PCs carried by one "
    "region or a few blocks left out of the adjustment. results/<cohort>/pcs.parquet (used), pcs_all.parquet, pc_diagnosis.parquet",
)
def ancestry_pcs(context: dg.AssetExecutionContext, config: PcsConfig, storage: GenoembedStorage) -> dg.MaterializeResult:
    cohort = context.partition_key
    inp = storage.input_dir(cohort)
    cov = ancestry.ancestry_covariates(inp, n_pcs=config.n_pcs, seed=config.seed, ld_r2=config.ld_r2,
                                       exclude_high_ld=config.exclude_high_ld_regions,
                                       drop_regional=config.drop_regional, keep=config.keep_pcs)
    context.log.info(f"ancestry PCs for {cohort!r}: {cov.source}; used {cov.pcs.shape[1] - 1} of {cov.all_pcs.shape[1] - 1}")
    out = storage.cohort_dir(cohort)
    atomic.write_parquet(out / "pcs_all.parquet", cov.all_pcs)
    atomic.write_parquet(out / "pc_diagnosis.parquet", cov.diagnosis)
    path = atomic.write_parquet(out / "pcs.parquet", cov.pcs)
    subjects = layout.read_subjects(inp)
    values = cov.all_pcs.drop(columns="subject_id").to_numpy(dtype=float)
    ok = np.array_equal(cov.all_pcs["subject_id"].astype(str).to_numpy(), subjects) and np.isfinite(values).all()
    flagged = cov.diagnosis[~cov.diagnosis["genome_wide"].astype(bool)] if len(cov.diagnosis) else cov.diagnosis
    if flagged.empty:
        local_msg = f"all {values.shape[1]} PCs are genome-wide"
    else:
        action = {True: "left out of the adjustment", False: "kept (drop_regional=False, keep_pcs, or the last PC)"}
        local_msg = "; ".join(f"{r['pc']} is {ancestry._why(r)}: {action[not bool(r['used'])]}" for _, r in flagged.iterrows())
    report = {k: v for k, v in cov.report.items() if k != "regions_excluded"}
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)), "source": cov.source, "n_pcs": values.shape[1],
            "pcs_used": [c for c in cov.pcs.columns if c != "subject_id"], "n_subjects": len(cov.all_pcs),
            "dropped_pcs": dg.MetadataValue.json(cov.dropped),
            "diagnosis": markdown_table(cov.diagnosis.round(3)),
            **({"computation": dg.MetadataValue.json(report)} if report else {}),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="pcs_match_subjects", passed=bool(ok),
                metadata={"message": "PCs finite and aligned to subjects.tsv" if ok else "PCs not aligned to subjects or not finite"},
            ),
            dg.AssetCheckResult(check_name="pcs_genome_wide", passed=flagged.empty, severity=dg.AssetCheckSeverity.WARN,
                                metadata={"message": local_msg, "flagged_pcs": list(flagged["pc"]) if len(flagged) else []}),
        ],
    )


BLOCK_CHECK = "block_matrix_valid"


@dg.asset(
    partitions_def=cohort_block_partitions,
    backfill_policy=block_backfill_policy,
    group_name="inputs",
    deps=[dg.AssetDep("cohort_input", partition_mapping=all_blocks_of_cohort)],
    kinds={"numpy"},
    check_specs=[dg.AssetCheckSpec(BLOCK_CHECK, asset="block_genotypes", blocking=True,
                                   description="Every block in the run is int8 in {-1, 0, 1, 2} with its manifest shape.")],
    description="One LD block of one cohort: int8 genotypes (-1 = missing) with QC figures. "
    "A block the cohort does not have, or that QC left empty, is recorded as absent with the reason.",
)
def block_genotypes(context: dg.AssetExecutionContext, storage: GenoembedStorage) -> dg.MaterializeResult:
    rows, problems = [], []
    for cohort, blocks in group_by_cohort(run_partition_keys(context)).items():
        inp = storage.input_dir(cohort)
        manifest = layout.read_manifest(inp).set_index("block_id")
        n_subjects = len(layout.read_subjects(inp))
        skipped = ingest.skipped_blocks(inp)
        for block in blocks:
            key = str(multi_key(cohort, block))
            if block not in manifest.index:
                # skipped by the ingest's QC (with its reason) or a block this cohort does not have
                reason = skipped.get(block, "the cohort has no variant in this block")
                rows.append({"cohort": cohort, "block_id": block, "present": False, "skipped": reason})
                context.log_event(dg.AssetObservation("block_genotypes", partition=key,
                                                      metadata={"present": False, "skipped": reason}))
                continue
            row = manifest.loc[block]
            try:
                g = layout.load_block(inp, {"block_id": block, "file": row["file"], "n_snps": row["n_snps"]}, n_subjects, mmap=True)
            except layout.CohortInputError as exc:
                problems.append(str(exc))
                continue
            figures = qc.block_qc(g)
            rows.append({"cohort": cohort, "block_id": block, "present": True, **figures})
            context.log_event(dg.AssetObservation(
                "block_genotypes", partition=key,
                metadata={"present": True, "path": dg.MetadataValue.path(str(inp / row["file"])), **figures},
            ))
    context.log.info(f"checked {len(rows)} block partition(s), {len(problems)} problem(s)")
    table = pd.DataFrame(rows)
    return dg.MaterializeResult(
        metadata={"n_partitions": len(rows), "qc": markdown_table(table)},
        check_results=[dg.AssetCheckResult(
            check_name=BLOCK_CHECK, passed=not problems,
            metadata={"message": "; ".join(problems[:10]) or f"all {len(rows)} block(s) valid", "n_invalid": len(problems)},
        )],
    )
