"""The science on cohorts genoembed was not tuned on: the small validity grid, end to end (issue 9).

Three simulated cohorts with seeds, demographies and eigenvec sources other
than the demo's (one ``.eigenvec`` computed naively from the cohort's own
genotypes, one with inter-block LD around the HLA blocks, one with no
eigenvec so genoembed computes the PCs) go through the whole graph with the
fast presets; the same targets as ``bench/validity.py`` (docs/validity.md)
must hold on each.
"""

from __future__ import annotations

import pytest

from genoembed_assets.defs.resources import ComputeResource, GenoembedStorage
from genoembed_assets.genotypes.simulate import DEMO_SEED, simulate_cohort, validity_grid
from genoembed_assets.runner import materialize_cohort, preset_run_config
from genoembed_assets.validity import TARGETS, score_cohort, stratum_ari_ceiling, target_failures

GRID = validity_grid("small")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def grid_scores(tmp_path_factory):
    import dagster as dg

    root = tmp_path_factory.mktemp("validity")
    storage = GenoembedStorage(cohorts_root=str(root / "cohorts"), results_root=str(root / "results"))
    scores = {}
    with dg.instance_for_test(temp_dir=str(tmp_path_factory.mktemp("validity_home"))) as instance:
        for name, config in GRID:
            simulate_cohort(root / "cohorts" / name, config=config)
            materialize_cohort(name, instance=instance, resources={"storage": storage, "compute": ComputeResource(device="cpu")},
                               run_config=preset_run_config("fast"), log=lambda m: None)
            scores[name] = score_cohort(root / "cohorts" / name, storage.cohort_dir(name))
    return scores


def test_ari_ceiling_falls_with_the_stratum_strength():
    import numpy as np

    strata = np.repeat([0, 1, 2], 400)
    def truth(strength, partners=0):
        return {"n_strata": 3, "structure_weights": {"a": 0.85 * strength, "b": 0.85 * strength, "c": 0.45 * strength},
                "ld_partner_blocks": ["p"] * partners, "ld_partner_weight": 0.5 * strength}
    full, weak = stratum_ari_ceiling(truth(1.0), strata), stratum_ari_ceiling(truth(0.8), strata)
    # at full strength an oracle of the haplotype groups nearly always places a subject; at 0.8
    # too many subjects drew no haplotype from their group: the 0.8 target sits near the bound
    assert 0.93 < full < 1.0 and 0.78 < weak < 0.88 and weak < full
    assert stratum_ari_ceiling(truth(0.8, partners=2), strata) > weak  # LD partners carry the stratum too
    assert np.isnan(stratum_ari_ceiling({"n_strata": 0}, strata))


def test_grid_is_not_the_demo():
    assert len(GRID) >= 3 and all(config.seed != DEMO_SEED for _, config in GRID)
    assert "own" in {config.eigenvec_source for _, config in GRID}
    assert any(config.inter_block_ld > 0 for _, config in GRID)


@pytest.mark.parametrize("name", [name for name, _ in GRID])
def test_importance_and_association_targets_hold(grid_scores, name):
    s = grid_scores[name]
    assert max(s["strong_ranks"]) <= TARGETS["strong_rank_max"] and max(s["strong_p"]) < TARGETS["strong_p_max"], s
    assert s["associations_found"] >= s["associations_planted"] - 1, s
    assert s["null_fp_rate"] <= TARGETS["null_fp_max"], s


@pytest.mark.parametrize("name", [name for name, _ in GRID])
def test_clusters_recover_the_planted_strata(grid_scores, name):
    s = grid_scores[name]
    assert s["discrete"] and s["k"] == 3 and s["ari"] >= TARGETS["ari_min"], s
    # the grid point can tell pipelines apart: a classifier trained on the true strata clears the target,
    # and the haplotype-group oracle of the simulator is at least as good as the pipeline
    assert s["ari_supervised"] >= TARGETS["ari_min"] and s["ari_ceiling"] >= s["ari"] - 0.02, s
    assert target_failures(s) == [], s


def test_weak_block_leads_after_leaving_the_mhc_out(grid_scores):
    # the full grid's target is 6 of 8; here at least 2 of 3
    leads = [name for name, s in grid_scores.items() if s.get("leave_out_weak_leads")]
    assert len(leads) >= 2, {name: s.get("leave_out_leader") for name, s in grid_scores.items()}
