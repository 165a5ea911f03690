"""Genetic maps: the layouts tools ship, clear errors, and `hap` switching where recombination is."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from genoembed_assets.cli import main
from genoembed_assets.genotypes.errors import CohortInputError
from genoembed_assets.genotypes.genetic_map import read_genetic_map
from genoembed_assets.imputation import impute_cohort
from genoembed_assets.models._haplotype_copying import HaplotypeConfig, copying_gp

from .fixtures_genotypes import Cohort, write_vcf

ROOT = Path(__file__).resolve().parents[1]
BP = np.array([1000, 5000, 9000, 20000])
CM = np.array([0.0, 0.5, 0.5, 2.5])


def _write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as out:
            out.write(text)
    else:
        path.write_text(text)
    return path


LAYOUTS = {
    "shapeit.gmap.gz": "pos\tchr\tcM\n" + "".join(f"{b}\t20\t{c}\n" for b, c in zip(BP, CM)),
    "eagle.txt": "chr position COMBINED_rate(cM/Mb) Genetic_Map(cM)\n"
                 + "".join(f"chr20 {b} 1.0 {c}\n" for b, c in zip(BP, CM)),
    "plink.map": "".join(f"20\t.\t{c}\t{b}\n" for b, c in zip(BP, CM)),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_every_layout_gives_the_same_centimorgans(tmp_path, name):
    gmap = read_genetic_map(_write(tmp_path / name, LAYOUTS[name]))
    # interpolated inside, flat where the map is flat, extrapolated at the mean rate (2.5 cM / 19 kb) outside
    got = gmap.cm("chr20", [1000, 3000, 7000, 14500, 20000, 0, 39000])
    rate = 2.5 / 19000
    np.testing.assert_allclose(got, [0, 0.25, 0.5, 1.5, 2.5, -1000 * rate, 2.5 + 19000 * rate])
    np.testing.assert_allclose(gmap.cm("20", BP), CM)  # 'chr20' and '20' are one chromosome
    assert gmap.cm("21", BP) is None


def test_the_shipped_chr20_map_covers_the_panels():
    gmap = read_genetic_map(ROOT / "data" / "1kg_chr20" / "chr20.b37.gmap.gz")
    cm = gmap.cm("20", [1_000_072, 3_998_224])
    np.testing.assert_allclose(cm, [4.700848, 11.350882], atol=1e-6)


@pytest.mark.parametrize("text, message", [
    ("pos\tchr\tcM\n100\t20\t0.1\n200\t20\tabc\n", "line 3: expected numbers for position and cM, got '200' and 'abc'"),
    ("pos\tchr\tcM\n100\t20\t0.5\n200\t20\t0.1\n", "line 3: centimorgans decrease along chromosome 20"),
    ("a b c\n1 2 3\n", "line 1: expected a header naming chromosome, position and cM columns"),
], ids=["not_a_number", "decreasing", "unknown_layout"])
def test_bad_maps_are_named_with_the_line(tmp_path, text, message):
    path = _write(tmp_path / "bad.map", text)
    with pytest.raises(CohortInputError) as err:
        read_genetic_map(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value), str(err.value)


@pytest.mark.parametrize("text, message", [
    ("", "cannot be read as a whitespace-separated genetic map (No columns to parse from file)"),
    ("pos chr cM\n1 20 0.1\n3 20 0.3 9 9\n", "Expected 3 fields in line 3, saw 5"),
], ids=["empty", "ragged"])
def test_unreadable_maps_are_one_line_errors(tmp_path, text, message):
    path = _write(tmp_path / "bad.map", text)
    with pytest.raises(CohortInputError) as err:
        read_genetic_map(path)
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)
    with pytest.raises(CohortInputError, match="no such genetic map file"):
        read_genetic_map(tmp_path / "absent.map")


def _hotspot_cohort(n_subjects=300, n_markers=600, n_founders=24, n_hot=12, seed=0):
    """Haplotypes that change founder only at ``n_hot`` hotspots, markers 1 kb apart; the map puts 2 cM at each."""
    rng = np.random.default_rng(seed)
    founders = (rng.random((n_founders, n_markers)) < rng.beta(0.4, 0.4, n_markers)).astype(np.int8)
    hot = np.sort(rng.choice(np.arange(20, n_markers - 20), n_hot, replace=False))
    haps = np.empty((2 * n_subjects, n_markers), dtype=np.int8)
    for h in range(2 * n_subjects):
        cuts = np.concatenate([[0], hot[rng.random(n_hot) < 0.7], [n_markers]])
        for a, b in zip(cuts[:-1], cuts[1:]):
            haps[h, a:b] = founders[rng.integers(n_founders), a:b]
    haps ^= (rng.random(haps.shape) < 0.005).astype(np.int8)
    truth = haps[0::2] + haps[1::2]
    shown = np.where(rng.random(truth.shape) < 0.05, -1, truth).astype(np.int8)
    step = np.full(n_markers, 1e-4)
    step[hot] = 2.0
    return truth, shown, np.arange(n_markers) * 1000 + 1, np.cumsum(step)


def test_a_map_with_hotspots_fills_more_calls():
    gains = []
    for seed in (0, 1):
        truth, shown, positions, cm = _hotspot_cohort(seed=seed)
        hidden = shown < 0
        plain = copying_gp(shown, positions, HaplotypeConfig(runs=1))
        mapped = copying_gp(shown, positions, HaplotypeConfig(runs=1), cm=cm)
        np.testing.assert_array_equal(mapped[~hidden].argmax(-1), shown[~hidden])
        gains.append((mapped.argmax(-1) == truth)[hidden].mean() - (plain.argmax(-1) == truth)[hidden].mean())
    # measured +0.018 on both (0.952 -> 0.970 on seed 0); chr20's real map: 0.9901 -> 0.9903
    assert min(gains) > 0.004, gains
    with pytest.raises(ValueError, match="one genetic position per marker"):
        copying_gp(shown, positions, HaplotypeConfig(runs=1), cm=cm[:-1])


def _small_vcf(folder: Path, chrom: str = "20") -> Path:
    truth, shown, positions, _ = _hotspot_cohort(n_subjects=60, n_markers=80, n_founders=8, n_hot=3, seed=4)
    n, m = shown.shape
    cohort = Cohort(genotypes=shown, subject_ids=[f"S{i:02d}" for i in range(n)], chrom=[chrom] * m,
                    pos=positions.astype(np.int64) + 1_000_000, block=["b0"] * m, ids=[f"rs{i}" for i in range(m)],
                    ref=["A"] * m, alt=["G"] * m, population=np.zeros(n, dtype=int))
    return write_vcf(folder, cohort)


def test_cli_reads_the_map_and_names_what_is_wrong(tmp_path, capsys):
    vcf = _small_vcf(tmp_path / "in")
    gmap = _write(tmp_path / "chr20.gmap", "pos\tchr\tcM\n1000000\t20\t0\n1100000\t20\t0.3\n")
    out = tmp_path / "out" / "x.vcf.gz"
    assert main(["impute", str(vcf), str(out), "--engine", "hap", "--map", str(gmap)]) == 0, capsys.readouterr().err
    assert out.exists() and Path(f"{out}.tbi").exists()
    capsys.readouterr()
    # a map for another engine, and a bad map, are one-line errors before anything is read or written
    assert main(["impute", str(vcf), str(tmp_path / "ld.vcf.gz"), "--map", str(gmap)]) == 2
    err = capsys.readouterr().err
    assert "--map applies to --engine hap only (got --engine ld)" in err and "fix:" in err, err
    bad = _write(tmp_path / "bad.gmap", "pos\tchr\tcM\n1000000\t20\tx\n")
    assert main(["impute", str(vcf), str(tmp_path / "bad" / "y.vcf.gz"), "--engine", "hap", "--map", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: line 2: expected numbers for position and cM" in err.splitlines()[0], err  # then the fix hint
    assert not (tmp_path / "bad").exists()


def test_a_chromosome_missing_from_the_map_reads_one_cm_per_mb_with_a_note(tmp_path):
    from genoembed_assets.cli_impute import impute_input

    vcf = _small_vcf(tmp_path / "in")
    work = tmp_path / "work"
    impute_input(vcf, tmp_path / "plain.vcf.gz", work=work, engine="hap", log=lambda m: None)
    gmap = read_genetic_map(_write(tmp_path / "chr21.gmap", "pos\tchr\tcM\n1\t21\t0\n2000000\t21\t3\n"))
    said: list[str] = []
    impute_cohort(work / "input", work / "phase1", tmp_path / "other.vcf.gz", engine="hap", genetic_map=gmap,
                  log=said.append)
    notes = [line for line in said if line.startswith("note:")]
    assert notes == [f"note: genetic map {gmap.path} has no chromosome 20; its blocks read 1 cM per Mb"], said
