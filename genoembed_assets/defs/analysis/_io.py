"""File plumbing of the analysis assets: read upstream artifacts, write results, build metadata.

Every analysis writes ``analysis/<name>.parquet`` (main table), ``<name>.json``
(headline figures), ``<name>_<table>.parquet`` (secondary tables) and
``<name>.png``; a downstream analysis rebuilds an :class:`AnalysisResult` from
those files instead of going through an IO manager.
"""

from pathlib import Path

import dagster as dg
import pandas as pd

from ... import storage as atomic
from ...analysis import AnalysisResult, block_genes, plot_skipped, png_preview_markdown, short_gene_label, skipped_result
from ...genotypes import layout
from ...models._embedding_store import BlockEmbeddingStore
from ..resources import GenoembedStorage

DEFAULT_BUILD = "hg19"


# --------------------------------------------------------------------------- upstream files


def read_parquet(path: Path, what: str) -> pd.DataFrame:
    """Read a Parquet artifact, naming the asset that should have written it when it is missing."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: materialize {what} for this cohort first")
    frame = pd.read_parquet(path)
    if "subject_id" in frame.columns:
        frame["subject_id"] = frame["subject_id"].astype(str)
    return frame


def cohort_build(storage: GenoembedStorage, cohort: str) -> str:
    return str(layout.read_cohort_settings(storage.input_dir(cohort)).get("build", DEFAULT_BUILD))


def cohort_blocks(storage: GenoembedStorage, cohort: str) -> pd.DataFrame:
    """``block_id, chrom, start, end, n_snps`` of the cohort, in genomic order."""
    manifest = layout.read_manifest(storage.input_dir(cohort), check_files=False)
    return manifest[["block_id", "chrom", "start", "end", "n_snps"]].reset_index(drop=True)


def block_embedding_store(storage: GenoembedStorage, cohort: str, blocks: pd.DataFrame) -> tuple[BlockEmbeddingStore, list[str]]:
    """The cohort's Phase 1 latent means as a memory-mapped store, and the blocks without one.

    The store reads one block at a time (``iter_blocks``), so no analysis holds
    every block's embedding at once; a block whose ``embedding.npy`` is missing
    is left out and listed (the analyses note it), and a file with the wrong
    shape fails naming the block.
    """
    present = [(storage.phase1_dir(cohort, b) / "embedding.npy").exists() for b in blocks["block_id"]]
    missing = [b for b, ok in zip(blocks["block_id"], present) if not ok]
    if not any(present):
        raise FileNotFoundError(f"no Phase 1 embedding under {storage.phase1_dir(cohort)}: materialize block_embeddings first")
    return BlockEmbeddingStore.from_phase1_dir(storage.phase1_dir(cohort), blocks[present]), missing


def subject_embedding(storage: GenoembedStorage, cohort: str) -> pd.DataFrame:
    return read_parquet(storage.phase2_dir(cohort) / "subject_embeddings.parquet", "subject_embeddings")


def ancestry_pcs(storage: GenoembedStorage, cohort: str) -> pd.DataFrame:
    return read_parquet(storage.cohort_dir(cohort) / "pcs.parquet", "ancestry_pcs")


def phenotype_table(storage: GenoembedStorage, cohort: str) -> pd.DataFrame:
    return read_parquet(storage.cohort_dir(cohort) / "phenotypes.parquet", "phenotypes")


NO_PHENOTYPES = "no phenotypes"


def phenotypes_or_reason(storage: GenoembedStorage, cohort: str, covariates=()) -> tuple[pd.DataFrame | None, str]:
    """The phenotype table, or None and why there is nothing to test.

    A genotype-only cohort has no phenotype file (older ingests) or an empty trait table
    (``subject_id`` only, or covariates only): both mean :data:`NO_PHENOTYPES`.
    """
    path = storage.cohort_dir(cohort) / "phenotypes.parquet"
    if not path.exists():
        return None, NO_PHENOTYPES
    table = read_parquet(path, "phenotypes")
    traits = [c for c in table.columns if c != "subject_id" and c not in covariates]
    if not traits or table.empty:
        return None, NO_PHENOTYPES
    return table, ""


def block_annotation(storage: GenoembedStorage, cohort: str, blocks: pd.DataFrame) -> pd.DataFrame:
    """``block_id, genes, importance_rank``; genes is a short label (Phase 2's list when present, else the gene list)."""
    path = storage.phase2_dir(cohort) / "block_importance.parquet"
    genes = block_genes(blocks, cohort_build(storage, cohort))
    out = pd.DataFrame({"block_id": blocks["block_id"].astype(str)})
    out["genes"] = out["block_id"].map(genes).fillna("")
    out["importance_rank"] = pd.NA
    if path.exists():
        importance = pd.read_parquet(path).set_index("block_id")
        if "genes" in importance.columns:
            given = out["block_id"].map(importance["genes"]).fillna("").astype(str).map(short_gene_label)
            out["genes"] = given.where(given != "", out["genes"])
        if "rank" in importance.columns:
            out["importance_rank"] = out["block_id"].map(importance["rank"])
    return out


def labels_of(annotation: pd.DataFrame) -> dict[str, str]:
    return {b: g for b, g in zip(annotation["block_id"], annotation["genes"]) if g}


# --------------------------------------------------------------------------- results


def result_paths(storage: GenoembedStorage, cohort: str, name: str) -> dict[str, Path]:
    base = storage.analysis_dir(cohort)
    return {"table": base / f"{name}.parquet", "summary": base / f"{name}.json", "figure": base / f"{name}.png"}


def write_result(storage: GenoembedStorage, cohort: str, name: str, result: AnalysisResult) -> dict[str, Path]:
    """Write the main table, the summary JSON and every secondary table (atomically)."""
    paths = result_paths(storage, cohort, name)
    atomic.write_parquet(paths["table"], result.table)
    for key, table in result.tables.items():
        atomic.write_parquet(storage.analysis_dir(cohort) / f"{name}_{key}.parquet", table)
    atomic.write_json(paths["summary"], result.summary)
    return paths


def write_skipped(context, storage: GenoembedStorage, name: str, reason: str, check_names=()) -> dg.MaterializeResult:
    """Materialize ``name`` as skipped: a status table, a figure saying why, metadata ``skipped``, checks passed with the note.

    Secondary tables of an earlier, complete result are removed so no reader mixes them with this one.
    """
    cohort = context.partition_key
    for old in storage.analysis_dir(cohort).glob(f"{name}_*.parquet"):
        old.unlink()
    result = skipped_result(reason)
    paths = write_result(storage, cohort, name, result)
    plot_skipped(result, paths["figure"], name)
    context.log.info(f"{cohort}: {name} skipped: {reason}")
    note = {"message": dg.MetadataValue.text(f"skipped: {reason}"), "skipped": dg.MetadataValue.bool(True)}
    return dg.MaterializeResult(
        metadata={"status": "skipped", "skipped": reason, "path": dg.MetadataValue.path(str(paths["table"])),
                  **figure_metadata(paths["figure"])},
        check_results=[dg.AssetCheckResult(check_name=c, passed=True, metadata=note) for c in check_names],
    )


def read_result(storage: GenoembedStorage, cohort: str, name: str, tables: tuple[str, ...] = ()) -> AnalysisResult:
    """Rebuild what :func:`write_result` wrote (``tables`` names the secondary tables wanted)."""
    import json

    paths = result_paths(storage, cohort, name)
    table = read_parquet(paths["table"], name)
    if not paths["summary"].exists():
        raise FileNotFoundError(f"{paths['summary']} does not exist: materialize {name} for this cohort first")
    summary = json.loads(paths["summary"].read_text())
    extra = {key: read_parquet(storage.analysis_dir(cohort) / f"{name}_{key}.parquet", name) for key in tables}
    return AnalysisResult(table=table, summary=summary, tables=extra)


# --------------------------------------------------------------------------- metadata


def figure_metadata(path: Path) -> dict:
    """An inline preview (the UI has no image type) and the full file beside it."""
    return {
        "figure": dg.MetadataValue.md(png_preview_markdown(path)),
        "figure_path": dg.MetadataValue.path(str(path)),
    }


def headline(summary: dict, keys: tuple[str, ...]) -> dict:
    """Summary entries as metadata: numbers and text as they are, anything else as JSON."""
    out = {}
    for key in keys:
        value = summary.get(key)
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = dg.MetadataValue.bool(value)
        elif isinstance(value, int):
            out[key] = dg.MetadataValue.int(value)
        elif isinstance(value, float):
            out[key] = dg.MetadataValue.float(value)
        elif isinstance(value, str):
            out[key] = dg.MetadataValue.text(value)
        else:
            out[key] = dg.MetadataValue.json(value)
    return out


def check_result(name: str, outcome, severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR) -> dg.AssetCheckResult:
    """A pure-layer ``CheckOutcome`` (passed, message, metadata) as the result of check ``name``."""
    metadata = {"message": dg.MetadataValue.text(outcome.message)}
    for key, value in outcome.metadata.items():
        if hasattr(value, "item"):
            value = value.item()
        metadata[key] = dg.MetadataValue.json(value) if isinstance(value, (dict, list, tuple)) else value
    return dg.AssetCheckResult(check_name=name, passed=bool(outcome.passed), severity=severity, metadata=metadata)
