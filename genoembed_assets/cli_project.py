"""``genoembed project --reference A COHORT``: embed a cohort with a trained reference's frozen models.

The same graph as ``genoembed run``, with ``block_embeddings`` told to project
onto ``A`` (as ``{"reference": "A"}`` in the cohort's ``cohort.json`` would):
Phase 1 encodes with A's block models, Phase 2 applies A's Transformer,
``subject_clusters`` assigns to A's clusters. Nothing is trained. The
models used are frozen under ``results/COHORT/reference/A-<version>/``.
"""

from __future__ import annotations

import json
from pathlib import Path


def add_project_parser(sub, common) -> None:
    project = sub.add_parser("project", parents=[common],
                             help="embed a cohort folder with a trained reference cohort's models (no training)")
    project.add_argument("cohort")
    project.add_argument("--reference", required=True, help="a cohort already materialized (genoembed run REFERENCE)")


def project_command(args, run, usage_error) -> int:
    """Check the reference is trained, run the graph in projection mode, print what was used."""
    from .definitions import defs
    from .runner import preset_run_config

    storage = defs.resources["storage"]
    reference = args.reference
    if reference == args.cohort:
        raise usage_error(f"--reference {reference}: a cohort cannot be projected onto itself; fix: name another cohort")
    if not (storage.cohort_dir(reference) / "phase1").is_dir():
        raise usage_error(f"{storage.cohort_dir(reference)}: no trained reference cohort {reference!r}; "
                          f"fix: run `genoembed run {reference}` first (or point GENOEMBED_RESULTS at its results)")
    config = preset_run_config("fast")  # presets only shape training, which projection does not do
    config["ops"]["block_embeddings"]["config"]["reference"] = reference
    code = run(args.cohort, "fast", verbose=args.verbose, run_config=config)
    record = storage.cohort_dir(args.cohort) / "projection.json"
    if record.exists():
        used = json.loads(record.read_text())
        print(f"Projected onto {used['reference']} version {used['version']} (models frozen in {used['snapshot']})")
        _print_matching(storage.phase1_dir(args.cohort))
        clusters = storage.analysis_dir(args.cohort) / "subject_clusters.json"
        if clusters.exists():
            print(f"Clusters: {json.loads(clusters.read_text())['verdict']}")
    return code


def _print_matching(phase1: Path) -> None:
    records = [json.loads(p.read_text()) for p in sorted(phase1.glob("*/projection.json"))]
    if not records:
        return
    fractions = [r["matched_fraction"] for r in records]
    recoded = sum(r["swapped"] + r["strand_flipped_swapped"] for r in records)
    flipped = sum(r["strand_flipped"] + r["strand_flipped_swapped"] for r in records)
    dropped = sum(r["ambiguous_dropped"] for r in records)
    print(f"Variants matched per block: {min(fractions):.1%} to {max(fractions):.1%} over {len(records)} blocks "
          f"({recoded} recoded 2-g, {flipped} strand-flipped, {dropped} ambiguous A/T or C/G dropped)")
