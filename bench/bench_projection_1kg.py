"""Projection on real genotypes: 1000 Genomes chr20 (data/1kg_chr20), figures for docs/projection.md.

Three cohorts from the two shipped panels (same 24,990 sites, disjoint samples):
``kg_ref`` = reference.vcf.gz (300 samples), ``kg_new`` = unphased.vcf.gz (203
others), ``kg_all`` = both (503). Phase 1 is trained on ``kg_ref`` and on
``kg_all`` (fast preset, CPU); ``kg_new`` is projected onto ``kg_ref``'s
frozen block models. Per block it reports the matched-variant fraction and
the Procrustes correlation between the 203 samples' projected embeddings and
their embeddings from the models trained on all 503 (scipy's ``procrustes``:
both centred and scaled, best rotation; correlation = sqrt(1 - disparity)).
As a yardstick the same correlation between two ``kg_all`` trainings that
differ only in the seed (``--no-seed-baseline`` skips that third training).

Usage::

    python bench/bench_projection_1kg.py --out /tmp/kg_bench [--json rows.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

KG = ROOT / "data" / "1kg_chr20" if (ROOT / "data" / "1kg_chr20" / "reference.vcf.gz").exists() else ROOT.parent / "shared" / "data" / "1kg_chr20"
COHORTS = {"kg_ref": ("reference.vcf.gz",), "kg_new": ("unphased.vcf.gz",), "kg_all": ("reference.vcf.gz", "unphased.vcf.gz")}


def procrustes_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """sqrt(1 - disparity) of scipy's orthogonal Procrustes (1: same up to rotation, shift and scale)."""
    from scipy.spatial import procrustes

    k = min(a.shape[1], b.shape[1])
    _, _, disparity = procrustes(a[:, :k].astype(float), b[:, :k].astype(float))
    return float(np.sqrt(max(0.0, 1.0 - disparity)))


def build(out: Path, seed_baseline: bool = True, log=print) -> pd.DataFrame:
    import dagster as dg

    from genoembed_assets.defs.resources import ComputeResource, GenoembedStorage
    from genoembed_assets.genotypes import layout
    from genoembed_assets.models._reference_snapshot import freeze_reference
    from genoembed_assets.models.projection import project_blocks
    from genoembed_assets.runner import fast_run_config, materialize_cohort

    cohorts, results = out / "cohorts", out / "results"
    names = dict(COHORTS, **({"kg_all_seed1": COHORTS["kg_all"]} if seed_baseline else {}))
    for name, files in names.items():
        (cohorts / name).mkdir(parents=True, exist_ok=True)
        for f in files:
            if not (cohorts / name / f).exists():
                shutil.copy(KG / f, cohorts / name / f)
    storage = GenoembedStorage(cohorts_root=str(cohorts), results_root=str(results))
    resources = {"storage": storage, "compute": ComputeResource(device="cpu")}
    (out / "dagster_home").mkdir(parents=True, exist_ok=True)
    timings = {}
    with dg.instance_for_test(temp_dir=str(out / "dagster_home")) as instance:
        for name in names:
            stages = {"cohort inputs"} if name == "kg_new" else {"cohort inputs", "blocks"}
            config = fast_run_config()
            if name == "kg_all_seed1":
                config["ops"]["block_embeddings"]["config"]["seed"] = 1
            started = time.perf_counter()
            materialize_cohort(name, instance=instance, resources=resources, run_config=config, stages=stages,
                               log=lambda _m: None, console_level="WARNING")
            timings[name] = time.perf_counter() - started
            log(f"{name}: {sorted(stages)} in {timings[name]:.0f} s")
    started = time.perf_counter()
    snapshot = freeze_reference(storage.cohort_dir("kg_ref"), "kg_ref", out / "snapshots")
    new_ids = layout.read_subjects(storage.input_dir("kg_new"))
    rows = []
    for projected in project_blocks(snapshot, storage.input_dir("kg_new")):
        block = projected.block_id
        row = {"block_id": block, **{k: projected.counts[k] for k in ("n_reference", "n_matched", "matched_fraction", "absent")}}
        trained = storage.phase1_dir("kg_all", block) / "embedding.parquet"
        if trained.exists():
            full = pd.read_parquet(trained).set_index("subject_id").loc[new_ids].to_numpy()
            row["procrustes_r"] = procrustes_correlation(projected.embedding, full)
            seeded = storage.phase1_dir("kg_all_seed1", block) / "embedding.parquet"
            if seeded.exists():
                other = pd.read_parquet(seeded).set_index("subject_id").loc[new_ids].to_numpy()
                row["seed_baseline_r"] = procrustes_correlation(other, full)
        rows.append(row)
    log(f"projection of kg_new onto {snapshot.label}: {time.perf_counter() - started:.1f} s")
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-seed-baseline", action="store_true")
    args = parser.parse_args(argv)
    table = build(args.out, seed_baseline=not args.no_seed_baseline)
    print(table.to_markdown(index=False, floatfmt=".3f"))
    numeric = table.drop(columns="block_id")
    print("median:", numeric.median().round(3).to_dict())
    if args.json:
        args.json.write_text(json.dumps(table.to_dict(orient="records"), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
