"""Imputation benchmark: genoembed's block models beside mode, kNN, iterative SVD and Beagle 5.4.

Data: the 1000 Genomes chr20 panels of data/1kg_chr20 merged (``bcftools merge``,
503 samples x 24,990 variants). A fixed seed hides 5% of the calls of every
variant with MAF >= 1%; each peer fills them from the masked VCF, and only the
hidden calls are scored: concordance (imputed genotype == true genotype) and
dosage r² pooled per MAF bin (1-5%, 5-20%, 20-50%; MAF from the unmasked data), in
minor-allele dosage (see ``models._baselines``). Beagle writes no dosage for the calls it
fills in the target's own markers (GT only), so its r² is from its calls; ``r2 calls`` scores
every peer's called genotypes the same way (the table's last column, MAF 1-5%), to compare
like with like.

Each peer runs in its own subprocess (``--worker``), timed end to end from the
masked VCF to its imputed values (genoembed: ingest + training + imputation +
VCF writing; Beagle: its whole run), with the peak RSS of the worker and its
children (Beagle's JVM).

Peers:

* ``mode``: the most frequent observed genotype of the variant;
* ``knn``: scikit-learn's KNNImputer (10 neighbours, NaN-Euclidean) over the whole matrix;
* ``svd``: iterative (hard-impute) SVD of the whole matrix, rank 10 (fancyimpute's default);
* ``beagle``: Beagle 5.4 (Debian ``beagle``), ``beagle gt=masked.vcf.gz out=...``, no reference
  panel, ``nthreads`` = the cores given; no genetic map (1 cM = 1 Mb) unless ``--map`` gives one
  (written as the PLINK map Beagle reads, ``map=``); scored from GT (its dosage is the called
  genotype);
* ``genoembed``: ``genoembed impute`` (``cli_impute.impute_input``) with its defaults
  (engine ``ld``: each block's LD-neighbour rule, nothing trained, every variant written),
  scored from the written GT and DS; ``genoembed_hap`` phases each block and averages haplotype
  copying with the rule (engine ``hap``, 2 phasings averaged, nothing trained; ``genoembed_hap3``
  and ``genoembed_hap4``: 3 and 4 phasings, ``--hap-runs``; ``--map`` reaches them as
  ``genoembed impute --map``); ``genoembed_blend`` trains the block VAEs (preset
  ``--preset``, training timed) and blends them with the rule (engine ``blend``);
  ``genoembed_vae`` is the VAEs alone (engine ``vae``, the first version's imputer).

``--vcf`` runs the same comparison on another cohort, such as a simulated one
written by ``bench/cohort_vcf.py`` (cohorts nothing was tuned on).

Example::

    python bench/bench_imputation.py --repeats 3 --threads 2
    python bench/cohort_vcf.py OutOfAfrica_3G09 800 4242 /tmp/ooa.vcf.gz
    python bench/bench_imputation.py --vcf /tmp/ooa.vcf.gz --work /tmp/bench_ooa --peers beagle genoembed_hap
    python bench/bench_imputation.py --map data/1kg_chr20/chr20.b37.gmap.gz --peers beagle genoembed_hap
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KG = ROOT / "data" / "1kg_chr20"
PANELS = ("reference.vcf.gz", "unphased.vcf.gz")
PEERS = ("mode", "knn", "svd", "beagle", "genoembed", "genoembed_hap", "genoembed_hap3", "genoembed_hap4",
         "genoembed_blend", "genoembed_vae")
#: genoembed peer -> its ``--engine`` (see ``imputation.ENGINES``)
ENGINE_OF = {"genoembed": "ld", "genoembed_hap": "hap", "genoembed_hap3": "hap", "genoembed_hap4": "hap",
             "genoembed_blend": "blend", "genoembed_vae": "vae"}
#: genoembed peer -> ``--hap-runs`` (None: the default)
HAP_RUNS_OF = {"genoembed_hap3": 3, "genoembed_hap4": 4}
BINS = ((0.01, 0.05), (0.05, 0.2), (0.2, 0.5000001))
MASK_RATE = 0.05
MAF_MIN = 0.01


# ---------------------------------------------------------------- data


def _read_dosages(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """samples, site keys (``POS:REF:ALT``), int8 (variants x samples) dosages of a VCF.

    Sites are keyed by allele as well as position: the merged panels hold 10
    positions with two variants, and matching peers' rows by position alone
    gave both of them one row's calls (376 hidden calls scored against the
    wrong variant, which moved the pooled r² at MAF 1-5% by 0.05).
    """
    from cyvcf2 import VCF

    from genoembed_assets.genotypes.vcf import dosage_from_gt

    vcf = VCF(str(path))
    samples, pos, rows = list(vcf.samples), [], []
    for v in vcf:
        pos.append(f"{v.POS}:{v.REF}:{','.join(v.ALT)}")
        rows.append(dosage_from_gt(v.genotype.array()))
    vcf.close()
    return samples, np.array(pos), np.stack(rows)


def prepare(work: Path, seed: int, vcf: Path | None = None) -> dict:
    """The cohort (merged chr20 panels, or ``vcf``), its masked VCF and the truth of the hidden calls (cached in ``work``)."""
    work.mkdir(parents=True, exist_ok=True)
    masked = work / "masked.vcf.gz"
    truth_file = work / "truth.npz"
    source = "1kg_chr20" if vcf is None else str(Path(vcf).resolve())
    if masked.exists() and truth_file.exists():
        with np.load(truth_file) as cached:
            # (a cache keyed by position alone is rebuilt; caches from before --vcf were chr20's)
            if cached["pos"].dtype.kind == "U" and str(cached.get("source", "1kg_chr20")) == source:
                return {"masked": masked, "truth": truth_file}
    merged = work / "merged.vcf.gz"
    if vcf is None:
        for name in PANELS:
            shutil.copy(KG / name, work / name)
            subprocess.run(["bcftools", "index", "-f", str(work / name)], check=True)
        subprocess.run(["bcftools", "merge", "-Oz", "-o", str(merged), *[str(work / n) for n in PANELS]], check=True)
    else:
        subprocess.run(["bcftools", "view", "-Oz", "-o", str(merged), str(vcf)], check=True)
    samples, pos, dose = _read_dosages(merged)
    p = np.where(dose >= 0, dose, 0).sum(1) / (2 * np.maximum((dose >= 0).sum(1), 1))
    maf = np.minimum(p, 1 - p)
    rng = np.random.default_rng(seed)
    hide = (rng.random(dose.shape) < MASK_RATE) & (maf >= MAF_MIN)[:, None] & (dose >= 0)
    _write_masked(merged, masked, hide)
    np.savez_compressed(truth_file, pos=pos, dose=dose, hide=hide, maf=maf, samples=np.array(samples),
                        source=np.array(source))
    return {"masked": masked, "truth": truth_file}


def _write_masked(merged: Path, out: Path, hide: np.ndarray) -> None:
    """The merged VCF with the hidden calls set to ``./.`` (cyvcf2 writer, unphased GT)."""
    from cyvcf2 import VCF, Writer

    from genoembed_assets.genotypes.vcf import dosage_from_gt
    from genoembed_assets.genotypes.vcf_write import _gt_codes

    vcf = VCF(str(merged))
    writer = Writer(str(out), vcf, mode="wz")
    for i, v in enumerate(vcf):
        codes = _gt_codes(np.clip(dosage_from_gt(v.genotype.array()), 0, 2))
        codes[hide[i]] = 0  # htslib's missing allele
        v.set_format("GT", codes)
        writer.write_record(v)
    writer.close()
    vcf.close()
    subprocess.run(["tabix", "-f", "-p", "vcf", str(out)], check=True)


# ---------------------------------------------------------------- peers (run inside a worker)


def _matrix_peer(name: str, masked: Path, threads: int) -> np.ndarray:
    from genoembed_assets.models._baselines import knn_dosage, mode_dosage, pca_dosage

    _, _, dose = _read_dosages(masked)
    x = dose.T  # samples x variants
    if name == "mode":
        return mode_dosage(x).T
    if name == "knn":
        return knn_dosage(x).T
    return pca_dosage(x, rank=10).T


def _plink_map(genetic_map: Path, masked: Path, out: Path) -> Path:
    """The map as Beagle reads it (PLINK ``chr id cM bp``), chromosomes named as in the VCF."""
    from cyvcf2 import VCF

    from genoembed_assets.genotypes.genetic_map import read_genetic_map

    gmap = read_genetic_map(genetic_map)
    vcf = VCF(str(masked))
    contigs = list(vcf.seqnames)
    vcf.close()
    lines = []
    for contig in contigs:
        entry = gmap.points(contig)
        if entry is not None:
            lines += [f"{contig}\t.\t{cm:.6f}\t{bp:.0f}" for bp, cm in zip(*entry)]
    out.write_text("\n".join(lines) + "\n")
    return out


def _beagle(masked: Path, out_dir: Path, threads: int, genetic_map: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / "beagle"
    extra = [] if genetic_map is None else [f"map={_plink_map(genetic_map, masked, out_dir / 'plink.map')}"]
    subprocess.run(["beagle", f"gt={masked}", f"out={prefix}", f"nthreads={threads}", *extra], check=True,
                   stdout=subprocess.DEVNULL)
    _, pos, dose = _read_dosages(Path(f"{prefix}.vcf.gz"))
    return pos, dose.astype(np.float32)


def _genoembed(masked: Path, out_dir: Path, preset: str, engine: str,
               hap_runs: int | None = None, genetic_map: Path | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from cyvcf2 import VCF

    from genoembed_assets.cli_impute import impute_input
    from genoembed_assets.genotypes.vcf import dosage_from_gt

    out = out_dir / "genoembed.vcf.gz"
    impute_input(masked, out, work=out_dir / "work", preset=preset, device="cpu", engine=engine, hap_runs=hap_runs,
                 genetic_map=genetic_map if engine == "hap" else None, log=lambda m: None)
    vcf = VCF(str(out))
    pos, gt, ds = [], [], []
    for v in vcf:
        pos.append(f"{v.POS}:{v.REF}:{','.join(v.ALT)}")
        gt.append(dosage_from_gt(v.genotype.array()))
        ds.append(v.format("DS")[:, 0])
    vcf.close()
    return np.array(pos), np.stack(gt), np.stack(ds)


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    masked, out_dir = Path(args.masked), Path(args.out)
    if out_dir.exists():
        shutil.rmtree(out_dir)  # every repeat trains from scratch
    out_dir.mkdir(parents=True)
    start = time.perf_counter()
    if args.worker in ("mode", "knn", "svd"):
        ds = _matrix_peer(args.worker, masked, args.threads)
        pos, gt = None, np.rint(ds)
    elif args.worker == "beagle":
        pos, ds = _beagle(masked, out_dir, args.threads, args.map)
        gt = ds
    else:
        pos, gt, ds = _genoembed(masked, out_dir, args.preset, ENGINE_OF[args.worker],
                                  HAP_RUNS_OF.get(args.worker), args.map)
    seconds = time.perf_counter() - start
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    np.savez_compressed(out_dir / "calls.npz", gt=gt, ds=ds, pos=np.array([]) if pos is None else pos)
    timing = json.dumps({"seconds": seconds, "peak_rss_mb": rss / 1024})
    (out_dir / "timing.json").write_text(timing)
    print(timing)


# ---------------------------------------------------------------- scoring


def score(truth_file: Path, calls_file: Path) -> dict:
    t = np.load(truth_file)
    c = np.load(calls_file)
    gt, ds = c["gt"].astype(np.float64), c["ds"].astype(np.float64)
    dose, hide, maf = t["dose"], t["hide"], t["maf"]
    if c["pos"].size:  # a peer writing its own VCF may drop variants (genoembed's QC): align by site
        rows = {p: i for i, p in enumerate(c["pos"])}
        index = np.array([rows.get(p, -1) for p in t["pos"]])
        present = index >= 0
        full_gt = np.full(dose.shape, np.nan)
        full_ds = np.full(dose.shape, np.nan)
        full_gt[present], full_ds[present] = gt[index[present]], ds[index[present]]
        gt, ds = full_gt, full_ds
    covered = hide & np.isfinite(gt)
    out = {"n_hidden": int(hide.sum()), "coverage": float(covered.sum() / hide.sum())}
    truth = dose[hide].astype(np.float64)
    # a hidden call a peer did not return counts as wrong (dosage: the variant's mean)
    mean = np.where(dose >= 0, dose, 0).sum(1) / np.maximum((dose >= 0).sum(1), 1)
    g = np.where(np.isfinite(gt), gt, -9)[hide]
    d = np.where(np.isfinite(ds), ds, mean[:, None])[hide]
    m = np.broadcast_to(maf[:, None], dose.shape)[hide]
    # count minor alleles: pooled over variants whose ALT is sometimes major, ALT-dosage r² rewards the mode
    alt_major = (np.where(dose >= 0, dose, 0).sum(1) / (2 * np.maximum((dose >= 0).sum(1), 1)) > 0.5)
    flip = np.broadcast_to(alt_major[:, None], dose.shape)[hide]
    truth_minor, d_minor = np.where(flip, 2 - truth, truth), np.where(flip, 2 - d, d)
    called = np.where(g >= 0, g, d)  # a call a peer did not return: its dosage (the variant's mean)
    g_minor = np.where(flip, 2 - called, called)
    out["concordance"] = float((g == truth).mean())
    for low, high in BINS:
        inside = (m >= low) & (m < high)
        tag = f"{round(low * 100)}-{round(high * 100)}%"
        out[f"concordance {tag}"] = float((g[inside] == truth[inside]).mean())
        out[f"r2 {tag}"] = float(np.corrcoef(truth_minor[inside], d_minor[inside])[0, 1] ** 2)
        out[f"r2 calls {tag}"] = float(np.corrcoef(truth_minor[inside], g_minor[inside])[0, 1] ** 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", nargs="+", default=list(PEERS), choices=PEERS)
    parser.add_argument("--repeats", type=int, default=3, help="runs per peer; the median time is reported")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--preset", default="impute", help="genoembed's Phase 1 preset")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--vcf", type=Path, default=None,
                        help="benchmark on this cohort (GT) instead of the chr20 panels, e.g. from bench/cohort_vcf.py; "
                             "give it its own --work")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "genoembed_bench_impute")
    parser.add_argument("--map", type=Path, default=None,
                        help="genetic map given to Beagle (map=) and to genoembed's hap peers (--map); "
                             "default none: both read 1 cM per Mb")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--rescore", action="store_true", help="score the calls the last run left in --work, run nothing")
    parser.add_argument("--worker", choices=PEERS, help=argparse.SUPPRESS)
    parser.add_argument("--masked", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    data = prepare(args.work, args.seed, args.vcf)
    rows = []
    for peer in args.peers:
        runs = []
        for r in range(args.repeats):
            out = args.work / f"{peer}_{r}"
            if args.rescore:
                if (out / "timing.json").exists():
                    runs.append({**json.loads((out / "timing.json").read_text()), **score(data["truth"], out / "calls.npz")})
                continue
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
            done = subprocess.run([sys.executable, __file__, "--worker", peer, "--masked", str(data["masked"]),
                                   "--out", str(out), "--threads", str(args.threads), "--preset", args.preset,
                                   *(["--map", str(args.map.resolve())] if args.map else [])],
                                  capture_output=True, text=True, env=env)
            if done.returncode:
                print(done.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{peer} failed")
            runs.append({**json.loads(done.stdout.strip().splitlines()[-1]), **score(data["truth"], out / "calls.npz")})
            print(f"{peer} run {r + 1}: {runs[-1]['seconds']:.1f} s, concordance {runs[-1]['concordance']:.4f}", flush=True)
        if not runs:
            continue
        median = sorted(runs, key=lambda x: x["seconds"])[len(runs) // 2]
        rows.append({"peer": peer, "runs": len(runs), "seconds_all": [round(x["seconds"], 1) for x in runs], **median})
    keys = ["concordance", *[f"r2 {round(lo * 100)}-{round(hi * 100)}%" for lo, hi in BINS]]
    print("\n| peer | wall time (median) | peak RSS | concordance | r² 1-5% | r² 5-20% | r² 20-50% | coverage "
          "| r² 1-5% from calls |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['peer']} | {row['seconds']:.1f} s ({row['seconds_all']}) | {row['peak_rss_mb']:.0f} MB | "
              + " | ".join(f"{row[k]:.4f}" if k == "concordance" else f"{row[k]:.3f}" for k in keys)
              + f" | {row['coverage']:.4f} | {row['r2 calls 1-5%']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
