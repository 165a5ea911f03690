"""The genome-wide simulated cohort (issue 12): every block of the hg19 map, planted truth as in the demo.

The block selection is checked on the whole map at the preset's size; one
simulation of the whole map runs at 60 subjects and few variants per block
(about 20 s on one core) so the writing of 1,703 blocks and their truth is
exercised without the preset's 2,000 subjects (a few minutes, see docs/scale.md).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from genoembed_assets import paths
from genoembed_assets.genotypes import simulate as sim
from genoembed_assets.genotypes.blockmap import read_block_map
from genoembed_assets.genotypes.layout import load_block, read_manifest, read_subjects

N_MAP_BLOCKS = 1703  # the shipped LDetect EUR hg19 map


@pytest.fixture(scope="module")
def block_map() -> pd.DataFrame:
    return read_block_map(paths.block_map_path("hg19")).reset_index(drop=True)


@pytest.fixture(scope="module")
def genome60(tmp_path_factory):
    folder = tmp_path_factory.mktemp("genome") / "g60"
    with threadpool_limits(limits=1):
        return sim.simulate_cohort(folder, config=sim.genome_config(n_subjects=60, min_variants=5, max_variants=12,
                                                                    n_pc_snps=1000, sim_length=20_000))


def test_genome_preset_is_the_whole_map_at_2000_subjects_and_array_density():
    config = sim.genome_config()
    assert (config.n_subjects, config.n_background_blocks) == (2000, sim.WHOLE_MAP)
    assert (config.min_variants, config.max_variants) == (50, 300)
    assert config.seed == sim.DEMO_SEED and config.structure_weights() == sim.SimulationConfig().structure_weights()
    assert sim.genome_config(n_subjects=60).n_subjects == 60


def test_whole_map_selects_every_block_in_genomic_order_with_the_loci(block_map):
    blocks = sim.select_cohort_blocks(sim.WHOLE_MAP)
    assert blocks["block_id"].tolist() == block_map["block_id"].tolist()  # all 1,703, the map's (genomic) order
    assert len(blocks) == N_MAP_BLOCKS
    loci = blocks[blocks["role"] == "locus"].set_index("locus")
    assert sorted(loci.index) == sorted(sim.LOCUS_KEYS)
    # The locus blocks are the demo's: the same ids whatever the number of background blocks.
    demo = sim.select_demo_blocks(24).query("locus != ''").set_index("locus")["block_id"]
    assert loci["block_id"].to_dict() == demo.to_dict()
    assert (blocks["role"] == "background").sum() == N_MAP_BLOCKS - 8
    # MHC blocks other than the HLA class II ones are background here (the demo leaves them out).
    mhc = blocks[(blocks["chrom"] == "6") & (blocks["end"] > 28_477_797) & (blocks["start"] < 33_448_354)]
    assert {"locus", "background"} == set(mhc["role"])


def test_whole_map_with_ld_partners_keeps_their_role():
    blocks = sim.select_cohort_blocks(sim.WHOLE_MAP, 1)
    assert len(blocks) == N_MAP_BLOCKS
    assert blocks.loc[blocks["role"] == "ld_partner", "block_id"].tolist() == sim.ld_partner_blocks(1)
    assert (blocks["role"] == "background").sum() == N_MAP_BLOCKS - 8 - 2


@pytest.mark.parametrize("value", [-2, -100])
def test_background_count_below_whole_map_is_refused(value):
    with pytest.raises(ValueError, match=r"n_background_blocks must be >= 0, or -1 for every block of the map, got"):
        sim.SimulationConfig(n_background_blocks=value)


def test_genome_cohort_writes_every_block_and_the_demo_truth(genome60, block_map):
    truth = genome60.truth
    manifest = read_manifest(genome60.out_dir)
    assert manifest["block_id"].tolist() == block_map["block_id"].tolist()
    assert (manifest["n_snps"] >= 2).all() and (manifest["n_snps"] <= max(12, 3 * 6)).all()  # cap, or the lineage tags kept above it
    assert set(truth["locus_blocks"]) == set(sim.LOCUS_KEYS)
    assert truth["strong_structure_blocks"] == [truth["locus_blocks"]["HLA_DRDQ"], truth["locus_blocks"]["HLA_DP"]]
    assert truth["weak_structure_blocks"] == [truth["locus_blocks"]["PDE4D_1"]]
    assert {e["block"] for e in truth["effects"]} <= set(truth["locus_blocks"].values())
    assert len(truth["background_blocks"]) == N_MAP_BLOCKS - 8
    # Null blocks: every block but the effect and structure blocks.
    planted = {e["block"] for e in truth["effects"]} | set(truth["structure_blocks"])
    assert len(truth["null_blocks"]) == N_MAP_BLOCKS - len(planted)
    assert truth["parameters"]["n_background_blocks"] == sim.WHOLE_MAP
    _, subjects = sim.read_truth(genome60.out_dir)
    assert len(subjects) == 60 == len(read_subjects(genome60.out_dir))
    assert sorted(subjects["stratum"].unique()) == [0, 1, 2]
    variants = pd.read_csv(genome60.variants_path, sep="\t", dtype={"chrom": str})
    assert variants["block_id"].nunique() == N_MAP_BLOCKS and len(variants) == manifest["n_snps"].sum()
    last = manifest.iloc[-1]
    g = load_block(genome60.out_dir, dict(last), 60)
    assert g.shape == (60, last["n_snps"]) and set(np.unique(g)) <= {-1, 0, 1, 2}


def test_cli_genome_flag_takes_the_preset_and_lets_options_override(tmp_path, capsys, monkeypatch):
    seen = {}

    def fake_simulate(out_dir, *, config, overwrite):
        seen["config"] = config
        raise SystemExit(0)  # the run itself is covered above

    monkeypatch.setattr("genoembed_assets.genotypes.simulate.cohort.simulate_cohort", fake_simulate)
    with pytest.raises(SystemExit):
        sim.main([str(tmp_path / "g"), "--genome", "--n-subjects", "300", "--max-variants", "200"])
    assert seen["config"] == sim.genome_config(n_subjects=300, max_variants=200)
    with pytest.raises(SystemExit):
        sim.main([str(tmp_path / "d")])
    assert seen["config"] == sim.SimulationConfig()
    with pytest.raises(SystemExit) as exc:
        sim.main([str(tmp_path / "x"), "--n-background-blocks", "-5"])
    assert exc.value.code == 2 and "n_background_blocks must be >= 0, or -1" in capsys.readouterr().err
