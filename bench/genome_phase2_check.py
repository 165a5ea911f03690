"""Genome-wide Phase 2 validity without Phase 1: planted structure in 1,703 synthetic blocks.

A check on cohorts the genome-wide fixes were not tuned on (docs/scale.md): the
synthetic analysis cohort (``analysis.synthetic.synthetic_cohort``: a 3-level
stratum in the two HLA class II blocks, strong, and one PDE4D block, weak, plus
two-population ancestry in every block) padded with background blocks to the
map's 1,703, with its own seed, size and strengths. It runs ``fit_cross_block``
with a Phase 2 preset (``genome`` by default: windowed attention, screen focus
and head choice all on) and the subject clustering, and prints the planted
blocks' ranks and p-values, the screen's candidates, the chosen k and the ARI
against the planted stratum. Minutes per run on 2 cores. Usage::

    python bench/genome_phase2_check.py --subjects 1200 --seed 5 --strong 1.5 --weak 0.8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def run(args) -> dict:
    import numpy as np
    import torch
    from sklearn.metrics import adjusted_rand_score

    from genoembed_assets.analysis import cluster_subjects
    from genoembed_assets.analysis.synthetic import _NAMED_BLOCKS, synthetic_cohort
    from genoembed_assets.models._cross_block import CROSS_BLOCK_PRESETS
    from genoembed_assets.models._cross_block_training import fit_cross_block
    from genoembed_assets.models._embedding_store import InMemoryEmbeddingStore

    torch.set_num_threads(args.threads)
    cohort = synthetic_cohort(n_subjects=args.subjects, n_background=args.blocks - len(_NAMED_BLOCKS), latent_dim=args.latent,
                              strong=args.strong, weak=args.weak, random_state=args.seed)
    blocks = cohort.blocks[["block_id", "chrom", "start", "end"]]
    data = np.stack([cohort.block_embeddings[b].drop(columns="subject_id").to_numpy(np.float32) for b in blocks["block_id"]], axis=1)
    store = InMemoryEmbeddingStore(data, blocks, cohort.subjects["subject_id"])
    config = CROSS_BLOCK_PRESETS[args.preset]
    overrides = {k: v for k, v in {"screen_focus": args.screen_focus, "importance_head": args.importance_head,
                                   "epochs": args.epochs, "patience": args.patience}.items() if v is not None}
    config = config.with_overrides(**overrides) if overrides else config
    started = time.perf_counter()
    result = fit_cross_block(store, config, log=print if args.verbose else None)
    seconds = time.perf_counter() - started
    table = result.block_importance.set_index("block_id")
    truth = cohort.truth
    clusters = cluster_subjects(result.subject_embeddings, cohort.pcs)
    labels = clusters.table.set_index("subject_id").loc[cohort.subjects["subject_id"], "cluster"].to_numpy()
    planted = truth["strong_structure_blocks"] + truth["weak_structure_blocks"]
    return {
        "subjects": args.subjects, "blocks": int(store.n_blocks), "seed": args.seed, "strong": args.strong, "weak": args.weak,
        "preset": args.preset, "overrides": overrides, "phase2_s": round(seconds, 1),
        "epochs_run": {seed: m["epochs_run"] for seed, m in result.metrics["seeds"].items()},
        "strong_ranks": [int(table.loc[b, "rank"]) for b in truth["strong_structure_blocks"]],
        "strong_p": [float(table.loc[b, "importance_p"]) for b in truth["strong_structure_blocks"]],
        "weak_ranks": [int(table.loc[b, "rank"]) for b in truth["weak_structure_blocks"]],
        "weak_p": [float(table.loc[b, "importance_p"]) for b in truth["weak_structure_blocks"]],
        "significant": sorted(table.index[table["importance_q"] < 0.05]),
        "null_q_rate": float((table.drop(index=planted)["importance_q"] < 0.05).mean()),
        "screen": result.metrics["screen"],
        "screen_candidates": sorted(table.index[table["screen_q"] < 0.05]),
        "k": int(clusters.summary["k"]),
        "ari": float(adjusted_rand_score(cohort.subjects["stratum"], labels)),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=1200)
    parser.add_argument("--blocks", type=int, default=1703)
    parser.add_argument("--latent", type=int, default=8)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--strong", type=float, default=1.5, help="stratum separation in the two HLA blocks (noise SDs)")
    parser.add_argument("--weak", type=float, default=0.8, help="stratum separation in the PDE4D block")
    parser.add_argument("--preset", default="genome")
    parser.add_argument("--screen-focus", type=int, choices=(-1, 0, 1), default=None)
    parser.add_argument("--importance-head", choices=("auto", "token", "best"), default=None)
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    parser.add_argument("--patience", type=int, default=None, help="override the preset's early-stopping patience")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    if args.blocks < 10:
        parser.error("--blocks must be >= 10 (the 9 named blocks and at least one background block)")
    out = run(args)
    print(json.dumps(out, indent=1))
    if args.out is not None:
        from genoembed_assets import storage

        storage.write_json(args.out, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
