"""Simulate a cohort whose recombination sits in hotspots, and write its VCF and genetic map.

The simulator behind ``bench/cohort_vcf.py`` uses one recombination rate per
chromosome, so a genetic map cannot help there. Here msprime draws a stretch of
chromosome under a recombination map of narrow hotspots over a low background
(as in human maps: most crossovers fall in 1-2 kb hotspots), and the map it was
drawn under is written beside the VCF (SHAPEIT's ``pos chr cM``), for
``bench/bench_imputation.py --vcf ... --map ...``.

Example::

    python bench/hotspot_vcf.py 500 31 /tmp/hot.vcf.gz /tmp/hot.gmap
    python bench/bench_imputation.py --vcf /tmp/hot.vcf.gz --map /tmp/hot.gmap --work /tmp/bench_hot \\
        --peers beagle genoembed_hap
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np


def hotspot_map(length: int, n_hotspots: int, seed: int, *, background: float = 1e-10,
                hotspot_cm: tuple[float, float] = (0.05, 0.4), width: int = 2_000):
    """An msprime RateMap: ``n_hotspots`` hotspots of ``width`` bp, each worth 0.05-0.4 cM, over ``background`` per bp."""
    import msprime

    rng = np.random.default_rng(seed)
    starts = np.sort(rng.choice(np.arange(width, length - 2 * width, 2 * width), n_hotspots, replace=False))  # apart
    edges, rates = [0], []
    for start in starts:
        edges += [int(start), int(start + width)]
        rates += [background, rng.uniform(*hotspot_cm) / 100 / width]
    edges.append(length)
    rates.append(background)
    return msprime.RateMap(position=edges, rate=rates)


def simulate(n_subjects: int, seed: int, *, length: int = 3_000_000, n_hotspots: int = 40, ne: int = 10_000,
             min_maf: float = 0.002):
    """A tree sequence of ``n_subjects`` diploids under :func:`hotspot_map`, biallelic sites of MAF >= ``min_maf``."""
    import msprime

    rate_map = hotspot_map(length, n_hotspots, seed)
    ts = msprime.sim_ancestry(samples=n_subjects, population_size=ne, recombination_rate=rate_map,
                              random_seed=seed)
    # nucleotide alleles (Beagle reads no 0/1 alleles); sites hit more than once are dropped below
    ts = msprime.sim_mutations(ts, rate=1.25e-8, model=msprime.JC69(), random_seed=seed + 1)
    freq = np.array([v.genotypes.mean() for v in ts.variants()])
    keep = (np.minimum(freq, 1 - freq) >= min_maf) & np.array([len(s.mutations) == 1 for s in ts.sites()])
    ts = ts.delete_sites(np.flatnonzero(~keep))
    return ts, rate_map


#: Where the simulated stretch starts on its chromosome: 1 Mb in, like the chr20 panels, inside the
#: LD blocks (chr20's first block starts at 60 kb; variants before it fall outside every block).
OFFSET = 1_000_000


def write(ts, rate_map, vcf: Path, gmap: Path, chrom: str = "20") -> None:
    """The VCF (bgzipped, indexed; tskit's writer) and the map (cM at every map edge), from ``OFFSET``."""
    vcf.parent.mkdir(parents=True, exist_ok=True)
    plain = vcf.with_suffix("")  # x.vcf.gz -> x.vcf
    with open(plain, "w") as out:
        ts.write_vcf(out, contig_id=chrom, position_transform=lambda x: np.asarray(x, dtype=np.int64) + OFFSET,
                     individual_names=[f"sim{i:04d}" for i in range(ts.num_individuals)])
    subprocess.run(["bcftools", "view", "-Oz", "-o", str(vcf), str(plain)], check=True)
    subprocess.run(["tabix", "-f", "-p", "vcf", str(vcf)], check=True)
    plain.unlink()
    edges = np.asarray(rate_map.position)
    cm = rate_map.get_cumulative_mass(edges) * 100
    gmap.write_text("pos\tchr\tcM\n" + "".join(f"{int(p) + OFFSET}\t{chrom}\t{c:.8f}\n" for p, c in zip(edges, cm)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n_subjects", type=int)
    parser.add_argument("seed", type=int)
    parser.add_argument("vcf", type=Path, help="the .vcf.gz to write (with its .tbi)")
    parser.add_argument("map", type=Path, help="the genetic map to write (pos chr cM)")
    parser.add_argument("--length", type=int, default=3_000_000, help="base pairs simulated (default 3 Mb)")
    parser.add_argument("--hotspots", type=int, default=40, help="hotspots in the stretch (default 40)")
    parser.add_argument("--min-maf", type=float, default=0.002, help="variants kept (default MAF >= 0.002)")
    args = parser.parse_args(argv)
    if args.n_subjects < 2 or args.hotspots < 1 or not 0 <= args.min_maf < 0.5 or args.length < 10 * 2_000 * args.hotspots:
        parser.error("need n_subjects >= 2, hotspots >= 1, 0 <= --min-maf < 0.5 and --length >= 20 kb per hotspot")
    ts, rate_map = simulate(args.n_subjects, args.seed, length=args.length, n_hotspots=args.hotspots,
                            min_maf=args.min_maf)
    write(ts, rate_map, args.vcf, args.map)
    print(f"wrote {args.vcf} ({ts.num_individuals} subjects x {ts.num_sites} variants) and {args.map} "
          f"({rate_map.total_mass * 100:.2f} cM over {args.length / 1e6:.1f} Mb)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
