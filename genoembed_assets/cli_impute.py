"""``genoembed impute IN OUT``: a VCF/BCF (or any cohort folder) in, an imputed VCF out.

The standalone path, no Dagster instance needed: ingest the input into a work
folder, train a Phase 1 block model for each block (or reuse one trained for
the same block genotypes and configuration, the fingerprint the
``block_embeddings`` asset uses), impute every missing call and write the
bgzipped, indexed VCF. Progress is one line per step on stdout.

Work folder (default ``<OUT without .vcf.gz>_genoembed/``)::

    source/   a link to IN (ingest reads a folder)
    input/    the ingested cohort (qc.json says which variants QC dropped)
    phase1/   one trained block folder per block
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

__all__ = ["impute_input", "work_dir_for"]


def work_dir_for(out: Path) -> Path:
    name = out.name
    for suffix in (".gz", ".bgz", ".vcf", ".bcf"):
        name = name.removesuffix(suffix)
    return out.with_name(f"{name}_genoembed")


def _source_folder(inp: Path, work: Path) -> Path:
    """A folder the ingest reads: IN itself when it is a folder, else a folder holding a link to it."""
    if inp.is_dir():
        return inp
    source = work / "source"
    source.mkdir(parents=True, exist_ok=True)
    for old in source.iterdir():
        if old.is_symlink() or old.is_file():
            old.unlink()
    (source / inp.name).symlink_to(inp.resolve())
    return source


def impute_input(
    inp: str | Path,
    out: str | Path,
    *,
    work: str | Path | None = None,
    preset: str = "impute",
    device: str | None = None,
    maf_min: float | None = None,
    max_missing: float | None = None,
    engine: str = "ld",
    hap_runs: int | None = None,
    genetic_map: str | Path | None = None,
    log: Callable[[str], object] = print,
) -> dict:
    """Ingest ``inp``, train (or reuse) its block models, write the imputed VCF ``out``.

    ``engine`` is what fills a call (:data:`imputation.ENGINES`): ``ld``
    (default), each block's LD-neighbour rule, trains nothing; ``hap`` phases
    the blocks of each chromosome together (:mod:`imputation_segments`) and
    averages haplotype copying with the rule, training nothing;
    ``blend`` and ``vae`` train or reuse the block VAEs. On the 1000 Genomes
    chr20 panels ``ld`` scores 0.980 concordance in 23 s against Beagle's 122 s
    (one invocation), ``hap`` 0.9907 in 80 s against Beagle's 0.9903 in 110 s
    (another); ``blend``
    0.979 at 0.62x Beagle's time (an earlier run)
    (``docs/benchmarks.md``). ``hap_runs``: phasings averaged by ``hap``
    (default :class:`HaplotypeConfig`'s, 2). ``genetic_map``: a genetic map
    file for ``hap``'s switch rates (:mod:`genotypes.genetic_map`; without one,
    1 cM per Mb): on chr20 0.9909 instead of 0.9907 (Beagle given the map:
    0.9905 instead of 0.9903).

    ``maf_min`` and ``max_missing`` are the ingest QC; variants failing them
    are not written. Defaults for ``ld`` and ``hap``: 0 and 1, so every biallelic variant
    with at least one observed call comes back, however many calls it misses
    (the rule votes with whoever observed it); when block VAEs are trained,
    0.01 and 0.1, the QC the pipeline trains its block models under.

    Returns a summary: paths, blocks trained and reused, calls imputed,
    variants dropped (``dropped``: by reason), seconds per step.
    """
    from .genotypes import layout
    from .genotypes.errors import CohortInputError
    from .genotypes.ingest import ingest_cohort
    from .imputation import UNTRAINED_ENGINES, check_engine, hap_settings, impute_cohort
    from .models import PRESETS

    inp, out = Path(inp), Path(out)
    if not inp.exists():
        raise CohortInputError(inp, "no such file or folder")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    check_engine(engine)  # before the ingest, which can take minutes
    haplotypes, gmap = hap_settings(engine, hap_runs, genetic_map)  # a bad map fails before the ingest
    work = Path(work) if work is not None else work_dir_for(out)
    if maf_min is None:
        maf_min = 0.0 if engine in UNTRAINED_ENGINES else 0.01
    if max_missing is None:
        max_missing = 1.0 if engine in UNTRAINED_ENGINES else 0.1
    config = PRESETS[preset]
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    source = _source_folder(inp, work)
    try:
        # cover_gaps: every variant comes back, also where the LD block map has no block (X, gaps)
        report = ingest_cohort(source, work / "input", maf_min=maf_min, max_missing=max_missing,
                               cover_gaps=True, log=log)
    except CohortInputError as exc:
        if exc.path is None or exc.path.parent != source or source == inp:
            raise
        # name the user's file, not the link to it in the work folder
        raise CohortInputError(inp.parent / exc.path.name, exc.problem, where=exc.where) from None
    seconds["ingest"] = time.perf_counter() - start

    start = time.perf_counter()
    input_dir = work / "input"
    todo, reused = [], []
    if engine in UNTRAINED_ENGINES:
        log(f"phase 1: not needed (engine {engine!r} trains nothing)")
    else:
        todo, reused = _train_or_reuse(input_dir, work, config, preset, device, log)
    seconds["train"] = time.perf_counter() - start

    start = time.perf_counter()
    table = impute_cohort(input_dir, work / "phase1", out, device=device or "cpu", engine=engine,
                          haplotypes=haplotypes, genetic_map=gmap, log=log)
    seconds["impute"] = time.perf_counter() - start
    return {"out": out, "index": Path(f"{out}.tbi"), "work": work, "n_subjects": len(layout.read_subjects(input_dir)),
            "n_variants": int(table["n_snps"].sum()), "n_variants_dropped_by_qc": report.n_variants_in - report.n_variants_kept,
            "dropped": _dropped(report, maf_min, max_missing),
            "n_imputed": int(table["n_imputed"].sum()), "trained": len(todo), "reused": len(reused),
            "seconds": seconds, "blocks": table}


def _dropped(report, maf_min: float, max_missing: float) -> dict[str, int]:
    """Input variants that are not in the output, by reason (zero counts left out)."""
    blocks = report.blocks
    reasons = {
        ("no observed call" if max_missing >= 1 else f"missing rate over {max_missing:g} or no observed call"):
            int(blocks["failed_missing"].sum()) if len(blocks) else 0,
        f"MAF under {maf_min:g}": int(blocks["failed_maf"].sum()) if len(blocks) else 0,
        "in blocks left empty by QC": int(report.n_variants_in_skipped_blocks),
        # the reader's counts: multiallelic, no_alt, outside_blocks, unknown_contig ({contig: count})
        **{reason.replace("_", " "): int(sum(count.values()) if isinstance(count, dict) else count)
           for reason, count in (report.skipped or {}).items()},
    }
    return {reason: count for reason, count in reasons.items() if count}


def _train_or_reuse(input_dir: Path, work: Path, config, preset: str, device, log) -> tuple[list, list]:
    """Train the block models the work folder lacks for this input and preset; the ids trained and reused."""
    # Dagster is imported only here: the resume fingerprint is the block_embeddings asset's own
    from .defs.models.block_embeddings import is_complete, mark_complete, rehash_note, resume_keys
    from .genotypes import layout
    from .models import save_block_fit, train_blocks

    manifest = layout.read_manifest(input_dir)
    subjects = layout.read_subjects(input_dir)
    todo, reused = [], []
    prints, rehashed = resume_keys(input_dir, dict(zip(manifest["block_id"], manifest["file"])), config)
    if rehashed:
        log(f"phase 1: {rehash_note(rehashed)}")
    for row in manifest.to_dict(orient="records"):
        block_dir = work / "phase1" / row["block_id"]
        if is_complete(block_dir, prints[row["block_id"]], input_dir / row["file"], config):
            reused.append(row["block_id"])
        else:
            todo.append((row["block_id"], layout.load_block(input_dir, row, len(subjects))))
    log(f"phase 1: {len(todo)} block model(s) to train, {len(reused)} reused (same genotypes and preset {preset!r})")

    def save(fit) -> None:
        block_dir = work / "phase1" / fit.block_id
        save_block_fit(fit, block_dir, subjects)
        mark_complete(block_dir, prints[fit.block_id])  # last: marks it complete
        log(f"trained {fit.block_id}: held-out accuracy {fit.metrics['heldout_accuracy']:.3f} "
            f"(mode baseline {fit.metrics['mode_baseline_accuracy']:.3f})")

    if todo:
        train_blocks(todo, config, device=device, log=lambda m: None, on_fit=save)
    return [b for b, _ in todo], reused
