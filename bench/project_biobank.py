"""Project the genome-wide bench to a biobank: reads ``bench_genome.json``, prints the figures of docs/scale.md.

Usage::

    python bench/project_biobank.py /tmp/genoembed_bench_genome/bench_genome.json [--subjects 500000] [--gpu-speedup 10 50]

Scaling (docs/scale.md): Phase 1 and Phase 2 time linear in subjects (epochs capped by the
preset), Phase 1 run memory linear in the genotypes a run holds, Phase 2 memory set by the batch.
The GPU speed-up is not measured here (no GPU on the bench machine): pass the factors to show.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

BLOCKS_PER_RUN = 64


def project(bench: dict, subjects: int, speedups: list[float], max_parallel: int = 8) -> dict:
    stages = bench["stages"]
    n_bench = stages["simulate"]["subjects"]
    blocks = stages["simulate"]["blocks"]
    scale = subjects / n_bench
    phase1 = stages["phase1"]
    run_seconds = [r["wall_s"] for r in phase1.get("run_details", []) if r.get("wall_s")]
    t1 = sum(run_seconds) / blocks  # run-seconds per block at the bench's size
    t2 = stages["downstream"]["wall_s"]
    runs = math.ceil(blocks / BLOCKS_PER_RUN)
    bytes_ = stages.get("score", {}).get("bytes", {})
    s_in = bytes_.get("input", 0) / n_bench
    s_out = sum(v for k, v in bytes_.items() if k.startswith("results")) / n_bench
    out = {
        "bench_subjects": n_bench, "blocks": blocks, "subjects": subjects,
        "t1_run_s_per_block": t1, "phase1_run_s_median": sorted(run_seconds)[len(run_seconds) // 2] if run_seconds else None,
        "t2_downstream_s": t2, "phase1_runs": runs,
        "cpu": {"phase1_h_one_worker": blocks * t1 * scale / 3600, "downstream_h": t2 * scale / 3600},
        "storage_tb": {"input": s_in * subjects / 1e12, "results": s_out * subjects / 1e12},
        "gpu": {},
    }
    for g in speedups:
        one = (blocks * t1 * scale + t2 * scale) / g / 3600
        waves = math.ceil(runs / max_parallel)
        cluster = (waves * BLOCKS_PER_RUN * t1 * scale / g + t2 * scale / g) / 3600
        out["gpu"][f"x{g:g}"] = {"one_gpu_h": one, f"k8s_{max_parallel}_gpus_h": cluster}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_json", type=Path)
    parser.add_argument("--subjects", type=int, default=500_000)
    parser.add_argument("--gpu-speedup", type=float, nargs="*", default=[10.0, 50.0])
    args = parser.parse_args(argv)
    print(json.dumps(project(json.loads(args.bench_json.read_text()), args.subjects, args.gpu_speedup), indent=2))


if __name__ == "__main__":
    main()
