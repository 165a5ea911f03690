"""Simulate a whole cohort and write it in the original layout, plus the command line."""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ... import storage
from ..layout import MANIFEST, PHENOTYPES, SETTINGS, SUBJECTS, BlockArray, write_cohort
from .blocks import LOCUS_KEYS, select_cohort_blocks
from .config import EIGENVEC_SOURCES, SimulationConfig
from .eigenvec import EIGENVEC, cohort_eigenvec
from .haplotypes import Block, load_model, make_subjects, seed_sequence, simulate_block
from .pca import block_pc1
from .phenotypes import phenotypes, within_ancestry
from .truth import TRUTH_JSON, TRUTH_SUBJECTS, oracle_strata, truth_dict, truth_subjects

__all__ = ["SimulatedCohort", "main", "simulate_cohort"]

VARIANTS = "variants.tsv"
_FIELDS = tuple(f.name for f in dataclasses.fields(SimulationConfig) if f.init)


@dataclass(frozen=True)
class SimulatedCohort:
    """Where a simulated cohort was written, and its planted truth.

    Attributes
    ----------
    out_dir : Path
        Cohort folder in the original layout.
    manifest_path, subjects_path, phenotypes_path : Path
        The layout files (``manifest.tsv``, ``subjects.tsv``, ``phenotypes.csv``).
    eigenvec_path : Path or None
        ``pcs.eigenvec``; None when the config's ``eigenvec_source`` is ``"none"``.
    variants_path : Path
        ``variants.tsv``: block_id, variant_id, chrom, pos (1-based), ref, alt,
        in the column order of each block matrix.
    truth_path, truth_subjects_path : Path
        ``truth.json`` and ``truth_subjects.tsv`` (see ``docs/design.md``).
    truth : dict
        The content of ``truth.json``.
    elapsed_s : float
        Wall time of the simulation and writing.
    config : SimulationConfig
        The parameters it was simulated with.
    """

    out_dir: Path
    manifest_path: Path
    subjects_path: Path
    phenotypes_path: Path
    eigenvec_path: Path | None
    variants_path: Path
    truth_path: Path
    truth_subjects_path: Path
    truth: dict
    elapsed_s: float
    config: SimulationConfig = SimulationConfig()


def _variants_table(block_id: str, chrom: str, block: Block) -> pd.DataFrame:
    return pd.DataFrame({
        "block_id": block_id,
        "variant_id": [f"{block_id}:{i}" for i in range(len(block.positions))],
        "chrom": chrom,
        "pos": block.positions,
        "ref": block.alleles[:, 0],
        "alt": block.alleles[:, 1],
    })


def _clear_previous(out_dir: Path, overwrite: bool) -> None:
    if not (out_dir / MANIFEST).exists():
        return
    # A simulated cohort (it has truth.json) is simply replaced; anything else needs consent.
    if not overwrite and not (out_dir / TRUTH_JSON).exists():
        raise FileExistsError(
            f"{out_dir} holds a cohort that was not simulated ({MANIFEST} without {TRUTH_JSON}); "
            "pass overwrite=True (CLI: --overwrite) to replace it"
        )
    (out_dir / MANIFEST).unlink()  # first: a folder without manifest is never trusted
    for name in (SUBJECTS, PHENOTYPES, SETTINGS, EIGENVEC, TRUTH_JSON, TRUTH_SUBJECTS, VARIANTS):
        (out_dir / name).unlink(missing_ok=True)
    shutil.rmtree(out_dir / "blocks", ignore_errors=True)


