"""Command line: ``genoembed demo``, ``genoembed run COHORT``, ``genoembed simulate OUT``.

``demo`` is what the README's run command calls: it simulates the demo cohort
(unless present), then materializes its whole graph against the Dagster
instance in ``$DAGSTER_HOME`` (SQLite by default), printing where results are.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

DEMO_COHORT = "demo"


def _instance():
    import dagster as dg

    home = os.environ.get("DAGSTER_HOME")
    if not home:
        sys.exit("DAGSTER_HOME is not set: export DAGSTER_HOME=$PWD/dagster_home (make run does this)")
    Path(home).mkdir(parents=True, exist_ok=True)
    return dg.DagsterInstance.get()


def _run(cohort: str, preset: str) -> int:
    from .definitions import defs
    from .runner import PipelineError, materialize_cohort, preset_run_config

    storage = defs.resources["storage"]
    start = time.perf_counter()
    try:
        stages = materialize_cohort(cohort, instance=_instance(), run_config=preset_run_config(preset))
    except PipelineError as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        return 1
    total = time.perf_counter() - start
    out = storage.cohort_dir(cohort)
    print(f"\nCohort {cohort!r} materialized in {total:.0f} s ({len(stages)} stages).")
    print(f"Results: {out}")
    for sub in ("input", "phase1", "phase2", "analysis"):
        if (out / sub).exists():
            print(f"  {sub + '/':<10} {sum(1 for p in (out / sub).rglob('*') if p.is_file())} files")
    print(f"Dagster instance (run history, metadata, checks): {os.environ['DAGSTER_HOME']}")
    print("Open the UI on it:  DAGSTER_HOME=$PWD/dagster_home .venv/bin/dagster dev   (then http://127.0.0.1:3000)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="genoembed", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="simulate the demo cohort (if absent) and materialize its graph")
    demo.add_argument("--n-subjects", type=int, default=1200)
    demo.add_argument("--regenerate", action="store_true", help="simulate again even if the cohort exists")
    demo.add_argument("--preset", default="fast", choices=["fast", "balanced", "thorough"],
                      help="training preset of Phase 1 and Phase 2 (default: fast)")
    run = sub.add_parser("run", help="materialize the graph of a cohort folder under the cohorts root")
    run.add_argument("cohort")
    run.add_argument("--preset", default="balanced", choices=["fast", "balanced", "thorough"],
                     help="training preset of Phase 1 and Phase 2 (default: balanced)")
    sim = sub.add_parser("simulate", help="write a simulated cohort folder")
    sim.add_argument("out", type=Path)
    sim.add_argument("--n-subjects", type=int, default=1200)
    sim.add_argument("--n-background-blocks", type=int, default=24)
    sim.add_argument("--seed", type=int, default=20261121)
    args = parser.parse_args(argv)

    if args.command == "simulate":
        from .genotypes.simulate import simulate_cohort

        cohort = simulate_cohort(args.out, n_subjects=args.n_subjects, n_background_blocks=args.n_background_blocks, seed=args.seed)
        print(f"wrote {cohort.out_dir} ({cohort.truth['n_subjects']} subjects) in {cohort.elapsed_s:.1f} s; planted truth in {cohort.truth_path}")
        return 0
    if args.command == "demo":
        from .definitions import defs
        from .genotypes.simulate import simulate_cohort

        folder = defs.resources["storage"].source_dir(DEMO_COHORT)
        if args.regenerate or not (folder / "manifest.tsv").exists():
            print(f"simulating the demo cohort into {folder} ...")
            start = time.perf_counter()
            simulate_cohort(folder, n_subjects=args.n_subjects)
            print(f"  done in {time.perf_counter() - start:.0f} s")
        else:
            print(f"using the demo cohort in {folder} (--regenerate to simulate it again)")
        return _run(DEMO_COHORT, args.preset)
    return _run(args.cohort, args.preset)


if __name__ == "__main__":
    sys.exit(main())
