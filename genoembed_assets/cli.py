"""Command line: ``genoembed demo``, ``genoembed run COHORT``, ``genoembed simulate OUT``, ``genoembed project``,
``genoembed impute IN OUT``.

``demo`` is what the README's run command calls: it simulates the demo cohort
(unless present), then materializes its whole graph against the Dagster
instance in ``$DAGSTER_HOME`` (SQLite by default), printing where results are.

Output: Dagster's log on stdout at INFO (``-v``: DEBUG, every event and epoch),
a progress display when stdout is a terminal, and on failure one or two lines
on stderr naming the file and the place plus the fix. Exit codes: 0 done,
2 the input (or the command line) is at fault, 1 anything else. ``--debug``
adds the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

DEMO_COHORT = "demo"
EXIT_INPUT = 2  # the input or the command line is at fault: fixable by the user
EXIT_FAILED = 1


class UsageError(Exception):
    """Something the user fixes outside the input folder (environment, arguments)."""


def _instance():
    import dagster as dg

    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise UsageError("DAGSTER_HOME is not set; fix: export DAGSTER_HOME=$PWD/dagster_home (make run does this)")
    Path(home).mkdir(parents=True, exist_ok=True)
    # a fresh home makes Dagster print a notice and a telemetry welcome on stderr: keep stderr for errors
    with contextlib.redirect_stderr(sys.stdout):
        return dg.DagsterInstance.get()


@contextlib.contextmanager
def _stderr_to_stdout():
    """stderr is for the command's errors: Dagster's notices (a fresh home, telemetry) and C libraries'
    warnings (htslib writes to file descriptor 2) go with the log to stdout while the pipeline runs."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        saved = os.dup(2)
        os.dup2(sys.stdout.fileno(), 2)
    except (OSError, ValueError, AttributeError):  # no real descriptors (e.g. captured by a test)
        saved = None
    try:
        with contextlib.redirect_stderr(sys.stdout):
            yield
    finally:
        if saved is not None:
            sys.stdout.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _run(cohort: str, preset: str, *, verbose: bool = False, run_config: dict | None = None) -> int:
    from .definitions import defs
    from .progress import ProgressDisplay
    from .runner import materialize_cohort, preset_run_config

    storage, instance = defs.resources["storage"], _instance()
    if not storage.source_dir(cohort).is_dir():
        raise UsageError(f"{storage.source_dir(cohort)}: no cohort folder {cohort!r}; fix: put the cohort there, "
                         f"or point GENOEMBED_COHORTS at the folder holding it")
    start = time.perf_counter()
    with ProgressDisplay() as progress, _stderr_to_stdout():
        stages = materialize_cohort(cohort, instance=instance, run_config=run_config or preset_run_config(preset),
                                    console_level="DEBUG" if verbose else "INFO", progress=progress)
    total = time.perf_counter() - start
    out = storage.cohort_dir(cohort)
    print(f"\nCohort {cohort!r} materialized in {total:.0f} s ({len(stages)} stages).")
    print(f"Results: {out}")
    for sub in ("input", "phase1", "phase2", "analysis", "imputed"):
        if (out / sub).exists():
            print(f"  {sub + '/':<10} {sum(1 for p in (out / sub).rglob('*') if p.is_file())} files")
    from .defs.models.imputed_genotypes import imputed_vcf_path

    if imputed_vcf_path(storage, cohort).exists():
        print(f"Imputed VCF (every missing call filled, FORMAT GT:DS:GP:IMP): {imputed_vcf_path(storage, cohort)}")
    print(f"Dagster instance (run history, metadata, checks): {os.environ['DAGSTER_HOME']}")
    print("Open the UI on it:  DAGSTER_HOME=$PWD/dagster_home .venv/bin/dagster dev   (then http://127.0.0.1:3000)")
    return 0


def _simulation_fields() -> list[tuple[str, type, tuple | None, object]]:
    """``(name, type, choices, default)`` of every plain field of SimulationConfig (one flag each)."""
    import dataclasses
    import typing

    from .genotypes.simulate import DEMOGRAPHIES, SimulationConfig

    hints, defaults, out = typing.get_type_hints(SimulationConfig), SimulationConfig(), []
    for f in dataclasses.fields(SimulationConfig):
        kind = hints[f.name]
        if not f.init or f.name.startswith("_"):
            continue
        if typing.get_origin(kind) is typing.Literal:
            out.append((f.name, str, typing.get_args(kind), getattr(defaults, f.name)))
        elif kind in (int, float, str):
            out.append((f.name, kind, tuple(sorted(DEMOGRAPHIES)) if f.name == "demography" else None, getattr(defaults, f.name)))
    return out


