"""Imputation: a VCF with missing calls in, every call filled by the block models, VCF out.

One small haplotype-structured cohort (more founder haplotypes than the latent
size, so a rank-8 reconstruction cannot hold every block) is imputed once per
module through ``genoembed impute``'s function; the tests read the written VCF.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from cyvcf2 import VCF

from genoembed_assets.cli import main
from genoembed_assets.cli_impute import impute_input
from genoembed_assets.genotypes.vcf import dosage_from_gt
from genoembed_assets.models import synthetic_genotypes
from genoembed_assets.models._baselines import BASELINES, minor_allele_frequency, score_calls
from genoembed_assets.models._impute import dosage_r2

from .fixtures_genotypes import CHR1_BLOCKS, Cohort, write_vcf

N_SUBJECTS = 400
COUNTS = {"chr1_b0000": 40, "chr1_b0001": 60, "chr1_b0002": 30}
HIDDEN = 0.04


def _cohort(seed: int = 3) -> tuple[Cohort, np.ndarray]:
    """The cohort with ``HIDDEN`` of its calls set missing, and the full truth."""
    rng = np.random.default_rng(seed)
    blocks, pos, names = [], [], []
    for i, (block, n) in enumerate(COUNTS.items()):
        blocks.append(synthetic_genotypes(N_SUBJECTS, n, n_haplotype_groups=20, seed=seed + i, missing_rate=0.0,
                                          noise=0.01))
        start, end = CHR1_BLOCKS[block]
        pos.extend(np.sort(rng.choice(np.arange(start + 1, end), size=n, replace=False)))
        names.extend([block] * n)
    truth = np.concatenate(blocks, axis=1)
    shown = truth.copy()
    shown[rng.random(truth.shape) < HIDDEN] = -1
    m = truth.shape[1]
    cohort = Cohort(genotypes=shown, subject_ids=[f"S{i:03d}" for i in range(N_SUBJECTS)], chrom=["1"] * m,
                    pos=np.asarray(pos, dtype=np.int64), block=names, ids=[f"rs{i + 1}" for i in range(m)],
                    ref=["A"] * m, alt=["G"] * m, population=np.zeros(N_SUBJECTS, dtype=int))
    return cohort, truth


@pytest.fixture(scope="module")
def imputed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("impute")
    cohort, truth = _cohort()
    vcf_in = write_vcf(folder / "in", cohort)
    out = folder / "out" / "cohort.imputed.vcf.gz"
    summary = impute_input(vcf_in, out, preset="impute", device="cpu", engine="blend", log=lambda m: None)
    # QC (MAF >= 1%) may drop a variant: compare on the variants written
    kept = np.isin(cohort.pos, _read(out)[1])
    assert summary["n_variants_dropped_by_qc"] == int((~kept).sum()) <= 3
    cohort.genotypes, cohort.pos = cohort.genotypes[:, kept], cohort.pos[kept]
    return cohort, truth[:, kept], out, summary


def _read(path):
    """GT dosages, DS, GP, IMP (subjects x variants) and INFO of every record."""
    vcf = VCF(str(path))
    gt, ds, gp, imp, info, pos = [], [], [], [], [], []
    for v in vcf:
        gt.append(dosage_from_gt(v.genotype.array()))
        ds.append(v.format("DS")[:, 0])
        gp.append(v.format("GP"))
        imp.append(v.format("IMP")[:, 0])
        info.append({"DR2": v.INFO.get("DR2"), "IMP": v.INFO.get("IMP")})
        pos.append(v.POS)
    samples = vcf.samples
    vcf.close()
    return samples, np.array(pos), np.stack(gt, 1), np.stack(ds, 1), np.stack(gp, 1), np.stack(imp, 1), info


def test_every_call_filled_and_observed_calls_untouched(imputed):
    cohort, truth, out, summary = imputed
    samples, pos, gt, ds, gp, imp, info = _read(out)
    assert samples == cohort.subject_ids
    np.testing.assert_array_equal(pos, cohort.pos)
    assert (gt >= 0).all()
    observed = cohort.genotypes >= 0
    np.testing.assert_array_equal(gt[observed], cohort.genotypes[observed])
    np.testing.assert_array_equal(imp.astype(bool), ~observed)  # the flag is exactly on the missing calls
    assert summary["n_imputed"] == int((~observed).sum())
    assert [i["IMP"] for i in info] == list((~observed).sum(axis=0))


def test_gt_is_argmax_gp_and_ds_is_expected_dosage(imputed):
    _, _, out, _ = imputed
    _, _, gt, ds, gp, _, _ = _read(out)
    np.testing.assert_allclose(gp.sum(-1), 1.0, atol=2e-3)
    np.testing.assert_array_equal(gt, gp.argmax(-1))
    np.testing.assert_allclose(ds, gp[..., 1] + 2 * gp[..., 2], atol=1.5e-3)


def test_vcf_parses_with_bcftools_and_is_indexed(imputed):
    cohort, _, out, _ = imputed
    assert out.with_name(out.name + ".tbi").exists()
    if shutil.which("bcftools") is None:
        pytest.skip("bcftools not installed (.ci/system-deps.sh installs it)")
    region = subprocess.run(["bcftools", "view", "-H", "-r", "1:1892607-3582736", str(out)],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    inside = (cohort.pos >= 1892607) & (cohort.pos <= 3582736)
    assert len(region) == int(inside.sum()) > 0  # the index answers a region query
    query = subprocess.run(["bcftools", "query", "-f", "%POS\t%INFO/IMP[\t%GT:%IMP]\n", str(out)],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    first = query[0].split("\t")
    assert int(first[0]) == cohort.pos[0] and len(first) == 2 + len(cohort.subject_ids)
    codes = {"0/0": 0, "0/1": 1, "1/1": 2}
    calls = np.array([[codes[c.split(":")[0]] for c in line.split("\t")[2:]] for line in query]).T
    observed = cohort.genotypes >= 0
    np.testing.assert_array_equal(calls[observed], cohort.genotypes[observed])


def test_imputed_calls_beat_pca_and_knn(imputed):
    cohort, truth, out, _ = imputed
    _, _, gt, ds, _, _, info = _read(out)
    hidden = cohort.genotypes < 0
    maf = np.broadcast_to(minor_allele_frequency(cohort.genotypes), truth.shape)
    model = score_calls(truth[hidden], ds[hidden], maf[hidden], calls=gt[hidden])
    baselines = {}
    for start, end in (CHR1_BLOCKS[b] for b in COUNTS):  # baselines per block, as the block models see them
        block = (cohort.pos >= start) & (cohort.pos < end)
        for name, fill in BASELINES.items():
            baselines.setdefault(name, np.zeros(truth.shape, dtype=np.float32))[:, block] = fill(
                cohort.genotypes[:, block], rank=8)
    scores = {name: score_calls(truth[hidden], d[hidden], maf[hidden])["concordance"] for name, d in baselines.items()}
    assert model["concordance"] > max(scores.values()), (model["concordance"], scores)
    assert model["concordance"] > 0.9
    dr2 = np.array([i["DR2"] for i in info])
    assert np.isfinite(dr2).all() and 0.5 < dr2.mean() <= 1.0


def test_dr2_estimate_on_certain_and_uninformative_calls():
    imputed = np.ones((4, 2), dtype=bool)
    certain = np.zeros((4, 2, 3), dtype=np.float32)
    certain[[0, 1], :, 0] = 1
    certain[[2, 3], :, 2] = 1  # confident and varied: the dosage is the genotype
    flat = np.full((4, 2, 3), 1 / 3, dtype=np.float32)  # every call the same guess: nothing explained
    np.testing.assert_allclose(dosage_r2(certain, imputed), 1.0)
    np.testing.assert_allclose(dosage_r2(flat, imputed), 0.0)
    assert np.isnan(dosage_r2(flat, np.zeros((4, 2), dtype=bool))).all()


def test_cli_reuses_trained_block_models(imputed, tmp_path, capsys):
    _, _, out, summary = imputed
    vcf_in = next((out.parent.parent / "in").glob("*.vcf"))
    again = tmp_path / "again.vcf.gz"
    code = main(["impute", str(vcf_in), str(again), "--work", str(summary["work"]), "--engine", "blend"])
    assert code == 0
    said = capsys.readouterr().out
    assert "0 block model(s) trained, 3 reused" in said and str(again) in said
    assert again.exists() and (tmp_path / "again.vcf.gz.tbi").exists()


def test_ld_engine_trains_nothing_and_writes_every_variant(imputed, tmp_path):
    cohort, truth, out, _ = imputed
    vcf_in = next((out.parent.parent / "in").glob("*.vcf"))
    again = tmp_path / "ld.vcf.gz"
    summary = impute_input(vcf_in, again, device="cpu", log=lambda m: None)  # the command's default engine
    assert summary["trained"] == 0 and summary["reused"] == 0 and summary["n_variants_dropped_by_qc"] == 0
    assert not (summary["work"] / "phase1").exists()
    samples, pos, gt, ds, gp, imp, _ = _read(again)
    kept = np.isin(pos, cohort.pos)  # every input variant, the blend fixture's QC-kept ones among them
    assert len(pos) == sum(COUNTS.values()) and kept.sum() == len(cohort.pos)
    gt, imp = gt[:, kept], imp[:, kept]
    observed = cohort.genotypes >= 0
    np.testing.assert_array_equal(gt[observed], cohort.genotypes[observed])
    np.testing.assert_array_equal(imp.astype(bool), ~observed)
    np.testing.assert_array_equal(gt, gp[:, kept].argmax(-1))
    hidden = ~observed
    assert (gt[hidden] == truth[hidden]).mean() > 0.9


def test_hap_engine_phases_trains_nothing_and_beats_the_ld_rule(imputed, tmp_path, capsys):
    cohort, truth, out, _ = imputed
    vcf_in = next((out.parent.parent / "in").glob("*.vcf"))
    outs = {}
    for engine in ("ld", "hap"):
        outs[engine] = tmp_path / f"{engine}.vcf.gz"
        assert main(["impute", str(vcf_in), str(outs[engine]), "--engine", engine]) == 0
    said = capsys.readouterr().out
    assert "no block models needed (engine hap)" in said, said
    _, pos, gt_ld, *_ = _read(outs["ld"])
    samples, pos_hap, gt, ds, gp, imp, info = _read(outs["hap"])
    np.testing.assert_array_equal(pos, pos_hap)
    kept = np.isin(pos, cohort.pos)
    assert len(pos) == sum(COUNTS.values())  # every input variant, as with ld
    gt, gp, imp, gt_ld = gt[:, kept], gp[:, kept], imp[:, kept], gt_ld[:, kept]
    observed = cohort.genotypes >= 0
    np.testing.assert_array_equal(gt[observed], cohort.genotypes[observed])
    np.testing.assert_array_equal(imp.astype(bool), ~observed)
    np.testing.assert_array_equal(gt, gp.argmax(-1))
    hidden = ~observed
    hap, ld = (gt[hidden] == truth[hidden]).mean(), (gt_ld[hidden] == truth[hidden]).mean()
    assert hap > ld, (hap, ld)
    assert all(np.isfinite(i["DR2"]) for i in info)


def test_cli_default_engine_says_nothing_was_trained(imputed, tmp_path, capsys):
    _, _, out, _ = imputed
    vcf_in = next((out.parent.parent / "in").glob("*.vcf"))
    code = main(["impute", str(vcf_in), str(tmp_path / "cli.vcf.gz")])
    assert code == 0
    said = capsys.readouterr().out
    n_missing = int((_cohort()[0].genotypes < 0).sum())  # every input variant, so every missing call
    assert f"{n_missing} calls imputed; no block models needed (engine ld)" in said, said


def test_cli_names_a_missing_input(tmp_path, capsys):
    code = main(["impute", str(tmp_path / "absent.vcf.gz"), str(tmp_path / "out.vcf.gz")])
    assert code == 2
    assert "absent.vcf.gz" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--hap-runs", "2"], "--hap-runs applies to --engine hap only (got --engine ld)"),
    (["--engine", "hap", "--hap-runs", "0"], "--hap-runs must be at least 1, got 0"),
], ids=["without_hap", "zero"])
def test_cli_names_a_wrong_hap_runs_before_reading_anything(tmp_path, capsys, extra, message):
    out = tmp_path / "out.vcf.gz"
    code = main(["impute", str(tmp_path / "absent.vcf.gz"), str(out), *extra])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "fix:" in err, err
    assert list(tmp_path.iterdir()) == []  # no work folder, no output


def test_demo_pipeline_writes_the_imputed_vcf(demo_pipeline):
    out = demo_pipeline.results / "imputed" / "demo.imputed.vcf.gz"
    assert out.exists() and (out.parent / "demo.imputed.vcf.gz.tbi").exists()
    vcf = VCF(str(out))
    first = next(iter(vcf))
    assert first.FORMAT == ["GT", "DS", "GP", "IMP"] and first.POS > 0
    vcf.close()
    qc = json.loads((demo_pipeline.results / "input" / "qc.json").read_text())
    assert len(vcf.samples) == qc["n_subjects"]


def test_block_metrics_score_the_baselines_on_the_held_out_calls(imputed):
    *_, summary = imputed
    for path in sorted((summary["work"] / "phase1").glob("*/metrics.json")):
        metrics = json.loads(path.read_text())
        for name in ("mode", "pca", "knn"):
            assert 0.0 <= metrics[f"{name}_baseline_accuracy"] <= 1.0, (path, name)
        assert metrics["mode_baseline_accuracy"] < metrics["pca_baseline_accuracy"]
        assert 0.0 < metrics["heldout_r2"] <= 1.0
        assert metrics["n_maf_5_20"] + metrics["n_maf_20_50"] + metrics["n_maf_1_5"] + metrics["n_maf_0_1"] == metrics["n_heldout"]


def test_vcf_and_index_are_readable_by_others(imputed):
    *_, out, _ = imputed
    for path in (out, out.with_name(out.name + ".tbi")):
        assert path.stat().st_mode & 0o044 == 0o044 & ~_umask(), path  # not mkstemp's 0600
    assert not list(out.parent.glob(".*"))  # no temporary file left behind


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_npy_layout_without_sites_gets_spread_positions_and_symbolic_alleles(tmp_path):
    from genoembed_assets.genotypes.vcf_write import block_sites, write_imputed_vcf
    from genoembed_assets.models._impute import ImputedBlock

    block = {"block_id": "chr1_b0000", "chrom": "1", "start": 1000, "end": 2000}
    sites = block_sites(None, block, 4)
    assert list(sites["pos"]) == sorted(set(sites["pos"])) and 1000 < sites["pos"].min() and sites["pos"].max() < 2000
    assert set(sites["ref"]) == {"N"} and set(sites["alt"]) == {"<ALT>"}
    gp = np.zeros((2, 4, 3), dtype=np.float32)
    gp[..., 1] = 1.0
    calls = ImputedBlock(gp=gp, gt=np.ones((2, 4), np.int8), ds=np.ones((2, 4), np.float32),
                         imputed=np.zeros((2, 4), bool), dr2=np.full(4, np.nan, np.float32))
    out = write_imputed_vcf(tmp_path / "x.vcf.gz", ["a", "b"], [(sites, calls)])
    vcf = VCF(str(out))
    records = list(vcf)
    assert [r.POS for r in records] == list(sites["pos"]) and records[0].ALT == ["<ALT>"]
    assert records[0].INFO.get("DR2") is None and records[0].INFO.get("IMP") == 0  # nothing imputed: no DR2
    if shutil.which("bcftools"):
        subprocess.run(["bcftools", "view", "-H", str(out)], check=True, capture_output=True)


def test_ld_engine_imputes_a_variant_missing_most_calls_and_names_what_it_dropped(tmp_path, capsys):
    """A variant missing 60% of its calls is what a user wants imputed: it comes back, filled; a
    multiallelic record cannot be, and the command says so instead of dropping it silently."""
    cohort, truth = _cohort(seed=9)
    sparse = 35  # a common variant of block 0
    rng = np.random.default_rng(1)
    cohort.genotypes[rng.random(N_SUBJECTS) < 0.6, sparse] = -1
    vcf_in = write_vcf(tmp_path / "in", cohort)
    lines = vcf_in.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    record = lines[first].split("\t")
    record[1], record[2], record[4] = str(int(record[1]) + 1), "multi1", "G,T"
    lines.insert(first + 1, "\t".join(record))
    vcf_in.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.vcf.gz"
    assert main(["impute", str(vcf_in), str(out)]) == 0
    said = capsys.readouterr().out
    assert "not in the output: 1 multiallelic" in said, said
    _, pos, gt, _, _, imp, _ = _read(out)
    assert len(pos) == sum(COUNTS.values())  # every biallelic variant, the sparse one included
    column = int(np.flatnonzero(pos == cohort.pos[sparse])[0])
    hidden = cohort.genotypes[:, sparse] < 0
    assert hidden.mean() > 0.5 and (imp[:, column].astype(bool) == hidden).all()
    assert (gt[hidden, column] == truth[hidden, sparse]).mean() > 0.85