def simulate_cohort(
    out_dir: str | Path,
    *,
    config: SimulationConfig | None = None,
    overwrite: bool = False,
    n_threads: int | None = 1,
    **params,
) -> SimulatedCohort:
    """Simulate a cohort with planted truth and write it in the original layout.

    Parameters
    ----------
    out_dir : str or Path
        Cohort folder to write (``manifest.tsv``, ``subjects.tsv``,
        ``phenotypes.csv``, ``pcs.eigenvec`` unless the eigenvec source is
        ``"none"``, ``cohort.json``, ``blocks/*.npy``, plus ``variants.tsv``,
        ``truth.json`` and ``truth_subjects.tsv``).
    config : SimulationConfig, optional
        The cohort's parameters; default ``SimulationConfig()`` (the demo).
    overwrite : bool, default False
        Replace a cohort in ``out_dir`` that was not simulated (a previously
        simulated cohort, recognised by its ``truth.json``, is always replaced).
    n_threads : int or None, default 1
        BLAS/OpenMP threads while simulating (None: the libraries' default).
        Single-threaded by default: the matrices are small and extra threads
        mostly spin-wait on a shared machine (3x slower measured).
    **params
        Any :class:`SimulationConfig` field (``n_subjects=800, seed=7``),
        replacing the one in ``config``.

    Returns
    -------
    SimulatedCohort
    """
    unknown = sorted(set(params) - set(_FIELDS))
    if unknown:
        raise TypeError(f"simulate_cohort got unknown parameters {unknown}; SimulationConfig fields are {list(_FIELDS)}")
    config = dataclasses.replace(config or SimulationConfig(), **params)
    started = time.perf_counter()

    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n_threads):
        out_dir = Path(out_dir)
        blocks = select_cohort_blocks(config.n_background_blocks, config.ld_partners_per_side if config.inter_block_ld > 0 else 0)
        _clear_previous(out_dir, overwrite)
        spec = config.demography_spec
        species, model = load_model(spec)
        subjects = make_subjects(config.n_subjects, config.fractions, spec,
                                 np.random.default_rng(seed_sequence(config.seed, 1)), strata=config.has_strata)
        weights = config.structure_weights()

        simulated: dict[str, Block] = {}
        n_panel = int(np.ceil(config.n_pc_snps / len(blocks)))
        for _, row in blocks.iterrows():
            weight = config.ld_partner_weight if row["role"] == "ld_partner" else weights.get(row["locus"], 0.0)
            simulated[row["block_id"]] = simulate_block(
                row, subjects, weight, demography=spec, seed=config.seed, model=model, species=species,
                sim_length=config.sim_length, pool_factor=config.pool_factor, min_maf=config.min_maf,
                max_variants=config.max_variants, min_variants=config.min_variants,
                missing_rate=config.missing_rate, n_panel=n_panel, lineage_tags=config.lineage_tags,
                balanced_groups=config.balanced_groups,
            )

        locus_blocks = {row["locus"]: row["block_id"] for _, row in blocks.iterrows() if row["locus"]}
        locus_blocks = {k: locus_blocks[k] for k in LOCUS_KEYS}
        eigenvec = cohort_eigenvec(config.eigenvec_source, subjects.ids, list(simulated.values()))

        features = {locus: within_ancestry(block_pc1(simulated[bid].genotypes), subjects.fractions)
                    for locus, bid in locus_blocks.items()}
        phen = phenotypes(subjects, spec, features, np.random.default_rng(seed_sequence(config.seed, 2)))

        logliks = [blk.stratum_loglik for blk in simulated.values() if blk.stratum_loglik is not None]
        oracle = oracle_strata(logliks)
        truth = truth_dict(config, subjects=subjects, blocks=blocks, locus_blocks=locus_blocks, model_id=model.id,
                           n_panel=sum(blk.panel.shape[1] for blk in simulated.values()), oracle=oracle)
        variants = pd.concat(
            [_variants_table(bid, str(chrom), simulated[bid]) for bid, chrom in zip(blocks["block_id"], blocks["chrom"])],
            ignore_index=True,
        )

        # Truth and variants first: write_cohort writes the manifest last, which marks the folder finished.
        out_dir.mkdir(parents=True, exist_ok=True)
        storage.write_json(out_dir / TRUTH_JSON, truth)
        storage.write_tsv(out_dir / TRUTH_SUBJECTS, truth_subjects(subjects, spec.sources, oracle))
        storage.write_tsv(out_dir / VARIANTS, variants)
        write_cohort(
            out_dir, subjects.ids,
            (BlockArray(row["block_id"], str(row["chrom"]), int(row["start"]), int(row["end"]), simulated[row["block_id"]].genotypes)
             for _, row in blocks.iterrows()),
            phenotypes=phen, eigenvec=eigenvec, settings={"build": "hg19"},
        )
        return SimulatedCohort(
            out_dir=out_dir,
            manifest_path=out_dir / MANIFEST,
            subjects_path=out_dir / SUBJECTS,
            phenotypes_path=out_dir / PHENOTYPES,
            eigenvec_path=None if eigenvec is None else out_dir / EIGENVEC,
            variants_path=out_dir / VARIANTS,
            truth_path=out_dir / TRUTH_JSON,
            truth_subjects_path=out_dir / TRUTH_SUBJECTS,
            truth=truth,
            elapsed_s=time.perf_counter() - started,
            config=config,
        )


