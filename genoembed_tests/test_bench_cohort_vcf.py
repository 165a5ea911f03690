"""bench/cohort_vcf.py and bench_imputation --vcf: the Beagle comparison run on a simulated cohort."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    from genoembed_assets.genotypes.ingest import ingest_cohort
    from genoembed_assets.genotypes.simulate import simulate_cohort
    from genoembed_assets.genotypes.simulate.config import SimulationConfig

    root = tmp_path_factory.mktemp("sim")
    simulate_cohort(root / "src", config=SimulationConfig(n_subjects=60, n_background_blocks=0, seed=7))
    ingest_cohort(root / "src", root / "input", log=lambda message: None)
    return root / "input"


def _bench(name):
    sys.path.insert(0, str(BENCH))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(BENCH))


def test_cohort_vcf_holds_every_block_call_for_call(ingested, tmp_path):
    from cyvcf2 import VCF

    from genoembed_assets.genotypes import layout
    from genoembed_assets.genotypes.vcf import dosage_from_gt

    out = _bench("cohort_vcf").write_cohort_vcf(ingested, tmp_path / "cohort.vcf.gz")
    assert out.exists() and Path(f"{out}.tbi").exists()
    subjects = [str(s) for s in layout.read_subjects(ingested)]
    vcf = VCF(str(out))
    assert vcf.samples == subjects
    written = {(v.CHROM, v.POS, v.REF, v.ALT[0]): dosage_from_gt(v.genotype.array()) for v in vcf}
    manifest = layout.read_manifest(ingested)
    assert len(written) == int(manifest["n_snps"].sum())
    listed = subprocess.run(["bcftools", "view", "-H", str(out)], capture_output=True, text=True, check=True)
    assert len(listed.stdout.splitlines()) == len(written)
    from genoembed_assets.genotypes.vcf_write import block_sites
    from genoembed_assets.imputation import _variant_tables

    tables = _variant_tables(ingested)
    for row in manifest.to_dict(orient="records"):  # every block's calls, found by site
        block = layout.load_block(ingested, row, len(subjects))
        sites = block_sites(tables.get(row["block_id"]), row, block.shape[1])
        got = np.stack([written[(str(s.chrom), int(s.pos), s.ref, s.alt)] for s in sites.itertuples()], axis=1)
        np.testing.assert_array_equal(got, np.where(block < 0, -1, block), err_msg=row["block_id"])


def test_bench_masks_a_given_vcf_and_rebuilds_its_cache_for_another(ingested, tmp_path):
    bench = _bench("bench_imputation")
    vcf = _bench("cohort_vcf").write_cohort_vcf(ingested, tmp_path / "a.vcf.gz")
    data = bench.prepare(tmp_path / "work", 11, vcf)
    truth = dict(np.load(data["truth"]))
    assert str(truth["source"]) == str(vcf.resolve())
    hidden = truth["hide"]
    assert 0.03 < hidden[truth["maf"] >= 0.01].mean() < 0.07  # 5% of the calls at MAF >= 1%
    assert not hidden[truth["maf"] < 0.01].any() and (truth["dose"][hidden] >= 0).all()

    fewer = tmp_path / "b.vcf.gz"
    subprocess.run(["bcftools", "view", "-Oz", "-o", str(fewer), str(vcf), "-i", f"POS>{truth['pos'][5].split(':')[0]}"],
                   check=True)
    again = dict(np.load(bench.prepare(tmp_path / "work", 11, fewer)["truth"]))
    assert str(again["source"]) == str(fewer.resolve()) and len(again["pos"]) < len(truth["pos"])


def test_min_maf_keeps_rare_variants_and_a_bad_value_is_a_usage_error(tmp_path):
    from cyvcf2 import VCF

    from genoembed_assets.genotypes.vcf import dosage_from_gt

    script = str(BENCH / "cohort_vcf.py")
    out = tmp_path / "rare.vcf.gz"
    done = subprocess.run([sys.executable, script, "OutOfAfrica_3G09", "60", "3", str(out), "--min-maf", "0.002"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "variants of MAF >= 0.002" in done.stdout
    dose = np.stack([dosage_from_gt(v.genotype.array()) for v in VCF(str(out))], axis=1).astype(float)
    seen = dose >= 0
    freq = np.where(seen, dose, 0).sum(0) / (2 * seen.sum(0))
    assert (np.minimum(freq, 1 - freq) < 0.01).mean() > 0.2  # the simulator's default keeps none below 0.02
    bad = subprocess.run([sys.executable, script, "OutOfAfrica_3G09", "60", "3", str(tmp_path / "x.vcf.gz"),
                          "--min-maf", "0.7"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--min-maf must be in (0, 0.5), got 0.7" in bad.stderr.splitlines()[-1]
    assert not (tmp_path / "x.vcf.gz").exists()


def test_simulated_variant_rows_follow_the_ingest_qc(ingested, tmp_path):
    # A simulated cohort names its variants only in the simulator's table, which lists every
    # simulated variant; after a QC that drops some, each block keeps the rows of those written.
    import pandas as pd

    from genoembed_assets.genotypes import layout
    from genoembed_assets.genotypes.ingest import ingest_cohort
    from genoembed_assets.imputation import SIMULATED_VARIANTS, _variant_tables

    strict = tmp_path / "strict"
    ingest_cohort(ingested.parent / "src", strict, maf_min=0.2, log=lambda message: None)
    manifest = layout.read_manifest(strict)
    simulated = pd.read_csv(ingested.parent / "src" / SIMULATED_VARIANTS, sep="\t", dtype={"chrom": str})
    assert int(manifest["n_snps"].sum()) < len(simulated)  # the QC dropped some
    tables = _variant_tables(strict)
    subjects = len(layout.read_subjects(strict))
    source_rows = {r["block_id"]: r for r in layout.read_manifest(ingested.parent / "src").to_dict(orient="records")}
    for row in manifest.to_dict(orient="records"):
        rows = tables[row["block_id"]]
        block = layout.load_block(strict, row, subjects)
        assert len(rows) == int(row["n_snps"]) == block.shape[1]
        p = np.where(block >= 0, block, 0).sum(0) / (2 * (block >= 0).sum(0))
        assert (np.minimum(p, 1 - p) >= 0.2).all()
        every = simulated[simulated["block_id"] == row["block_id"]]["variant_id"].tolist()
        assert rows["id"].tolist() == [v for v in every if v in set(rows["id"])] and len(set(rows["id"])) == len(rows)
        # each name sits on its own variant's calls: the simulated block's column of that name
        source = layout.load_block(ingested.parent / "src", source_rows[row["block_id"]], subjects)
        named = [every.index(v) for v in rows["id"]]
        np.testing.assert_array_equal(np.where(source[:, named] < 0, -1, source[:, named]), block,
                                      err_msg=row["block_id"])


def test_score_rates_calls_like_with_like_and_counts_what_a_peer_dropped(ingested, tmp_path):
    # a peer whose calls are right but whose dosage is noisy: r² from calls 1, from dosage lower;
    # Beagle's rows are scored from calls, so this column compares the two like with like
    bench = _bench("bench_imputation")
    vcf = _bench("cohort_vcf").write_cohort_vcf(ingested, tmp_path / "a.vcf.gz")
    data = bench.prepare(tmp_path / "work", 11, vcf)
    truth = np.load(data["truth"])
    dose = truth["dose"].astype(np.float32)
    noisy = np.clip(dose + np.random.default_rng(0).normal(0, 0.4, dose.shape), 0, 2).astype(np.float32)
    np.savez_compressed(tmp_path / "calls.npz", gt=dose, ds=noisy, pos=truth["pos"])
    got = bench.score(data["truth"], tmp_path / "calls.npz")
    assert got["concordance"] == 1.0 and got["coverage"] == 1.0
    for tag in ("1-5%", "5-20%", "20-50%"):
        assert got[f"r2 calls {tag}"] == pytest.approx(1.0) and got[f"r2 {tag}"] < 0.95, got
    # the first variant not returned: its hidden calls count as wrong
    np.savez_compressed(tmp_path / "fewer.npz", gt=dose[1:], ds=dose[1:], pos=truth["pos"][1:])
    fewer = bench.score(data["truth"], tmp_path / "fewer.npz")
    missed = truth["hide"][0].sum() / truth["hide"].sum()
    assert fewer["coverage"] == pytest.approx(1 - missed) and fewer["concordance"] <= 1 - missed + 1e-12


def test_beagle_gets_the_genetic_map_as_a_plink_map_named_like_the_vcf(ingested, tmp_path):
    from cyvcf2 import VCF

    bench = _bench("bench_imputation")
    vcf = _bench("cohort_vcf").write_cohort_vcf(ingested, tmp_path / "a.vcf.gz")
    reader = VCF(str(vcf))
    contig = next(iter(reader)).CHROM
    reader.close()
    gmap = tmp_path / "g.map"  # the map says 'chr17' where the VCF says '17' (or the reverse)
    other = contig[3:] if contig.startswith("chr") else f"chr{contig}"
    gmap.write_text(f"pos\tchr\tcM\n100\t{other}\t0.5\n5000\t{other}\t1.5\n7\tchrUn\t0\n")
    written = bench._plink_map(gmap, vcf, tmp_path / "plink.map").read_text().splitlines()
    assert [line.split("\t") for line in written] == [[contig, ".", "0.500000", "100"], [contig, ".", "1.500000", "5000"]]


def test_hotspot_cohort_writes_a_vcf_and_the_map_it_was_drawn_under(tmp_path, capsys):
    from cyvcf2 import VCF

    from genoembed_assets.genotypes.genetic_map import read_genetic_map

    hot = _bench("hotspot_vcf")
    vcf, gmap = tmp_path / "hot.vcf.gz", tmp_path / "hot.gmap"
    assert hot.main(["40", "3", str(vcf), str(gmap), "--length", "400000", "--hotspots", "5"]) == 0
    said = capsys.readouterr().out
    reader = VCF(str(vcf))
    records = [(v.POS, v.REF, v.ALT) for v in reader]
    assert len(reader.samples) == 40 and len(records) > 100 and f"40 subjects x {len(records)} variants" in said
    assert all(ref in "ACGT" and len(alt) == 1 and alt[0] in "ACGT" for _, ref, alt in records)  # biallelic SNVs
    cm = read_genetic_map(gmap).cm("chr20", [p for p, _, _ in records])
    assert (np.diff(cm) >= 0).all()
    steps = np.sort(np.diff(cm))[::-1]  # the top 5% of the gaps between variants hold the 5 hotspots
    assert steps[: len(steps) // 20].sum() > 0.9 * (cm[-1] - cm[0]), (steps[:10], cm[-1] - cm[0])
    with pytest.raises(SystemExit):
        hot.main(["40", "3", str(vcf), str(gmap), "--hotspots", "0"])
    assert "hotspots >= 1" in capsys.readouterr().err
