"""Deterministic cohort simulator with planted truth (the demo cohort and the validity grid).

Genotypes come from msprime coalescent simulations under a stdpopsim HomSap
demography; each LD block is simulated independently on a shorter sequence
and its variants are stretched onto the block's real hg19 span, so block ids
and coordinates match the LD block map (:mod:`.haplotypes`, :mod:`.blocks`).

Planted truth, written beside the cohort (``truth.json``, ``truth_subjects.tsv``, :mod:`.truth`):

* a hidden stratum per subject (k=3, balanced within each population, hence
  independent of ancestry) that shapes haplotype frequencies strongly in the
  HLA class II DR/DQ and DP blocks and weakly in one PDE4D block, and
  optionally, at a reduced weight, in the blocks beside them in the extended
  MHC (LD across block boundaries);
* phenotype effects carried by the first principal component of named locus
  blocks (IgE strongest, from HLA DR/DQ), with ancestry confounding
  (population mean shifts), age/sex effects and noise (:mod:`.phenotypes`).

Admixed subjects (models with an admixed population) get individual admixture
fractions (Dirichlet around the model's mean) and draw each block haplotype's
source population from them: a simulated block lies within one ancestry
tract, and unlinked blocks get independent tracts.

Usage::

    simulate_cohort(out_dir)                                   # the demo
    simulate_cohort(out_dir, n_subjects=800, seed=7)           # keyword fields
    simulate_cohort(out_dir, config=SimulationConfig(demography="OutOfAfrica_3G09", eigenvec_source="own"))
    for name, config in validity_grid("small"): simulate_cohort(root / name, config=config)
    simulate_cohort(out_dir, config=genome_config())           # all 1,703 blocks, 2,000 subjects

The genome-wide preset (:data:`GENOME_PRESET`, :func:`genome_config`; CLI
``--genome``) is every block of the hg19 map, 2,000 subjects and array-like
density (50-300 variants per block), with the demo's planted truth (the 8
locus blocks; every other block is background and null). Time is linear in
blocks: 2,000 subjects x 1,703 blocks took 124 s of CPU (about 0.07 s per
block) and 0.93 GB peak RSS (docs/scale.md).

:class:`SimulationConfig` fields (defaults = the demo; invalid values raise ``ValueError``):

n_subjects : int, 1200
    Subjects (>= 30; 800-3,000 tested: 3,000 subjects x 32-34 blocks simulate in 5-9 s
    on one core, the 800-subject CI grid points in 1-2 s each).
n_background_blocks : int, 24
    Background blocks besides the 8 locus blocks, spread evenly over the
    autosomes away from the loci and the MHC (seed-independent choice).
    ``-1`` (:data:`WHOLE_MAP`): every other block of the hg19 map (1,695 of the
    1,703, the MHC and the locus genes' neighbours included), as in the
    genome-wide preset below.
seed : int, 20261121
    Master seed; same seed, config and library versions give byte-identical files.
demography : str, "AmericanAdmixture_4B18"
    stdpopsim HomSap model, one of :data:`DEMOGRAPHIES`:
    ``AmericanAdmixture_4B18`` (AFR, EUR, ASIA + per-subject ADMIX; default
    shares 0.2/0.4/0.2/0.2), ``OutOfAfrica_3G09`` (YRI, CEU, CHB; 0.3/0.4/0.3),
    ``OutOfAfrica_2T12`` (AFR, EUR; 0.4/0.6), ``OutOfAfrica_4J17`` (YRI, CEU,
    CHB, JPT; 0.25 each), ``Africa_1T12`` (AFR only). Only AmericanAdmixture has
    admixed subjects.
population_fractions : mapping or None, None
    Share of subjects per population of the demography (None: its defaults).
max_variants, min_variants : int, 160, 40
    Cap on variants per block (even thinning after the MAF filter); a block's
    simulated stretch is lengthened until it has about ``min_variants`` common ones.
min_maf : float, 0.02
    Cohort minor allele frequency filter.
missing_rate : float, 0.005
    Fraction of calls set to -1, so missingness code paths run.
strong_weight, weak_weight : float, 0.85, 0.45
    Probability that a haplotype comes from the subject's stratum group in the
    HLA class II blocks (strong) and in ``weak_block`` (weak).
weak_block : {"PDE4D_1", "PDE4D_2"}, "PDE4D_1"
    The PDE4D block with the weak structure.
stratum_strength : float, 1.0
    Multiplies both weights (so ``strong_weight * stratum_strength <= 1``).
    0 plants no strata at all: ``truth.json`` has ``n_strata`` 0 and empty
    structure block lists, and the ``stratum`` column of
    ``truth_subjects.tsv`` is 0 for every subject (present, one level).
inter_block_ld : float in [0, 1], 0.0
    > 0 adds the blocks beside HLA DR/DQ (left) and HLA DP (right) inside the
    extended MHC (hg19 chr6:25.5-33.5 Mb) to the cohort; they carry the same
    subject stratum at weight ``inter_block_ld * strong_weight *
    stratum_strength``, so they correlate with the HLA blocks through the
    shared haplotype group. ``truth.json`` lists them as ``ld_partner_blocks``
    (with ``ld_partner_weight``); they are neither background nor null blocks.
    Needs planted strata.
ld_partners_per_side : {1, 2}, 1
    Partner blocks per side (shipped map: 1 -> chr6_b0024, chr6_b0027;
    2 adds chr6_b0023; the right side has no second block inside the extended MHC).
eigenvec_source : {"panel", "own", "none"}, "panel"
    ``pcs.eigenvec`` from an unlinked ancestry panel (the demo), from the
    cohort's own written genotypes (all blocks, no LD pruning, like ``plink
    --pca``), or not written (genoembed computes PCs). Recorded in
    ``truth.json`` (``eigenvec_source``, ``eigenvec_note``). The genotypes do
    not depend on it: same seed and other fields give the same blocks.
sim_length : int, 100_000
    Most base pairs simulated per block (span / 25 within [20 kb, sim_length]).
pool_factor : float, 1.5
    Haplotype pool size per population relative to the draws it serves.
n_pc_snps : int, 4000
    Size of the unlinked ancestry panel behind the ``"panel"`` eigenvec.
lineage_tags : int, 6
    Lineage-defining variants per stratum group in each structure block.
balanced_groups : bool, False
    Split each population's pool haplotypes into equal-share stratum groups
    (each haplotype as near its k-means centre as the quotas allow) instead of
    the k-means groups, so the stratum strength alone sets how identifiable a
    stratum is. The validity grid sets it; the demo keeps k-means groups.

``truth.json`` records ``stratum_ari_oracle``, the ARI of an oracle that sees
every planted haplotype's group (its labels: ``oracle_stratum`` of
``truth_subjects.tsv``); the validity grid scores clusters against it.

``simulate_cohort`` also takes ``overwrite`` and ``n_threads`` (run options,
not part of the cohort). :func:`validity_grid` gives the named cohorts of the
validity benchmark (:mod:`.grid`). Nothing here imports dagster.
"""

from .blocks import LOCUS_KEYS, ld_partner_blocks, select_cohort_blocks, select_demo_blocks
from .cohort import SimulatedCohort, main, simulate_cohort
from .config import (
    DEFAULT_POPULATION_FRACTIONS,
    DEMO_SEED,
    DEMOGRAPHIES,
    EIGENVEC_SOURCES,
    GENOME_PRESET,
    WHOLE_MAP,
    Demography,
    SimulationConfig,
    genome_config,
)
from .grid import validity_grid
from .pca import block_pc1
from .truth import TRUTH_JSON, TRUTH_SUBJECTS, read_truth

__all__ = [
    "DEFAULT_POPULATION_FRACTIONS",
    "DEMOGRAPHIES",
    "DEMO_SEED",
    "EIGENVEC_SOURCES",
    "GENOME_PRESET",
    "LOCUS_KEYS",
    "TRUTH_JSON",
    "TRUTH_SUBJECTS",
    "WHOLE_MAP",
    "Demography",
    "SimulatedCohort",
    "SimulationConfig",
    "block_pc1",
    "genome_config",
    "ld_partner_blocks",
    "main",
    "read_truth",
    "select_cohort_blocks",
    "select_demo_blocks",
    "simulate_cohort",
    "validity_grid",
]