def _add_simulation_flags(parser: argparse.ArgumentParser) -> None:
    """``--n-subjects``, ``--demography``, ``--stratum-strength``, ...: one flag per SimulationConfig field."""
    for name, kind, choices, default in _simulation_fields():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, choices=choices, default=default,
                            help=f"SimulationConfig.{name} (default: {default})")


def _simulation_config(args):
    from .genotypes.simulate import SimulationConfig

    return SimulationConfig(**{name: getattr(args, name) for name, *_ in _simulation_fields()})


def _fix(exc: BaseException, command: str, cohort: str | None) -> str:
    """The second line of an error: what to do about it."""
    again = f"genoembed {command}" + (f" {cohort}" if cohort and command == "run" else "")
    return f"fix the file or setting named above, then run `{again}` again (--debug shows the traceback)"


def _report_error(exc: BaseException, args) -> int:
    """One line naming the file and the place, one with the fix (stderr); the traceback with --debug."""
    from .genotypes.errors import CohortInputError

    runner = sys.modules.get(f"{__package__}.runner")  # loaded when a run was attempted; importing it costs seconds
    if runner is not None and isinstance(exc, runner.PipelineError):
        message, code, details = exc.user_message, EXIT_INPUT if exc.input_error else EXIT_FAILED, exc.details
    elif isinstance(exc, (CohortInputError, UsageError)) or (args.command == "simulate" and isinstance(exc, (ValueError, OSError))):
        message, code, details = str(exc), EXIT_INPUT, ""  # simulate: its settings or its output folder
    else:
        message, code, details = f"{type(exc).__name__}: {exc}", EXIT_FAILED, ""
    if getattr(args, "debug", False):
        traceback.print_exception(exc, file=sys.stderr)
        if details:
            print(details, file=sys.stderr)
    first = " ".join(str(message).split())  # one line, whatever the message held
    print(f"genoembed: error: {first}", file=sys.stderr)
    if code == EXIT_INPUT and "fix:" not in first:
        print(f"  {_fix(exc, args.command, getattr(args, 'cohort', None))}", file=sys.stderr)
    elif code == EXIT_FAILED:
        print("  this looks like a bug, not your input: rerun with --debug and report the traceback", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="genoembed", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="Dagster's log at DEBUG (every event, every epoch)")
    common.add_argument("--debug", action="store_true", help="print the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", parents=[common], help="simulate the demo cohort (if absent) and materialize its graph")
    demo.add_argument("--n-subjects", type=int, default=1200)
    demo.add_argument("--regenerate", action="store_true", help="simulate again even if the cohort exists")
    demo.add_argument("--preset", default="fast", choices=["fast", "balanced", "thorough"],
                      help="training preset of Phase 1 and Phase 2 (default: fast)")
    run = sub.add_parser("run", parents=[common], help="materialize the graph of a cohort folder under the cohorts root")
    run.add_argument("cohort")
    run.add_argument("--preset", default="balanced", choices=["fast", "balanced", "thorough"],
                     help="training preset of Phase 1 and Phase 2 (default: balanced)")
    sim = sub.add_parser("simulate", parents=[common], help="write a simulated cohort folder (planted truth beside it)")
    sim.add_argument("out", type=Path)
    sim.add_argument("--overwrite", action="store_true", help="replace a non-simulated cohort already in OUT")
    _add_simulation_flags(sim)
    from .cli_project import add_project_parser

    add_project_parser(sub, common)
    imp = sub.add_parser("impute", parents=[common], help="fill the missing calls of a VCF with block models (VCF out)")
    imp.add_argument("input", type=Path, help="VCF/BCF file (or a cohort folder in any accepted layout)")
    imp.add_argument("output", type=Path, help="imputed .vcf.gz to write (with its .tbi)")
    imp.add_argument("--work", type=Path, default=None, help="work folder (default: <OUTPUT stem>_genoembed/); "
                     "block models trained there are reused for the same input and preset")
    imp.add_argument("--preset", default="impute", choices=["fast", "balanced", "thorough", "impute"],
                     help="Phase 1 training preset (default: impute)")
    imp.add_argument("--engine", default="ld", choices=["ld", "hap", "blend", "vae"],
                     help="what fills a call: the LD-neighbour rule of each block (default; nothing to train), "
                     "haplotype copying mixed with it (hap: phases each chromosome's blocks together twice, more "
                     "accurate, about 3.4x the time; chr20: 0.9907 concordance against Beagle's 0.9903 in 0.73x "
                     "its time; nothing to train), the block VAE blended with "
                     "the rule (trains or reuses the block models), or the VAE alone")
    imp.add_argument("--hap-runs", type=int, default=None, metavar="N",
                     help="--engine hap: independent phasings averaged (default 2; each costs one phasing's "
                     "time; 2 and 3 scored 0.9901 and 0.9902 concordance on 1000 Genomes chr20 block by block, Beagle "
                     "0.9903; 2 phasing the blocks together: 0.9907)")
    imp.add_argument("--map", type=Path, default=None, metavar="FILE", dest="genetic_map",
                     help="--engine hap: genetic map for the switch rates ('pos chr cM' as SHAPEIT ships, Eagle/HapMap "
                     "with a header, or a PLINK .map as Beagle reads; gzipped too); without one, 1 cM per Mb "
                     "(chr20: 0.9909 with the map, 0.9907 without; Beagle 0.9905 and 0.9903)")
    imp.add_argument("--maf-min", type=float, default=None,
                     help="ingest QC: variants under this MAF are dropped from the output "
                     "(default 0 for --engine ld, so every variant comes back; 0.01 when block models are trained)")
    imp.add_argument("--max-missing", type=float, default=None,
                     help="ingest QC: variants missing more than this share of calls are dropped from the output "
                     "(default 1 for --engine ld: every variant with an observed call is imputed; 0.1 when block "
                     "models are trained, as the pipeline does)")
    imp.add_argument("--device", default=None, help="torch device (default: CUDA when present, else CPU)")
    args = parser.parse_args(argv)
    # Dagster's beta/preview notices (e.g. on MultiToSingleDimensionPartitionMapping) are not the user's business
    warnings.filterwarnings("ignore", message=r".*is currently in (beta|preview)")
    try:
        return _command(args)
    except KeyboardInterrupt:
        print("genoembed: interrupted (completed artifacts are kept; run again to resume)", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the command line reports every error as one line
        return _report_error(exc, args)


def _command(args) -> int:
    if args.command == "project":
        from .cli_project import project_command

        return project_command(args, _run, UsageError)
    if args.command == "impute":
        from .cli_impute import impute_input

        if args.hap_runs is not None and args.engine != "hap":
            raise UsageError(f"--hap-runs applies to --engine hap only (got --engine {args.engine}); "
                             "fix: drop --hap-runs or add --engine hap")
        if args.genetic_map is not None and args.engine != "hap":
            raise UsageError(f"--map applies to --engine hap only (got --engine {args.engine}); "
                             "fix: drop --map or add --engine hap")
        if args.hap_runs is not None and args.hap_runs < 1:
            raise UsageError(f"--hap-runs must be at least 1, got {args.hap_runs}; fix: --hap-runs 2 (the default)")
        done = impute_input(args.input, args.output, work=args.work, preset=args.preset, device=args.device,
                            engine=args.engine, maf_min=args.maf_min, max_missing=args.max_missing,
                            hap_runs=args.hap_runs, genetic_map=args.genetic_map)
        from .imputation import UNTRAINED_ENGINES  # loaded by impute_input already

        models = (f"no block models needed (engine {args.engine})" if args.engine in UNTRAINED_ENGINES
                  else f"{done['trained']} block model(s) trained, {done['reused']} reused")
        print(f"wrote {done['out']} (+ .tbi): {done['n_subjects']} subjects x {done['n_variants']} variants, "
              f"{done['n_imputed']} calls imputed; {models} (work folder {done['work']})")
        if done["dropped"]:
            reasons = ", ".join(f"{n} {reason}" for reason, n in done["dropped"].items())
            print(f"not in the output: {reasons} (see {done['work'] / 'input' / 'qc.json'})")
        return 0
    if args.command == "simulate":
        from .genotypes.simulate import simulate_cohort

        cohort = simulate_cohort(args.out, config=_simulation_config(args), overwrite=args.overwrite)
        print(f"wrote {cohort.out_dir} ({cohort.truth['n_subjects']} subjects) in {cohort.elapsed_s:.1f} s; planted truth in {cohort.truth_path}")
        return 0
    if args.command == "demo":
        from .definitions import defs
        from .genotypes.simulate import SimulationConfig, simulate_cohort

        try:
            config = SimulationConfig(n_subjects=args.n_subjects)
        except ValueError as exc:
            raise UsageError(f"--n-subjects: {exc}") from None
        folder = defs.resources["storage"].source_dir(DEMO_COHORT)
        if args.regenerate or not (folder / "manifest.tsv").exists():
            print(f"simulating the demo cohort into {folder} ...")
            start = time.perf_counter()
            simulate_cohort(folder, config=config)
            print(f"  done in {time.perf_counter() - start:.0f} s")
        else:
            print(f"using the demo cohort in {folder} (--regenerate to simulate it again)")
        return _run(DEMO_COHORT, args.preset, verbose=args.verbose)
    return _run(args.cohort, args.preset, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
