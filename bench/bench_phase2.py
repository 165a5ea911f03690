"""Benchmark Phase 2: fit time, throughput and peak memory, streamed vs in memory.

Writes synthetic Phase 1 embedding files (``<block>/embedding.npy``) under a
scratch folder, then fits the cross-block Transformer twice, each in its own
process so peak RSS is that run's alone:

* ``stream``: :class:`BlockEmbeddingStore` memory-maps the block files and
  reads one mini-batch of subjects at a time (the production path);
* ``memory``: the peer, the same model fed from one materialized
  ``(subjects, blocks, k)`` array (:class:`InMemoryEmbeddingStore`).

Usage::

    python bench/bench_phase2.py --subjects 5000 --blocks 200 --k 8 --epochs 2

``--scan-only`` measures just one mini-batch pass over all subjects (no
model), which isolates the store's memory from the model's activations.
Prints one line per mode (``--json`` saves the rows).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _anon_rss_mb() -> float:
    """Current anonymous RSS: memory the process owns. Memory-mapped file pages
    a scan has touched count in ``ru_maxrss`` but are page cache the kernel can
    drop, so this is the figure that shows whether memory grows with subjects."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def write_files(folder: Path, n_subjects: int, n_blocks: int, k: int) -> None:
    from genoembed_assets import storage
    from genoembed_assets.models._embedding_store import synthetic_block_embeddings

    if (folder / "meta.tsv").exists():
        return
    data, meta, _ = synthetic_block_embeddings(n_subjects, n_blocks, k, strong_blocks=(3, 4, 17), seed=0)
    for b, block in enumerate(meta["block_id"]):
        storage.write_npy(folder / block / "embedding.npy", np.ascontiguousarray(data[:, b, :]))
    storage.write_tsv(folder / "meta.tsv", meta)


def run_one(folder: Path, mode: str, epochs: int, threads: int, device: str | None, scan_only: bool = False) -> dict:
    import pandas as pd
    import torch

    from genoembed_assets.models._cross_block import CROSS_BLOCK_PRESETS
    from genoembed_assets.models._cross_block_training import fit_cross_block
    from genoembed_assets.models._embedding_store import BlockEmbeddingStore, InMemoryEmbeddingStore

    torch.set_num_threads(threads)
    meta = pd.read_csv(folder / "meta.tsv", sep="\t", dtype={"chrom": str})
    baseline = _rss_mb()  # after imports: what the interpreter and torch cost anyway
    started = time.perf_counter()
    store = BlockEmbeddingStore([folder / b for b in meta["block_id"]], meta)
    if mode == "memory":
        store = InMemoryEmbeddingStore(store.get(np.arange(store.n_subjects)), meta)
    loaded = time.perf_counter() - started
    if scan_only:
        # The store's own footprint: one pass over all subjects in mini-batches, no model.
        checksum = sum(float(batch.sum()) for _, batch in store.iter_batches(np.arange(store.n_subjects), 64))
        total = time.perf_counter() - started
        return {"mode": f"{mode}-scan", "subjects": store.n_subjects, "blocks": store.n_blocks, "k": store.k_max,
                "total_s": total, "subjects_per_s": store.n_subjects / total, "checksum": checksum,
                "peak_rss_mb": _rss_mb(), "rss_over_baseline_mb": _rss_mb() - baseline, "anon_rss_mb": _anon_rss_mb(),
                "data_mb": store.n_subjects * store.n_blocks * store.k_max * 4 / 2**20}
    config = CROSS_BLOCK_PRESETS["balanced"].with_overrides(
        epochs=epochs, patience=epochs, seeds=(0,), importance_subjects=1000, importance_mask_draws=1
    )
    result = fit_cross_block(store, config, device=device)
    total = time.perf_counter() - started
    train_seconds = float(result.curves["seconds"].sum())
    return {
        "mode": mode,
        "subjects": store.n_subjects,
        "blocks": store.n_blocks,
        "k": store.k_max,
        "epochs": epochs,
        "device": result.metrics["device"],
        "threads": threads,
        "load_s": loaded,
        "train_s": train_seconds,
        "total_s": total,
        "train_subjects_per_s": result.metrics["n_train"] * epochs / train_seconds,
        "peak_rss_mb": _rss_mb(),
        "rss_over_baseline_mb": _rss_mb() - baseline,
        "anon_rss_mb": _anon_rss_mb(),
        "data_mb": store.n_subjects * store.n_blocks * store.k_max * 4 / 2**20,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=5000)
    parser.add_argument("--blocks", type=int, default=200)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/genoembed_bench_phase2"))
    parser.add_argument("--modes", default="stream,memory")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--scan-only", action="store_true", help="measure one batch pass over the data, no model")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child process: run one mode
    args = parser.parse_args(argv)
    folder = args.scratch / f"n{args.subjects}_b{args.blocks}_k{args.k}"
    if args.one and args.one != "write":
        print(json.dumps(run_one(folder, args.one, args.epochs, args.threads, args.device, args.scan_only)))
        return 0
    if args.one == "write":
        write_files(folder, args.subjects, args.blocks, args.k)
        return 0
    base = [sys.executable, __file__, "--subjects", str(args.subjects), "--blocks", str(args.blocks), "--k", str(args.k),
            "--epochs", str(args.epochs), "--threads", str(args.threads), "--scratch", str(args.scratch)]
    # Linux keeps ru_maxrss across exec, so this parent stays small: the data is written by a child too.
    subprocess.run([*base, "--one", "write"], check=True)
    rows = []
    for mode in args.modes.split(","):
        cmd = [*base, "--one", mode]
        if args.device:
            cmd += ["--device", args.device]
        if args.scan_only:
            cmd.append("--scan-only")
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        rows.append(row)
        if args.scan_only:
            print(f"{row['mode']:12s} {row['subjects']}x{row['blocks']}x{row['k']} ({row['data_mb']:.0f} MB): {row['subjects_per_s']:.0f} subjects/s, "
                  f"peak RSS {row['peak_rss_mb']:.0f} MB (+{row['rss_over_baseline_mb']:.0f} MB over imports), anon RSS {row['anon_rss_mb']:.0f} MB", flush=True)
            continue
        print(f"{mode:6s} {row['subjects']}x{row['blocks']}x{row['k']} ({row['data_mb']:.0f} MB) on {row['device']}: "
              f"train {row['train_s']:.1f}s ({row['train_subjects_per_s']:.0f} subjects/s), total {row['total_s']:.1f}s, "
              f"peak RSS {row['peak_rss_mb']:.0f} MB (+{row['rss_over_baseline_mb']:.0f} MB over imports), anon RSS at end {row['anon_rss_mb']:.0f} MB", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
