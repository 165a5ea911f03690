"""Write a simulated cohort as a bgzipped, indexed VCF, for benchmarks that take one (``--vcf``).

The imputation benchmark measures genoembed and Beagle on the chr20 panels by
default; a VCF from here lets the same comparison run on cohorts nothing was
tuned on. The cohort is simulated with :func:`simulate_cohort` (msprime under a
stdpopsim demography), ingested, and written GT only (the simulation's own missing calls as ``./.``).

Example::

    python bench/cohort_vcf.py OutOfAfrica_3G09 800 4242 /tmp/ooa.vcf.gz
    python bench/cohort_vcf.py OutOfAfrica_3G09 800 4242 /tmp/ooa_rare.vcf.gz --min-maf 0.002
    python bench/bench_imputation.py --vcf /tmp/ooa.vcf.gz --work /tmp/bench_ooa --peers beagle genoembed_hap
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_cohort_vcf(input_dir: Path, out: Path) -> Path:
    """Every block of an ingested cohort as one GT-only VCF (blocks sorted by contig and position; missing: ``./.``)."""
    import pysam
    from cyvcf2 import Writer

    from genoembed_assets.genotypes import layout
    from genoembed_assets.genotypes.vcf_write import _gt_codes, block_sites
    from genoembed_assets.imputation import _variant_tables

    manifest = layout.read_manifest(input_dir)
    subjects = [str(s) for s in layout.read_subjects(input_dir)]
    tables = _variant_tables(input_dir)
    rows = manifest.to_dict(orient="records")
    sites = {r["block_id"]: block_sites(tables.get(r["block_id"]), r, int(r["n_snps"])) for r in rows}
    rows.sort(key=lambda r: (str(sites[r["block_id"]]["chrom"].iloc[0]), int(sites[r["block_id"]]["pos"].iloc[0])))
    contigs = list(dict.fromkeys(str(sites[r["block_id"]]["chrom"].iloc[0]) for r in rows))
    header = "\n".join(["##fileformat=VCFv4.2", "##source=genoembed bench/cohort_vcf.py",
                        *[f"##contig=<ID={c}>" for c in contigs],
                        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
                        "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *subjects])])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.vcf.gz")
    empty = "\t".join(["./."] * len(subjects))
    try:  # written beside the target and moved into place, so a failed run leaves no half file
        writer = Writer.from_string(str(tmp), header + "\n", mode="wz")
        for r in rows:
            g = layout.load_block(input_dir, r, len(subjects))
            for j, site in enumerate(sites[r["block_id"]].itertuples(index=False)):
                record = writer.variant_from_string(
                    f"{site.chrom}\t{int(site.pos)}\t{site.id}\t{site.ref}\t{site.alt}\t.\t.\t.\tGT\t{empty}")
                codes = _gt_codes(np.clip(g[:, j], 0, 2))
                codes[g[:, j] < 0] = 0  # htslib's missing allele
                record.set_format("GT", codes)
                writer.write_record(record)
        writer.close()
        pysam.tabix_index(str(tmp), preset="vcf", force=True)
        tmp.replace(out)
        Path(f"{tmp}.tbi").replace(f"{out}.tbi")
    finally:
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.tbi").unlink(missing_ok=True)
    return out


def main(argv=None) -> int:
    from genoembed_assets.genotypes.ingest import ingest_cohort
    from genoembed_assets.genotypes.simulate import simulate_cohort
    from genoembed_assets.genotypes.simulate.config import DEMOGRAPHIES, SimulationConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demography", choices=sorted(DEMOGRAPHIES), help="a stdpopsim HomSap demography id")
    parser.add_argument("n_subjects", type=int)
    parser.add_argument("seed", type=int)
    parser.add_argument("out", type=Path, help="the .vcf.gz to write (its .tbi beside it)")
    parser.add_argument("--min-maf", type=float, default=None, metavar="F",
                        help="keep simulated variants down to this minor allele frequency (the simulator's default: "
                             "0.02); below 0.01 the ingest keeps them too, as `genoembed impute --engine hap` does")
    args = parser.parse_args(argv)
    if args.min_maf is not None and not 0 < args.min_maf < 0.5:
        parser.error(f"--min-maf must be in (0, 0.5), got {args.min_maf}")
    rare = {} if args.min_maf is None else {"min_maf": args.min_maf}
    with tempfile.TemporaryDirectory() as tmp:
        config = SimulationConfig(demography=args.demography, n_subjects=args.n_subjects, seed=args.seed, **rare)
        simulate_cohort(Path(tmp) / "src", config=config, overwrite=True)
        ingest_cohort(Path(tmp) / "src", Path(tmp) / "input", log=lambda message: None,
                      maf_min=min(0.01, config.min_maf))
        write_cohort_vcf(Path(tmp) / "input", args.out)
    print(f"wrote {args.out} ({args.n_subjects} subjects, {args.demography}, seed {args.seed}, "
          f"variants of MAF >= {config.min_maf:g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
