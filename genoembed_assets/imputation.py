"""Impute a cohort with its trained Phase 1 block models and write one VCF (pure: no Dagster).

Shared by the ``imputed_genotypes`` asset and ``genoembed impute``: reads the
ingested input folder (manifest, subjects, block matrices, variant table) and
each block's ``model.pt`` + ``metrics.json`` (the configuration it was trained
with), fills every missing call (:func:`models.impute_block`) and streams the
blocks into a bgzipped, indexed VCF (:func:`genotypes.vcf_write.write_imputed_vcf`),
so memory holds one block's probabilities at a time.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from .genotypes import layout
from .genotypes.errors import CohortInputError
from .genotypes.genetic_map import GeneticMap, read_genetic_map
from .genotypes.sources import VARIANTS
from .genotypes.vcf_write import block_sites, write_imputed_vcf
from . import imputation_segments
from .imputation_segments import HapSegment, hap_segments
from .models import BlockVAEConfig, load_block_model, split_subjects
from .models._haplotype_copying import HaplotypeConfig, copying_gp
from .models._impute import DEFAULT_DRAWS, impute_block
from .models._ld_neighbours import LDNeighbourConfig

__all__ = ["ENGINES", "SIMULATED_VARIANTS", "UNTRAINED_ENGINES", "check_engine", "hap_settings", "impute_cohort"]

#: What fills a missing call: the block VAE blended with LD neighbours (default), either alone, or
#: haplotype copying averaged with LD neighbours (``hap``). ``ld`` and ``hap`` train nothing.
ENGINES = ("blend", "vae", "ld", "hap")
UNTRAINED_ENGINES = ("ld", "hap")


def check_engine(engine: str) -> None:
    """Raise ValueError naming the choices unless ``engine`` is one of :data:`ENGINES`."""
    if engine not in ENGINES:
        raise ValueError(f"unknown imputation engine {engine!r}; choose one of {', '.join(ENGINES)}")


def hap_settings(engine: str, runs: int | None, genetic_map: str | Path | None, *,
                 map_name: str = "a genetic map") -> tuple[HaplotypeConfig, GeneticMap | None]:
    """Engine ``hap``'s settings, checked before anything is read: its config and the map file read.

    ``runs`` None: the default. A map with another engine is a ValueError naming
    ``map_name`` (the command's argument or the asset's config field); a bad map
    file fails here, naming the file and line.
    """
    haplotypes = HaplotypeConfig() if runs is None else HaplotypeConfig(runs=runs)  # checks the value
    if genetic_map and engine != "hap":
        raise ValueError(f"{map_name} is read by engine 'hap' only, not {engine!r}")
    return haplotypes, read_genetic_map(genetic_map) if genetic_map else None


#: The simulator's variant table in a cohort's source folder (positions of the .npy layout).
SIMULATED_VARIANTS = "variants.tsv"


def _variant_tables(input_dir: Path) -> dict[str, pd.DataFrame]:
    """block_id -> its variant rows: the ingested table, else the simulator's table in the source folder.

    The simulator's table lists every simulated variant; its rows are those the
    ingest kept (the ingested table's ``source_index``), so a block whose QC
    dropped variants still gets one row per written variant.
    """
    tables: dict[str, pd.DataFrame] = {}
    path = input_dir / VARIANTS
    if path.exists():
        tables = {b: v for b, v in pd.read_parquet(path).groupby("block_id", sort=False)}
    named = any(v["pos"].notna().any() for v in tables.values()) if tables else False
    source = layout.read_cohort_settings(input_dir).get("source")
    simulated = Path(source) / SIMULATED_VARIANTS if source else None
    if not named and simulated is not None and simulated.exists():
        frame = pd.read_csv(simulated, sep="\t", dtype={"chrom": str})
        kept = tables
        tables = {}
        for block, rows in frame.groupby("block_id", sort=False):
            rows = rows.rename(columns={"variant_id": "id"}).reset_index(drop=True)
            if block in kept and "source_index" in kept[block]:  # only the variants the ingest QC kept
                rows = rows.iloc[kept[block]["source_index"].to_numpy()]
            tables[block] = rows
    return tables


#: The planted truth a genoembed simulation writes beside its cohort (``simulate.truth.TRUTH_JSON``).
SIMULATION_TRUTH = "truth.json"


def unlinked_blocks(input_dir: Path) -> bool:
    """Whether the cohort is a genoembed simulation: each of its blocks is its own genealogy.

    Its touching blocks share no haplotypes across their edge, so engine ``hap``
    phases them one by one (joined, OutOfAfrica_4J17's four touching blocks
    scored 0.9865 against 0.9896; docs/benchmarks.md).
    """
    source = layout.read_cohort_settings(input_dir).get("source")
    return bool(source) and (Path(source) / SIMULATION_TRUTH).exists()


def _model_config(block_dir: Path) -> BlockVAEConfig:
    metrics = json.loads((block_dir / "metrics.json").read_text())
    return BlockVAEConfig(**metrics["config"])


def impute_cohort(
    input_dir: str | Path,
    phase1_dir: str | Path,
    out_vcf: str | Path,
    *,
    device: str = "cpu",
    n_draws: int = DEFAULT_DRAWS,
    engine: str = "blend",
    local: LDNeighbourConfig = LDNeighbourConfig(),
    haplotypes: HaplotypeConfig = HaplotypeConfig(),
    genetic_map: GeneticMap | None = None,
    log: Callable[[str], object] = print,
) -> pd.DataFrame:
    """Impute every block of an ingested cohort and write ``out_vcf`` (+ ``.tbi``).

    Parameters
    ----------
    input_dir
        The ingested cohort (``results/<cohort>/input``).
    phase1_dir
        Folder holding one trained block folder per block id.
    out_vcf
        Target ``.vcf.gz``.
    device
        Torch device of the block models.
    n_draws
        Posterior draws per call (see :func:`models._impute.posterior_predictive`).
    engine
        ``blend`` (the block VAE and the LD-neighbour rule, weighted per block),
        ``vae`` (the block VAE alone), ``ld`` (the LD-neighbour rule alone: no
        trained model needed) or ``hap`` (the haplotypes phased and copied from
        each other, ``haplotypes.runs`` times, :mod:`models._haplotype_copying`,
        averaged with the LD-neighbour rule: no trained model needed; blocks that
        touch on a chromosome are phased together, :mod:`imputation_segments`).
    local
        Settings of the LD-neighbour rule.
    haplotypes
        Settings of the haplotype-copying model (engine ``hap``).
    genetic_map
        Centimorgans for the copying model's switch rates (engine ``hap``); a
        block on a chromosome the map lacks reads 1 cM per Mb, with a note.
    log
        One line per block.

    Returns
    -------
    pandas.DataFrame
        Per block: ``block_id, n_snps, n_imputed, missing_rate, vae_weight, dr2_mean, dr2_min, seconds``
        (engine ``hap``: the first block of a segment holds the segment's phasing time).

    Raises
    ------
    CohortInputError
        When a block has no trained model (names the blocks and the fix).
    """
    check_engine(engine)
    input_dir, phase1_dir = Path(input_dir), Path(phase1_dir)
    manifest = layout.read_manifest(input_dir)
    subjects = layout.read_subjects(input_dir)
    untrained = [] if engine in UNTRAINED_ENGINES else [b for b in manifest["block_id"] if not (phase1_dir / b / "model.pt").exists()]
    if untrained:
        raise CohortInputError(phase1_dir, f"no trained block model for {len(untrained)} block(s): "
                               f"{', '.join(untrained[:10])}; materialize block_embeddings for them first",
                               where=f"block {untrained[0]}")
    tables = _variant_tables(input_dir)
    sites = {row.block_id: block_sites(tables.get(row.block_id), row._asdict(), int(row.n_snps))
             for row in manifest.itertuples(index=False)}
    contigs = list(dict.fromkeys(c for s in sites.values() for c in s["chrom"]))
    rows: list[dict] = []
    unmapped: set[str] = set()

    def genetic_positions(site: pd.DataFrame) -> np.ndarray | None:
        if genetic_map is None:
            return None
        chrom = str(site["chrom"].iloc[0]) if len(site) else ""
        cm = genetic_map.cm(chrom, site["pos"].to_numpy()) if site["chrom"].nunique() == 1 else None
        if cm is None and chrom not in unmapped:
            unmapped.add(chrom)
            log(f"note: genetic map {genetic_map.path} has no chromosome {chrom}; its blocks read 1 cM per Mb")
        return cm

    records = manifest.to_dict(orient="records")
    segments = []
    if engine == "hap":
        unlinked = unlinked_blocks(input_dir)
        if unlinked:
            log("note: a genoembed simulation (its blocks are separate genealogies): blocks phased one by one")
        segments = hap_segments([sites[r["block_id"]] for r in records], [(r["start"], r["end"]) for r in records],
                                len(subjects), flank=haplotypes.final_window,
                                max_genotypes=imputation_segments.SEGMENT_GENOTYPES, join=not unlinked)
    segment_of = {i: s for s in segments for i in range(s.first, s.stop)}
    # block index -> (its genotypes, its slice of the segment's GP or None), loaded once for both uses
    copied_blocks: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}

    def load(i: int) -> np.ndarray:
        return layout.load_block(input_dir, records[i], len(subjects))

    def copy_segment(segment: HapSegment) -> None:
        """Phase the segment's blocks (and flanks) together; keep each core block's slice of the GP."""
        parts = [load(i) for i in range(segment.lo_block, segment.hi_block)]
        core = [parts[i - segment.lo_block] for i in range(segment.first, segment.stop)]
        if not any((g < 0).any() for g in core):  # phasing costs seconds; skip blocks with nothing to fill
            copied_blocks.update({i: (g, None) for i, g in zip(range(segment.first, segment.stop), core)})
            return
        genotypes = np.concatenate(parts, axis=1)[:, segment.lo:segment.hi]
        names = [records[i]["block_id"] for i in (segment.first, segment.stop - 1)]
        log(f"phasing {' to '.join(dict.fromkeys(names))} ({segment.stop - segment.first} block(s), "
            f"{genotypes.shape[1]} markers with context, {haplotypes.runs} run(s))")
        site = pd.concat([sites[records[i]["block_id"]] for i in range(segment.lo_block, segment.hi_block)],
                         ignore_index=True).iloc[segment.lo:segment.hi]
        gp = copying_gp(genotypes, site["pos"].to_numpy(), haplotypes, cm=genetic_positions(site))
        for i, g, (start, stop) in zip(range(segment.first, segment.stop), core, segment.cores):
            copied_blocks[i] = (g, gp[:, start:stop] if (g < 0).any() else None)

    def blocks() -> Iterator:
        for i, row in enumerate(records):
            start = time.perf_counter()
            block_dir = phase1_dir / row["block_id"]
            model = held_out = None
            copied = None
            if engine == "hap":
                if i not in copied_blocks:
                    copy_segment(segment_of[i])
                genotypes, copied = copied_blocks.pop(i)
            else:
                genotypes = load(i)
            if engine not in UNTRAINED_ENGINES:
                config = _model_config(block_dir)
                model = load_block_model(block_dir, config, genotypes.shape[1], device=device)
                held_out = split_subjects(genotypes.shape[0], config)[1]  # the blend is chosen on calls never trained on
            calls = impute_block(model, genotypes, local=None if engine == "vae" else local, n_draws=n_draws,
                                 calibration_rows=held_out, copied=copied)
            n_imputed = int(calls.imputed.sum())
            dr2 = calls.dr2[np.isfinite(calls.dr2)]
            rows.append({"block_id": row["block_id"], "n_snps": genotypes.shape[1], "n_imputed": n_imputed,
                         "missing_rate": n_imputed / genotypes.size,
                         "vae_weight": calls.vae_weight,
                         "dr2_mean": float(dr2.mean()) if dr2.size else float("nan"),
                         "dr2_min": float(dr2.min()) if dr2.size else float("nan"),
                         "seconds": time.perf_counter() - start})
            log(f"imputed block {i + 1}/{len(manifest)} {row['block_id']}: {n_imputed} call(s) filled"
                + (f", mean DR2 {dr2.mean():.3f}" if dr2.size else "")
                + (f", block model weight {calls.vae_weight:.1f}" if engine == "blend" else ""))
            yield sites[row["block_id"]], calls

    write_imputed_vcf(out_vcf, list(subjects), blocks(), contigs=contigs, source="genoembed imputed_genotypes")
    return pd.DataFrame(rows)
