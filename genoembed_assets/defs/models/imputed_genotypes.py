"""Imputation as a cohort-level asset: every missing call filled by its block's Phase 1 model and LD neighbours.

Depends on every block partition of its cohort (the trained models); writes
``results/<cohort>/imputed/<cohort>.imputed.vcf.gz`` and its ``.tbi`` (see
:mod:`genoembed_assets.imputation`).
"""

import time

import dagster as dg
import numpy as np

from ...imputation import check_engine, hap_settings, impute_cohort
from ...models._haplotype_copying import HaplotypeConfig
from ..automation.conditions import AFTER_EVERY_BLOCK
from ..metadata import markdown_table
from ..partitions import all_blocks_of_cohort, cohort_partitions
from ..resources import ComputeResource, GenoembedStorage
from .projection import projection_record

IMPUTED = "imputed"
# A block whose imputed calls explain less than this share of dosage variance (mean DR2) is flagged.
MIN_MEAN_DR2 = 0.3


class ImputationConfig(dg.Config):
    """What fills a missing call (``imputation.ENGINES``).

    ``blend`` (default): the cohort's Phase 1 block models mixed with the LD-neighbour rule;
    ``hap``: the blocks of each chromosome phased together ``hap_runs`` times and the haplotypes
    copied from each other, mixed with the rule (0.9907 concordance on the 1000 Genomes chr20 panels
    with 2 runs, against 0.980 for the rule and Beagle's 0.9903; the block models are not used); ``ld``: the rule alone; ``vae``: the block models alone.
    ``genetic_map``: a genetic map file for ``hap``'s switch rates (``genotypes.genetic_map``; empty: 1 cM per Mb).
    """

    engine: str = "blend"
    hap_runs: int = HaplotypeConfig.runs  # engine hap: independent phasings averaged
    genetic_map: str = ""  # engine hap: genetic map file (pos chr cM, Eagle/HapMap, or PLINK .map)


def imputed_vcf_path(storage: GenoembedStorage, cohort: str):
    """Where a cohort's imputed VCF lives (the CLI prints it)."""
    return storage.cohort_dir(cohort) / IMPUTED / f"{cohort}.imputed.vcf.gz"


@dg.asset(
    partitions_def=cohort_partitions,
    group_name="imputation",
    deps=[dg.AssetDep("block_embeddings", partition_mapping=all_blocks_of_cohort)],
    automation_condition=AFTER_EVERY_BLOCK,
    kinds={"pytorch", "vcf"},
    check_specs=[dg.AssetCheckSpec("imputation_quality", asset="imputed_genotypes",
                                   description=f"Mean DR2 of every block's imputed calls is at least {MIN_MEAN_DR2} (warning).")],
    description="Every missing call filled from its block model's posterior predictive blended with LD-weighted "
    "neighbours (the VAE's weight chosen per block on hidden calls), or with config engine 'hap' by phasing "
    "the blocks that touch on a chromosome together and copying haplotypes; observed calls untouched. "
    "A bgzipped, indexed VCF with FORMAT GT:DS:GP:IMP and INFO DR2/AF/IMP "
    "(results/<cohort>/imputed/<cohort>.imputed.vcf.gz).",
)
def imputed_genotypes(context: dg.AssetExecutionContext, config: ImputationConfig, storage: GenoembedStorage,
                      compute: ComputeResource) -> dg.MaterializeResult:
    check_engine(config.engine)  # before anything is read
    haplotypes, genetic_map = hap_settings(config.engine, config.hap_runs, config.genetic_map,
                                           map_name="ImputationConfig.genetic_map")  # fails before anything is read
    cohort = context.partition_key
    record = projection_record(storage, cohort)
    if record is not None:
        # A projected cohort has no block models of its own, and the reference's models see only the
        # matched variants: imputing its own variant set with them is not built. Degrade with a note.
        note = (f"skipped: {cohort} is projected onto {record.get('reference')!r} (no block models of its own); "
                "impute it with its own models via `genoembed run` without a reference, or `genoembed impute`")
        context.log.info(note)
        return dg.MaterializeResult(
            metadata={"skipped": note, "reference": str(record.get("reference"))},
            check_results=[dg.AssetCheckResult(check_name="imputation_quality", passed=True,
                                               metadata={"message": note})],
        )
    out = imputed_vcf_path(storage, cohort)
    start = time.perf_counter()
    table = impute_cohort(storage.input_dir(cohort), storage.phase1_dir(cohort), out,
                          device=compute.torch_device(), engine=config.engine, haplotypes=haplotypes,
                          genetic_map=genetic_map, log=context.log.info)
    seconds = time.perf_counter() - start
    context.log.info(f"{cohort}: {int(table['n_imputed'].sum())} calls imputed -> {out}")
    low = table[table["dr2_mean"] < MIN_MEAN_DR2]
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(out)),
            "engine": config.engine,
            **({"genetic_map": str(genetic_map.path)} if genetic_map is not None else {}),
            "n_blocks": len(table),
            "n_variants": int(table["n_snps"].sum()),
            "n_imputed_calls": int(table["n_imputed"].sum()),
            "missing_rate": float((table["missing_rate"] * table["n_snps"]).sum() / max(1, table["n_snps"].sum())),
            "dr2_mean": float(np.nanmean(table["dr2_mean"])) if table["dr2_mean"].notna().any() else float("nan"),
            "seconds": round(seconds, 1),
            "blocks": markdown_table(table.round(4)),
        },
        check_results=[dg.AssetCheckResult(
            check_name="imputation_quality", passed=low.empty, severity=dg.AssetCheckSeverity.WARN,
            metadata={"message": "mean DR2 below floor: " + ", ".join(f"{b} ({v:.2f})" for b, v in
                                                                       zip(low["block_id"], low["dr2_mean"]))
                      if not low.empty else f"every block's mean DR2 >= {MIN_MEAN_DR2}"})],
    )
