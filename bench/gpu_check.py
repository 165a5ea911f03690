"""Check the GPU path against the CPU one: Phase 1 training, block-model imputation, Phase 2.

Run where CUDA is present (it exits 2 otherwise)::

    python bench/gpu_check.py --json gpu_check.json

The same blocks train on ``cpu`` and ``cuda`` with the same configuration and
seed; the two cannot agree bit for bit (different kernels and random streams),
so what must agree is what a user reads: held-out accuracy per block, the
imputed genotype probabilities of a model moved between devices, and the
blocks the Phase 2 fit ranks first on a cohort with three planted ones. Prints
one JSON object and exits 1 when a figure disagrees beyond its tolerance
(named in the output). ``--devices cpu,cpu`` runs the same checks without a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ACCURACY_TOLERANCE = 0.02  # held-out accuracy, CPU vs GPU, per block
GP_TOLERANCE = 1e-3  # imputed probabilities of one model on both devices


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def phase1(n_subjects: int, n_blocks: int, preset: str, devices=("cpu", "cuda")) -> tuple[dict, list[str]]:

    from genoembed_assets.models import PRESETS, BlockVAE, synthetic_genotypes, train_blocks
    from genoembed_assets.models._impute import posterior_predictive

    rng = np.random.default_rng(0)
    blocks = [(f"b{i:03d}", synthetic_genotypes(n_subjects, int(w), 6, seed=i, missing_rate=0.01))
              for i, w in enumerate(rng.integers(60, 400, size=n_blocks))]
    config = PRESETS[preset]
    out, problems, fits = {}, [], {}
    for device in devices:
        started = time.perf_counter()
        fits[device] = train_blocks(blocks, config, device=device)
        _sync()
        seconds = time.perf_counter() - started
        out[device] = {"seconds": seconds,
                       "heldout_accuracy": {f.block_id: f.metrics["heldout_accuracy"] for f in fits[device]},
                       "epochs": {f.block_id: f.metrics["epochs_run"] for f in fits[device]}}
    for block_id, cpu in out[devices[0]]["heldout_accuracy"].items():
        gpu = out[devices[1]]["heldout_accuracy"][block_id]
        if abs(gpu - cpu) > ACCURACY_TOLERANCE:
            problems.append(f"block {block_id}: held-out accuracy {devices[0]} {cpu:.4f} vs {devices[1]} {gpu:.4f}")
    # one trained model, moved between devices: the decoded posterior mean agrees up to float rounding
    # (posterior draws come from each device's own random stream, so they are not compared)
    fit = fits[devices[1]][0]
    genotypes = dict(blocks)[fit.block_id]
    mean = {}
    for device in devices:
        model = BlockVAE.from_config(config, genotypes.shape[1])
        model.load_state_dict(fit.state_dict)
        mean[device] = posterior_predictive(model.to(device), genotypes, n_draws=0)
    out["gp_mean_max_abs_difference"] = float(np.abs(mean[devices[0]] - mean[devices[1]]).max())
    if out["gp_mean_max_abs_difference"] > GP_TOLERANCE:
        problems.append(f"block {fit.block_id}: posterior-mean GP differs by {out['gp_mean_max_abs_difference']:.2e}")
    return out, problems


def phase2(n_subjects: int, n_blocks: int, k: int, devices=("cpu", "cuda")) -> tuple[dict, list[str]]:

    from genoembed_assets.models import CrossBlockConfig, InMemoryEmbeddingStore, fit_cross_block
    from genoembed_assets.models._embedding_store import synthetic_block_embeddings

    # the planted cohort of test_cross_block: 3 blocks on different chromosomes share a hidden stratum
    data, meta, _ = synthetic_block_embeddings(n_subjects, n_blocks, k, strong_blocks=(3, 4, 17), ancestry_effect=1.5,
                                               strong_effect=2.5, seed=3)
    config = CrossBlockConfig(width=32, layers=2, heads=2, dropout=0.0, epochs=40, patience=40, batch_size=32, lr=6e-3,
                              seeds=(0, 1, 2), importance_mask_draws=2)
    out, problems = {}, []
    for device in devices:
        store = InMemoryEmbeddingStore(data, meta)
        started = time.perf_counter()
        result = fit_cross_block(store, config, device=device)
        _sync()
        top = result.block_importance.sort_values("rank").block_id.head(3).tolist()
        out[device] = {"seconds": time.perf_counter() - started, "device": result.metrics["device"],
                       "final_val_loss": result.metrics["final_val_loss"], "top3_blocks": top,
                       "distance_correlation": result.metrics["distance_correlation"]}
    planted = {meta.block_id[i] for i in (3, 4, 17)}
    for device in devices:
        if set(out[device]["top3_blocks"]) != planted:
            problems.append(f"phase 2 on {device}: top blocks {out[device]['top3_blocks']}, planted {sorted(planted)}")
    return out, problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=2000)
    parser.add_argument("--blocks", type=int, default=12)
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--devices", default="cpu,cuda", help="the two devices compared (cpu,cpu checks this script)")
    args = parser.parse_args(argv)
    import torch

    devices = tuple(args.devices.split(","))
    if "cuda" in devices and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; nothing to compare", file=sys.stderr)
        return 2
    report = {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "torch": torch.__version__, "problems": []}
    for name, run in (("phase1", lambda: phase1(args.subjects, args.blocks, args.preset, devices)),
                      ("phase2", lambda: phase2(min(args.subjects, 1000), 20, 4, devices))):
        try:
            report[name], problems = run()
            report["problems"] += problems
        except Exception as error:  # report every stage, even when one breaks
            import traceback

            report[name] = {"error": traceback.format_exc()}
            report["problems"].append(f"{name}: {type(error).__name__}: {error}")
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