_CLI_FIELDS = ("n_subjects", "n_background_blocks", "seed", "min_variants", "max_variants", "missing_rate",
               "demography", "stratum_strength", "inter_block_ld", "eigenvec_source")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m genoembed_assets.genotypes.simulate OUT_DIR [options]``."""
    from .config import DEMOGRAPHIES, GENOME_PRESET

    defaults = SimulationConfig()
    parser = argparse.ArgumentParser(
        prog="python -m genoembed_assets.genotypes.simulate",
        description="Write a deterministic simulated cohort with planted truth (original layout).",
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--genome", action="store_true",
                        help="the genome-wide preset: every block of the hg19 map, "
                             + ", ".join(f"{k}={v}" for k, v in GENOME_PRESET.items() if k != "n_background_blocks")
                             + " (other options override it)")
    # Defaults None: an option not given keeps the base config's value (the demo, or the genome preset).
    parser.add_argument("--n-subjects", type=int, help=f"default {defaults.n_subjects}")
    parser.add_argument("--n-background-blocks", type=int,
                        help=f"default {defaults.n_background_blocks}; -1: every block of the map besides the loci")
    parser.add_argument("--seed", type=int, help=f"default {defaults.seed}")
    parser.add_argument("--min-variants", type=int, help=f"default {defaults.min_variants}")
    parser.add_argument("--max-variants", type=int, help=f"default {defaults.max_variants}")
    parser.add_argument("--missing-rate", type=float, help=f"default {defaults.missing_rate}")
    parser.add_argument("--demography", choices=sorted(DEMOGRAPHIES), help=f"default {defaults.demography}")
    parser.add_argument("--stratum-strength", type=float, help=f"default {defaults.stratum_strength}")
    parser.add_argument("--inter-block-ld", type=float, help=f"default {defaults.inter_block_ld}")
    parser.add_argument("--eigenvec-source", choices=EIGENVEC_SOURCES, help=f"default {defaults.eigenvec_source}")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-simulated cohort already in OUT_DIR")
    args = parser.parse_args(argv)
    given = {name: getattr(args, name) for name in _CLI_FIELDS if getattr(args, name) is not None}
    try:
        config = SimulationConfig(**{**(GENOME_PRESET if args.genome else {}), **given})
    except ValueError as exc:
        parser.error(str(exc))
    cohort = simulate_cohort(args.out_dir, config=config, overwrite=args.overwrite)
    manifest = pd.read_csv(cohort.manifest_path, sep="\t")
    truth = cohort.truth
    print(f"wrote {truth['n_subjects']} subjects x {len(manifest)} blocks "
          f"({int(manifest['n_snps'].sum())} variants) to {cohort.out_dir} in {cohort.elapsed_s:.1f} s")
    print(f"demography: {truth['demographic_model']}; eigenvec: {truth['eigenvec_source']}")
    print("populations: " + ", ".join(f"{k}={v}" for k, v in truth["population_counts"].items()))
    print("locus blocks: " + ", ".join(f"{k}={v}" for k, v in truth["locus_blocks"].items()))
    print(f"structure blocks: strong {truth['strong_structure_blocks']}, weak {truth['weak_structure_blocks']}, "
          f"LD partners {truth['ld_partner_blocks']}")
    print(f"files: {', '.join(sorted(p.name for p in cohort.out_dir.iterdir() if p.is_file()))}, blocks/*.npy")
    return 0
