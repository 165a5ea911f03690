"""Named grids of simulated cohorts over the simulator's axes, for the validity benchmark.

None uses the demo seed; every point keeps the planted phenotype effects. The
``"full"`` grid spans demography, size (800-3,000), stratum strength (one
weaker than the demo, one with no strata), inter-block LD and the eigenvec
source; ``"small"`` is 3 cohorts of 800 subjects and 20-22 blocks for CI;
``"edge"`` is one cohort at a strength where no method reaches the ARI target
(scored beside the grid, not counted: see docs/validity.md).

Every grid cohort splits its haplotypes into equal-share groups
(``balanced_groups``), so the planted stratum strength, not how unequal one
genealogy's k-means groups happen to be, sets how identifiable a stratum is.
With k-means groups seed 9105 had groups of 7 % and 50 % of the EUR pool and an
oracle that sees every haplotype's group reached ARI 0.78 at strength 0.8.
"""

from __future__ import annotations

from .config import SimulationConfig

__all__ = ["GRID_SIZES", "validity_grid"]

GRID_SIZES = ("full", "small", "edge")

_FULL = (
    # The failing case: the demo's demography with an eigenvec from the cohort's own genotypes.
    ("admix_own_1200", dict(demography="AmericanAdmixture_4B18", n_subjects=1200, eigenvec_source="own", seed=9101)),
    ("ooa3_own_1000", dict(demography="OutOfAfrica_3G09", n_subjects=1000, eigenvec_source="own", seed=9102)),
    ("ooa2_none_800", dict(demography="OutOfAfrica_2T12", n_subjects=800, eigenvec_source="none", seed=9103)),
    ("africa_panel_1000", dict(demography="Africa_1T12", n_subjects=1000, eigenvec_source="panel", seed=9104)),
    # Weaker strata than the demo: an oracle of the haplotype groups reaches ARI 0.93 here (0.97 at 1.0).
    ("admix_weak_own_1500", dict(demography="AmericanAdmixture_4B18", n_subjects=1500, eigenvec_source="own",
                                 stratum_strength=0.9, seed=9105)),
    ("ooa3_ld_panel_1200", dict(demography="OutOfAfrica_3G09", n_subjects=1200, eigenvec_source="panel",
                                inter_block_ld=0.6, seed=9106)),
    ("admix_ld_none_3000", dict(demography="AmericanAdmixture_4B18", n_subjects=3000, eigenvec_source="none",
                                inter_block_ld=0.5, seed=9107)),
    # No planted strata: the pipeline must report no discrete clusters; the phenotype effects stay.
    ("ooa2_null_own_1000", dict(demography="OutOfAfrica_2T12", n_subjects=1000, eigenvec_source="own",
                                stratum_strength=0.0, seed=9108)),
)
# Strength 0.8: the oracle reaches 0.84 and a classifier trained on the true strata 0.815 from the
# planted blocks' genotypes, so the 0.8 target there cannot tell a good pipeline from a bad one.
_EDGE = (
    ("admix_weak08_own_1500", dict(demography="AmericanAdmixture_4B18", n_subjects=1500, eigenvec_source="own",
                                   stratum_strength=0.8, seed=9105)),
)
_SMALL = (
    ("small_admix_own", dict(demography="AmericanAdmixture_4B18", n_subjects=800, n_background_blocks=12,
                             eigenvec_source="own", seed=9201)),
    ("small_ooa3_ld", dict(demography="OutOfAfrica_3G09", n_subjects=800, n_background_blocks=12,
                           eigenvec_source="panel", inter_block_ld=0.6, seed=9202)),
    ("small_ooa2_none", dict(demography="OutOfAfrica_2T12", n_subjects=800, n_background_blocks=12,
                             eigenvec_source="none", seed=9203)),
)


def validity_grid(size: str = "full") -> list[tuple[str, SimulationConfig]]:
    """``[(name, config), ...]`` of the validity grid.

    Parameters
    ----------
    size : {"full", "small", "edge"}, default "full"
        ``"full"``: 8 cohorts (800-3,000 subjects, 32-34 blocks);
        ``"small"``: 3 cohorts (800 subjects, 20-22 blocks) for CI;
        ``"edge"``: the strength-0.8 cohort, beyond what the ARI target can measure.

    Returns
    -------
    list of (str, SimulationConfig)
        Names are unique and usable as cohort folder names; seeds are distinct
        and none is the demo's.
    """
    if size not in GRID_SIZES:
        raise ValueError(f"size must be one of {list(GRID_SIZES)}, got {size!r}")
    points = {"full": _FULL, "small": _SMALL, "edge": _EDGE}[size]
    return [(name, SimulationConfig(**{"balanced_groups": True, **params})) for name, params in points]
