"""Deterministic demo-cohort simulator with planted truth.

Genotypes come from msprime coalescent simulations under the stdpopsim HomSap
``AmericanAdmixture_4B18`` demography (AFR, EUR, ASIA; the model's ADMIX
population is rebuilt per subject, see below). Each LD block is simulated
independently on a shorter sequence (span / 25, 20-100 kb) and its variants
are stretched onto the block's real hg19 span, so block ids and coordinates
match the LD block map.

Planted truth, written beside the cohort (``truth.json``, ``truth_subjects.tsv``):

* a hidden stratum per subject (k=3, balanced within each population, hence
  independent of ancestry) that shapes haplotype frequencies strongly in the
  HLA class II DR/DQ and DP blocks and weakly in one PDE4D block;
* phenotype effects carried by the first principal component of named locus
  blocks (IgE strongest, from HLA DR/DQ), with ancestry confounding
  (population mean shifts), age/sex effects and noise.

Stratum structure: per block, each population gets a pool of haplotypes
larger than needed. In structure blocks the pooled haplotypes are split into 3
groups by k-means on their top principal components after centring within
population (so a group means the same haplotype direction in every
population), and each group gets a few lineage-defining variants (a deepened
stem, as for the old, balancing-selected HLA class II lineages). A subject of
stratum ``s`` takes each of its two haplotypes from group ``s`` with
probability ``w`` and otherwise from the whole pool of its (per-haplotype)
source population.

Admixed subjects get individual admixture fractions (Dirichlet around the
model's 1/6 AFR, 1/3 EUR, 1/2 ASIA) and draw each block haplotype's source
population from them: a simulated block (about 0.1 cM at most) lies within
one ancestry tract, and unlinked blocks get independent tracts.

``pcs.eigenvec`` comes from an unlinked panel drawn per SNP from the same
pools (like genome-wide LD-pruned SNPs), so its PCs are ancestry, not the
haplotype axes of single blocks.

Same seed, parameters and library versions give byte-identical files.
"""

from __future__ import annotations

import argparse
import shutil
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .. import paths, storage
from .blockmap import read_block_map
from .layout import MANIFEST, PHENOTYPES, SETTINGS, SUBJECTS, BlockArray, write_cohort

__all__ = [
    "DEFAULT_POPULATION_FRACTIONS",
    "LOCUS_KEYS",
    "SimulatedCohort",
    "block_pc1",
    "read_truth",
    "select_demo_blocks",
    "simulate_cohort",
]

LOCUS_KEYS = ("HLA_DRDQ", "HLA_DP", "PDE4D_1", "PDE4D_2", "17q21", "IL33", "TSLP", "IL1RL1")
SOURCE_POPULATIONS = ("AFR", "EUR", "ASIA")
ADMIXED = "ADMIX"
DEFAULT_POPULATION_FRACTIONS = {"AFR": 0.2, "EUR": 0.4, "ASIA": 0.2, "ADMIX": 0.2}
# Admixture proportions of the ADMIX population in AmericanAdmixture_4B18
# (Browning et al. 2018): 1/6 AFR, then 40% of the rest EUR, the remainder ASIA.
_ADMIX_MEAN = np.array([1 / 6, 1 / 3, 1 / 2])
_ADMIX_CONCENTRATION = 8.0  # Dirichlet concentration: individual fractions vary around the mean
N_STRATA = 3
_MIN_SIM_LENGTH = 20_000
N_PCS = 10
TRUTH_JSON = "truth.json"
TRUTH_SUBJECTS = "truth_subjects.tsv"
VARIANTS = "variants.tsv"
EIGENVEC = "pcs.eigenvec"  # the name layout.write_cohort gives it

# Planted phenotype effects: (phenotype, locus, standardized beta). The beta is
# per SD of the block's ancestry-adjusted PC1 (see _within_ancestry) in SDs of
# the trait's noise on its modelling scale (log for ige/eosinophils, litres for
# fev1, log-rate for exacerbations).
# Sized so every planted pair is found at a few hundred subjects.
_EFFECTS = (
    ("ige", "HLA_DRDQ", 0.70),
    ("ige", "17q21", 0.45),
    ("ige", "IL33", 0.45),
    ("eosinophils", "IL1RL1", 0.50),
    ("eosinophils", "TSLP", 0.45),
    ("fev1", "17q21", -0.45),
    ("exacerbations", "17q21", 0.45),
)
# Noise SD of each trait on its modelling scale; exacerbations has none (its
# noise is the negative-binomial draw) so its beta is a log rate ratio.
_NOISE_SD = {"ige": 1.0, "eosinophils": 0.55, "fev1": 0.45, "exacerbations": 1.0}
_SCALE = {"ige": "log(kU/L)", "eosinophils": "log(cells/uL)", "fev1": "litres", "exacerbations": "log rate"}
# Ancestry confounding: mean shift per source population on the modelling scale
# (admixed subjects get the fraction-weighted shift).
_ANCESTRY_SHIFT = {
    "ige": (0.45, 0.0, 0.25),
    "eosinophils": (-0.10, 0.0, 0.15),
    "fev1": (-0.35, 0.0, -0.20),
    "exacerbations": (0.25, 0.0, -0.10),
}


@dataclass(frozen=True)
class SimulatedCohort:
    """Where a simulated cohort was written, and its planted truth.

    Attributes
    ----------
    out_dir : Path
        Cohort folder in the original layout.
    manifest_path, subjects_path, phenotypes_path, eigenvec_path : Path
        The layout files (``manifest.tsv``, ``subjects.tsv``, ``phenotypes.csv``,
        ``pcs.eigenvec``).
    variants_path : Path
        ``variants.tsv``: block_id, variant_id, chrom, pos (1-based), ref, alt,
        in the column order of each block matrix.
    truth_path, truth_subjects_path : Path
        ``truth.json`` and ``truth_subjects.tsv`` (see ``docs/design.md``).
    truth : dict
        The content of ``truth.json``.
    elapsed_s : float
        Wall time of the simulation and writing.
    """

    out_dir: Path
    manifest_path: Path
    subjects_path: Path
    phenotypes_path: Path
    eigenvec_path: Path
    variants_path: Path
    truth_path: Path
    truth_subjects_path: Path
    truth: dict
    elapsed_s: float


# --------------------------------------------------------------------------- blocks


def _read_loci(path: Path) -> pd.DataFrame:
    loci = pd.read_csv(path, sep="\t", dtype={"chrom": str})
    return loci.astype({"start_hg19": np.int64, "end_hg19": np.int64})


def _best_block(block_map: pd.DataFrame, chrom: str, start: int, end: int) -> int:
    """Row index of the block overlapping [start, end) the most."""
    on_chrom = block_map[block_map["chrom"] == chrom]
    overlap = np.minimum(on_chrom["end"], end) - np.maximum(on_chrom["start"], start)
    if not (overlap > 0).any():
        raise ValueError(f"no LD block overlaps chr{chrom}:{start}-{end}")
    return int(overlap.idxmax())


def select_demo_blocks(
    n_background: int,
    *,
    block_map: pd.DataFrame | None = None,
    loci: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The 8 asthma locus blocks plus evenly spread background blocks (hg19).

    Parameters
    ----------
    n_background : int
        Number of background blocks. They are spread evenly, in genomic order,
        over the autosomal blocks that overlap no locus gene and not the MHC,
        so the choice does not depend on the seed and cohorts share block keys.
    block_map : DataFrame, optional
        Output of :func:`read_block_map`; default the shipped LDetect EUR hg19 map.
    loci : DataFrame, optional
        ``asthma_loci.tsv``; default the shipped file.

    Returns
    -------
    DataFrame
        ``block_id, chrom, start, end, locus`` in genomic order; ``locus`` is one
        of :data:`LOCUS_KEYS` or ``""`` for background blocks.
    """
    if block_map is None:
        block_map = read_block_map(paths.block_map_path("hg19"))
    if loci is None:
        loci = _read_loci(paths.reference_dir() / "asthma_loci.tsv")
    block_map = block_map.reset_index(drop=True)
    genes = loci.set_index("gene")

    def gene_block(name: str) -> int:
        g = genes.loc[name]
        return _best_block(block_map, str(g["chrom"]), int(g["start_hg19"]), int(g["end_hg19"]))

    chosen: dict[str, int] = {}
    drdq = {gene_block(g) for g in ("HLA-DRB1", "HLA-DQA1", "HLA-DQB1")}
    if len(drdq) != 1:
        raise ValueError(f"HLA-DRB1/DQA1/DQB1 fall in different blocks {sorted(drdq)}; expected one")
    chosen["HLA_DRDQ"] = drdq.pop()
    chosen["HLA_DP"] = chosen["HLA_DRDQ"] + 1  # the map's next block holds DPA1/DPB1
    if block_map.at[chosen["HLA_DP"], "chrom"] != "6":
        raise ValueError("the block after HLA DR/DQ is not on chromosome 6")
    pde = genes.loc["PDE4D"]
    pde_rows = block_map.index[
        (block_map["chrom"] == str(pde["chrom"]))
        & (block_map["end"] > int(pde["start_hg19"]))
        & (block_map["start"] < int(pde["end_hg19"]))
    ]
    if len(pde_rows) != 2:
        raise ValueError(f"PDE4D overlaps {len(pde_rows)} blocks; expected 2")
    chosen["PDE4D_1"], chosen["PDE4D_2"] = (int(i) for i in pde_rows)
    q21 = {gene_block(g) for g in ("ORMDL3", "GSDMB", "IKZF3")}
    if len(q21) != 1:
        raise ValueError(f"ORMDL3/GSDMB/IKZF3 fall in different blocks {sorted(q21)}; expected one")
    chosen["17q21"] = q21.pop()
    for name in ("IL33", "TSLP", "IL1RL1"):
        chosen[name] = gene_block(name)

    # Background: autosomal, not overlapping any locus row (genes and MHC).
    eligible = block_map["chrom"] != "X"
    for _, row in loci.iterrows():
        eligible &= ~(
            (block_map["chrom"] == str(row["chrom"]))
            & (block_map["end"] > int(row["start_hg19"]))
            & (block_map["start"] < int(row["end_hg19"]))
        )
    eligible.loc[list(chosen.values())] = False
    candidates = np.flatnonzero(eligible.to_numpy())
    if not 0 <= n_background <= len(candidates):
        raise ValueError(f"n_background must be in [0, {len(candidates)}], got {n_background}")
    picks = candidates[np.round(np.linspace(0, len(candidates) - 1, n_background)).astype(int)] if n_background else []

    out = block_map.loc[sorted(set(chosen.values()) | set(int(i) for i in picks)), ["block_id", "chrom", "start", "end"]]
    locus_of = {idx: key for key, idx in chosen.items()}
    out = out.assign(locus=[locus_of.get(i, "") for i in out.index])
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------- helpers


def _seed_sequence(seed: int, *key: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(entropy=seed, spawn_key=key)


def _block_key(block_id: str) -> int:
    # Stable across runs and platforms (unlike hash()).
    return zlib.crc32(block_id.encode())


def _demography():
    import stdpopsim  # imported lazily: slow import, only needed to simulate

    species = stdpopsim.get_species("HomSap")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # older stdpopsim only knows the deprecated 4B11 name
        try:
            model = species.get_demographic_model("AmericanAdmixture_4B18")
        except ValueError:
            model = species.get_demographic_model("AmericanAdmixture_4B11")
    return species, model


def _standardize(genotypes: np.ndarray) -> np.ndarray:
    """Centre and scale each variant; missing (-1) becomes 0 (the mean)."""
    g = genotypes.astype(np.float64)
    observed = genotypes >= 0
    n_obs = np.maximum(observed.sum(axis=0), 1)
    mean = np.where(observed, g, 0.0).sum(axis=0) / n_obs
    x = np.where(observed, g - mean, 0.0)
    sd = np.sqrt((x**2).sum(axis=0) / n_obs)
    return x / np.where(sd > 0, sd, 1.0)


def block_pc1(genotypes: np.ndarray) -> np.ndarray:
    """Standardized first principal component of one block's genotypes.

    This is the feature that carries the planted phenotype effects: variants
    are centred and scaled (missing entries take the variant mean), the
    subject scores on the first component are scaled to mean 0 and SD 1, and
    the sign makes the sum of variant loadings positive.

    Parameters
    ----------
    genotypes : ndarray of int8, shape (subjects, variants)
        Values in {-1, 0, 1, 2}, -1 missing.

    Returns
    -------
    ndarray of float64, shape (subjects,)
    """
    x = _standardize(genotypes)
    loading = _top_axes(x, 1)[:, 0]
    score = x @ (loading if loading.sum() >= 0 else -loading)
    return (score - score.mean()) / score.std()


def _top_axes(x: np.ndarray, k: int) -> np.ndarray:
    """Top ``k`` right singular vectors of ``x`` (columns: variants).

    ``eigh`` on the smaller Gram matrix is far cheaper than a full SVD of the
    subjects x variants matrix.
    """
    if x.shape[0] >= x.shape[1]:
        _, vectors = np.linalg.eigh(x.T @ x)
        return vectors[:, ::-1][:, :k]
    _, left = np.linalg.eigh(x @ x.T)
    axes = x.T @ left[:, ::-1][:, :k]
    return axes / np.maximum(np.linalg.norm(axes, axis=0), 1e-300)


def _within_ancestry(feature: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """``feature`` residualized on the admixture fractions, rescaled to SD 1.

    A block's PC1 is partly an ancestry axis; planting effects on the part
    within ancestry keeps them separate from the planted confounding (the
    population mean shifts) and recoverable after adjusting for ancestry PCs,
    whatever share of the block's PC1 ancestry happens to take.
    """
    design = np.column_stack([np.ones(len(feature)), fractions[:, :-1]])  # fractions sum to 1
    resid = feature - design @ np.linalg.lstsq(design, feature, rcond=None)[0]
    return resid / resid.std()


def _kmeans(x: np.ndarray, k: int, rng: np.random.Generator, n_init: int = 4, n_iter: int = 60) -> np.ndarray:
    """Plain k-means (k-means++ starts) in numpy, deterministic given ``rng``."""
    best_labels, best_inertia = None, np.inf
    for _ in range(n_init):
        centers = [x[rng.integers(len(x))]]
        for _ in range(k - 1):
            d2 = np.min([((x - c) ** 2).sum(axis=1) for c in centers], axis=0)
            centers.append(x[rng.choice(len(x), p=d2 / d2.sum())])
        c = np.array(centers)
        for _ in range(n_iter):
            dist = ((x[:, None, :] - c[None]) ** 2).sum(axis=2)
            labels = dist.argmin(axis=1)
            new = np.array([x[labels == j].mean(axis=0) if (labels == j).any() else c[j] for j in range(k)])
            if np.allclose(new, c):
                break
            c = new
        inertia = dist[np.arange(len(x)), labels].sum()
        if inertia < best_inertia:
            best_labels, best_inertia = labels, inertia
    return best_labels


def _haplotype_groups(haps: np.ndarray, pop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Split pool haplotypes into N_STRATA groups shared across populations.

    Centring within population removes the ancestry axis, so the groups are
    haplotype clades found in every population rather than the populations.
    """
    x = haps.astype(np.float64)
    for p in np.unique(pop):
        x[pop == p] -= x[pop == p].mean(axis=0)
    scores = x @ _top_axes(x, 3)
    labels = _kmeans(scores, N_STRATA, rng)
    # Order groups by their mean on the first component so labels are stable.
    order = np.argsort([scores[labels == j, 0].mean() if (labels == j).any() else 0.0 for j in range(N_STRATA)])
    return np.argsort(order)[labels]


class _Pool:
    """Draw haplotypes of one population and group without replacement.

    Each group is a shuffled queue; an exhausted queue is reshuffled, so
    haplotypes repeat only when a group is drawn more often than it is large.
    """

    def __init__(self, members: np.ndarray, rng: np.random.Generator):
        self.members = members
        self.rng = rng
        self.queue = rng.permutation(members)
        self.next = 0

    def draw(self) -> int:
        if self.next == len(self.queue):
            self.queue, self.next = self.rng.permutation(self.members), 0
        self.next += 1
        return int(self.queue[self.next - 1])


@dataclass(frozen=True)
class _Subjects:
    ids: np.ndarray
    population: np.ndarray  # names, SOURCE_POPULATIONS or ADMIX
    stratum: np.ndarray
    fractions: np.ndarray  # (n, 3) over SOURCE_POPULATIONS


def _make_subjects(n: int, fractions: Mapping[str, float], rng: np.random.Generator) -> _Subjects:
    names = list(fractions)
    share = np.array([fractions[k] for k in names], dtype=float)
    share = share / share.sum()
    counts = np.floor(share * n).astype(int)
    # Largest remainder so the counts add up to n exactly.
    counts[np.argsort(-(share * n - counts), kind="stable")[: n - counts.sum()]] += 1
    population = rng.permutation(np.repeat(np.array(names, dtype=object), counts))
    stratum = np.empty(n, dtype=np.int64)
    for name in names:
        # Balanced within each population: strata are independent of ancestry by design.
        idx = np.flatnonzero(population == name)
        stratum[idx] = rng.permutation(np.arange(len(idx)) % N_STRATA)
    frac = np.zeros((n, len(SOURCE_POPULATIONS)))
    for j, name in enumerate(SOURCE_POPULATIONS):
        frac[population == name, j] = 1.0
    admixed = np.flatnonzero(population == ADMIXED)
    if admixed.size:
        frac[admixed] = rng.dirichlet(_ADMIX_CONCENTRATION * _ADMIX_MEAN, size=admixed.size)
    width = max(5, len(str(n)))
    ids = np.array([f"SIM{i + 1:0{width}d}" for i in range(n)], dtype=object)
    return _Subjects(ids, population, stratum, frac)


# --------------------------------------------------------------------------- one block


@dataclass(frozen=True)
class _Block:
    genotypes: np.ndarray  # int8, with missing
    positions: np.ndarray  # 1-based
    alleles: np.ndarray  # (variants, 2) str
    panel: np.ndarray  # int8 (subjects, k): unlinked ancestry SNPs for the PCs, see _panel_draws


def _panel_draws(haps: np.ndarray, hap_pop: np.ndarray, fractions: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Genotypes at ``k`` pool variants drawn independently per variant.

    Each allele of each subject comes from a fresh random haplotype of a
    source population (drawn from the subject's admixture fractions), so the
    columns carry population allele frequencies but no within-subject LD: an
    LD-pruned, genome-wide-like panel whose top PCs are ancestry, not the
    haplotype axes of single blocks (which they would be with only a few
    dozen blocks).
    """
    freq = haps.mean(axis=0)
    common = np.flatnonzero(np.minimum(freq, 1 - freq) >= 0.05)
    if common.size == 0 or k == 0:
        return np.zeros((len(fractions), 0), dtype=np.int8)
    cols = common[np.round(np.linspace(0, common.size - 1, min(k, common.size))).astype(int)]
    n = len(fractions)
    cum = np.cumsum(fractions, axis=1)
    source = (rng.random((n, 2, cols.size))[..., None] > cum[:, None, None, :-1]).sum(axis=-1)
    alleles = np.zeros((n, 2, cols.size), dtype=np.int8)
    for j, p in enumerate(SOURCE_POPULATIONS):
        members = np.flatnonzero(hap_pop == p)
        mask = source == j
        if not mask.any():
            continue
        rows = members[rng.integers(0, members.size, size=int(mask.sum()))]
        alleles[mask] = haps[rows, cols[np.nonzero(mask)[2]]]
    return alleles.sum(axis=1, dtype=np.int8)


def _simulate_block(
    row: pd.Series,
    subjects: _Subjects,
    weight: float,
    *,
    seed: int,
    model,
    species,
    sim_length: int,
    pool_factor: float,
    min_maf: float,
    max_variants: int,
    min_variants: int,
    missing_rate: float,
    n_panel: int,
    lineage_tags: int,
) -> _Block:
    import msprime

    ss = _seed_sequence(seed, 3, _block_key(row["block_id"]))
    rng = np.random.default_rng(ss)
    span = int(row["end"] - row["start"])
    # Expected haplotype draws per source population, inflated so draws rarely repeat.
    need = 2 * subjects.fractions.sum(axis=0)
    n_diploid = {p: max(20, int(np.ceil(pool_factor * need[j] / 2))) for j, p in enumerate(SOURCE_POPULATIONS)}
    recomb = species.genome.get_chromosome(str(row["chrom"])).recombination_rate
    # Simulated stretch ~ span / 25, so denser (larger) blocks keep more variants, as real blocks do.
    length = min(span, max(_MIN_SIM_LENGTH, min(sim_length, span // 25)))
    for attempt in range(4):
        attempt_ss = _seed_sequence(seed, 3, _block_key(row["block_id"]), 100 + attempt)
        anc_seed, mut_seed = (int(v) % (2**31 - 2) + 1 for v in attempt_ss.generate_state(2))  # msprime wants >= 1
        ts = msprime.sim_ancestry(
            samples=n_diploid, demography=model.model, sequence_length=length,
            recombination_rate=recomb, random_seed=anc_seed,
        )
        ts = msprime.sim_mutations(ts, rate=model.mutation_rate, model=msprime.BinaryMutationModel(), random_seed=mut_seed)
        haps = ts.genotype_matrix().T.astype(np.int8)  # (haplotypes, sites)
        sites = ts.tables.sites.position.astype(np.int64)
        maf = np.minimum(haps.mean(axis=0), 1 - haps.mean(axis=0))
        keep = maf >= min_maf / 2  # pool filter; the cohort filter comes later
        if (maf >= min_maf).sum() >= 1.25 * min_variants or length >= span:
            break
        length = min(2 * length, span)  # too few common variants: simulate a longer stretch
    haps, sites = haps[:, keep], sites[keep]
    names = [pop.metadata["name"] for pop in ts.populations()]
    hap_pop = np.array(names, dtype=object)[ts.tables.nodes.population[ts.samples()]]

    panel = _panel_draws(haps, hap_pop, subjects.fractions, n_panel, rng)

    is_tag = np.zeros(len(sites), dtype=bool)
    if weight > 0:
        groups = _haplotype_groups(haps, hap_pop, rng)
        # Lineage-defining variants: each group's derived alleles on a deepened
        # stem, as balancing selection keeps HLA class II lineages old and
        # distinct; they make the stratum signal depend on ``weight``, not on
        # how clumpy one simulated genealogy happens to be.
        n_tags = N_STRATA * lineage_tags
        tag_sites = rng.choice(np.setdiff1d(np.arange(int(length)), sites), size=n_tags, replace=False)
        tag_haps = (groups[:, None] == np.repeat(np.arange(N_STRATA), lineage_tags)[None, :]).astype(np.int8)
        order = np.argsort(np.concatenate([sites, tag_sites]), kind="stable")
        haps = np.concatenate([haps, tag_haps], axis=1)[:, order]
        sites = np.concatenate([sites, tag_sites])[order]
        is_tag = np.concatenate([is_tag, np.ones(n_tags, dtype=bool)])[order]
    else:
        groups = np.zeros(len(haps), dtype=np.int64)
    pools = {
        (p, g): _Pool(np.flatnonzero((hap_pop == p) & (groups == g)), rng)
        for p in SOURCE_POPULATIONS for g in range(N_STRATA) if ((hap_pop == p) & (groups == g)).any()
    }
    group_share = {p: np.bincount(groups[hap_pop == p], minlength=N_STRATA) / (hap_pop == p).sum() for p in SOURCE_POPULATIONS}

    n = len(subjects.ids)
    cum = np.cumsum(subjects.fractions, axis=1)
    source = (rng.random((n, 2, 1)) > cum[:, None, :-1]).sum(axis=2)  # per haplotype source population
    to_group = rng.random((n, 2)) < weight
    whole = rng.random((n, 2))
    chosen = np.empty((n, 2), dtype=np.int64)
    for i in range(n):
        for c in range(2):
            p = SOURCE_POPULATIONS[source[i, c]]
            if to_group[i, c] and (p, subjects.stratum[i]) in pools:
                g = subjects.stratum[i]
            else:
                # A draw from the whole pool = pick a group by its share, then its queue.
                g = int(np.searchsorted(np.cumsum(group_share[p]), whole[i, c], side="right"))
                g = min(g, N_STRATA - 1)
                while (p, g) not in pools:
                    g = (g + 1) % N_STRATA
            chosen[i, c] = pools[(p, g)].draw()
    genotypes = haps[chosen[:, 0]] + haps[chosen[:, 1]]

    freq = genotypes.mean(axis=0) / 2
    common = np.flatnonzero(np.minimum(freq, 1 - freq) >= min_maf)
    tags, others = common[is_tag[common]], common[~is_tag[common]]
    budget = max(max_variants - tags.size, 0)
    if others.size > budget:
        # Even thinning keeps the spread of LD along the block; lineage tags are always kept.
        others = others[np.round(np.linspace(0, others.size - 1, budget)).astype(int)]
    cols = np.sort(np.concatenate([tags, others]))
    genotypes = np.ascontiguousarray(genotypes[:, cols])
    positions = int(row["start"]) + 1 + np.floor(sites[cols] * (span / length)).astype(np.int64)
    if missing_rate > 0:
        genotypes[rng.random(genotypes.shape) < missing_rate] = -1
    bases = np.array(list("ACGT"))
    ref = rng.integers(0, 4, size=cols.size)
    alt = (ref + rng.integers(1, 4, size=cols.size)) % 4
    return _Block(genotypes, positions, np.stack([bases[ref], bases[alt]], axis=1), panel)


# --------------------------------------------------------------------------- cohort-level


def _genotype_pcs(blocks: Sequence[np.ndarray], n_pcs: int) -> np.ndarray:
    """Top principal components (unit-norm eigenvectors, PLINK style) of the blocks' columns together."""
    from scipy.sparse.linalg import eigsh

    x = np.concatenate([_standardize(g) for g in blocks], axis=1)
    n = x.shape[0]
    k = min(n_pcs, n - 2, x.shape[1])
    # Lanczos on the subjects' Gram matrix: only the top k are needed, and a
    # fixed start vector keeps reruns identical.
    values, vectors = eigsh(x @ x.T, k=k, v0=np.ones(n), tol=1e-10)
    u = vectors[:, np.argsort(values)[::-1]]
    # Fix signs (largest-magnitude entry positive) so the output is canonical.
    flip = np.sign(u[np.abs(u).argmax(axis=0), np.arange(k)])
    return u * flip


def _phenotypes(subjects: _Subjects, features: Mapping[str, np.ndarray], rng: np.random.Generator) -> pd.DataFrame:
    n = len(subjects.ids)
    age = rng.integers(18, 76, size=n)
    sex = rng.integers(0, 2, size=n)
    latent = {}
    for trait in _NOISE_SD:
        shift = subjects.fractions @ np.array(_ANCESTRY_SHIFT[trait])
        genetic = sum(
            (b * _NOISE_SD[trait] * features[locus] for t, locus, b in _EFFECTS if t == trait), np.zeros(n)
        )
        latent[trait] = shift + genetic
    ige = np.exp(np.log(60.0) + latent["ige"] + 0.15 * sex - 0.006 * (age - 45) + rng.normal(0, _NOISE_SD["ige"], n))
    eos = np.exp(np.log(200.0) + latent["eosinophils"] + 0.05 * sex + rng.normal(0, _NOISE_SD["eosinophils"], n))
    fev1 = 4.0 - 0.028 * (age - 20) + 0.9 * sex + latent["fev1"] + rng.normal(0, _NOISE_SD["fev1"], n)
    fev1 = np.maximum(fev1, 0.5)  # physiological floor
    # Negative binomial as a gamma-Poisson mixture (dispersion 2).
    rate = np.exp(np.log(0.7) + latent["exacerbations"] + 0.005 * (age - 45) - 0.15 * sex)
    exac = rng.poisson(rate * rng.gamma(2.0, 1 / 2.0, n))
    return pd.DataFrame({
        "subject_id": subjects.ids,
        "age": age,
        "sex": sex,
        "ige": np.round(ige, 3),
        "eosinophils": np.round(eos, 1),
        "fev1": np.round(fev1, 3),
        "exacerbations": exac,
    })


def _truth(
    *, seed: int, subjects: _Subjects, blocks: pd.DataFrame, locus_blocks: dict, weights: dict,
    weak_block: str, model_id: str, n_panel: int, parameters: dict,
) -> dict:
    """The ``truth.json`` content (keys of docs/design.md first, then extras)."""
    effects = [
        {"block": locus_blocks[locus], "locus": locus, "phenotype": trait,
         "beta": float(b) if trait == "exacerbations" else float(b * _NOISE_SD[trait]),
         "beta_std": float(b), "scale": _SCALE[trait]}
        for trait, locus, b in _EFFECTS
    ]
    strong = [locus_blocks["HLA_DRDQ"], locus_blocks["HLA_DP"]]
    weak = [locus_blocks[weak_block]]
    effect_blocks = {e["block"] for e in effects}
    populations = [*SOURCE_POPULATIONS, ADMIXED]
    return {
        "seed": int(seed),
        "n_subjects": len(subjects.ids),
        "build": "hg19",
        "n_strata": N_STRATA,
        "strong_structure_blocks": strong,
        "weak_structure_blocks": weak,
        "structure_blocks": strong + weak,
        "background_blocks": blocks.loc[blocks["locus"] == "", "block_id"].tolist(),
        "locus_blocks": locus_blocks,
        "effects": effects,
        "null_blocks": [b for b in blocks["block_id"] if b not in effect_blocks and b not in strong + weak],
        "populations": populations,
        # Extras beyond the contract, for readers that want the mechanism.
        "population_counts": {p: int((subjects.population == p).sum()) for p in populations},
        "structure_weights": {locus_blocks[k]: float(w) for k, w in weights.items()},
        "effect_feature": ("block PC1 (simulate.block_pc1) residualized on the admixture fractions and "
                           "standardized: effects act within ancestry, confounding comes from the population shifts"),
        "note": ("the ige effect of HLA_DRDQ lies along its stratum axis, so the other structure blocks, which share "
                 "the stratum, associate with ige too: they are neither planted effects nor null blocks"),
        "eigenvec_source": (f"{n_panel} unlinked common SNPs drawn per SNP from the blocks' haplotype pools "
                            "(an LD-pruned-like panel, not written as blocks)"),
        "demographic_model": f"stdpopsim HomSap {model_id}",
        "parameters": parameters,
    }


def _variants_table(block_id: str, chrom: str, block: _Block) -> pd.DataFrame:
    return pd.DataFrame({
        "block_id": block_id,
        "variant_id": [f"{block_id}:{i}" for i in range(len(block.positions))],
        "chrom": chrom,
        "pos": block.positions,
        "ref": block.alleles[:, 0],
        "alt": block.alleles[:, 1],
    })


def _clear_previous(out_dir: Path, overwrite: bool) -> None:
    if not (out_dir / MANIFEST).exists():
        return
    # A simulated cohort (it has truth.json) is simply replaced; anything else needs consent.
    if not overwrite and not (out_dir / TRUTH_JSON).exists():
        raise FileExistsError(
            f"{out_dir} holds a cohort that was not simulated ({MANIFEST} without {TRUTH_JSON}); "
            "pass overwrite=True (CLI: --overwrite) to replace it"
        )
    (out_dir / MANIFEST).unlink()  # first: a folder without manifest is never trusted
    for name in (SUBJECTS, PHENOTYPES, SETTINGS, EIGENVEC, TRUTH_JSON, TRUTH_SUBJECTS, VARIANTS):
        (out_dir / name).unlink(missing_ok=True)
    shutil.rmtree(out_dir / "blocks", ignore_errors=True)


def simulate_cohort(
    out_dir: str | Path,
    *,
    n_subjects: int = 1200,
    n_background_blocks: int = 24,
    seed: int = 20261121,
    max_variants: int = 160,
    min_variants: int = 40,
    min_maf: float = 0.02,
    missing_rate: float = 0.005,
    strong_weight: float = 0.85,
    weak_weight: float = 0.45,
    weak_block: str = "PDE4D_1",
    population_fractions: Mapping[str, float] | None = None,
    sim_length: int = 100_000,
    pool_factor: float = 1.5,
    n_pc_snps: int = 4000,
    lineage_tags: int = 6,
    n_threads: int | None = 1,
    overwrite: bool = False,
) -> SimulatedCohort:
    """Simulate a demo cohort with planted truth and write it in the original layout.

    Parameters
    ----------
    out_dir : str or Path
        Cohort folder to write (``manifest.tsv``, ``subjects.tsv``,
        ``phenotypes.csv``, ``pcs.eigenvec``, ``cohort.json``, ``blocks/*.npy``,
        plus ``variants.tsv``, ``truth.json`` and ``truth_subjects.tsv``).
    n_subjects : int, default 1200
        Number of subjects.
    n_background_blocks : int, default 24
        Background blocks besides the 8 locus blocks, spread over the genome.
    seed : int, default 20261121
        Master seed; same seed and parameters give byte-identical block arrays.
    max_variants : int, default 160
        Cap on variants per block (evenly thinned after the MAF filter).
    min_variants : int, default 40
        A block's simulated stretch is lengthened (up to its real span) until
        the pool has about this many common variants.
    min_maf : float, default 0.02
        Variants with cohort minor allele frequency below this are dropped.
    missing_rate : float, default 0.005
        Fraction of genotype calls set to -1, so missingness code paths run.
    strong_weight, weak_weight : float, default 0.85, 0.45
        Probability that a haplotype is drawn from the subject's stratum group
        in the HLA class II blocks (strong) and in ``weak_block`` (weak).
    weak_block : {"PDE4D_1", "PDE4D_2"}, default "PDE4D_1"
        The PDE4D block that carries weak stratum structure.
    population_fractions : mapping, optional
        Share of subjects per population among AFR, EUR, ASIA and ADMIX;
        default :data:`DEFAULT_POPULATION_FRACTIONS`.
    sim_length : int, default 100_000
        Most base pairs simulated per block; a block gets span / 25 within
        [20 kb, sim_length] (lengthened while it has too few common variants)
        and its variant positions are stretched onto the real span.
    pool_factor : float, default 1.5
        Haplotype pool size per population relative to the draws it serves.
    n_pc_snps : int, default 4000
        Size of the unlinked ancestry panel behind ``pcs.eigenvec`` (spread
        over the blocks' pools; it is not written as genotypes).
    lineage_tags : int, default 6
        Lineage-defining variants added per stratum group in each structure
        block (a deepened stem branch of the group's haplotypes).
    n_threads : int or None, default 1
        BLAS/OpenMP threads while simulating (None: the libraries' default).
    overwrite : bool, default False
        Replace a cohort in ``out_dir`` that was not simulated (a previously
        simulated cohort, recognised by its ``truth.json``, is always replaced).

    Returns
    -------
    SimulatedCohort
    """
    started = time.perf_counter()
    fractions = dict(DEFAULT_POPULATION_FRACTIONS if population_fractions is None else population_fractions)
    unknown = set(fractions) - set(SOURCE_POPULATIONS) - {ADMIXED}
    if unknown or not fractions or any(v < 0 for v in fractions.values()) or sum(fractions.values()) <= 0:
        raise ValueError(f"population_fractions must map some of {[*SOURCE_POPULATIONS, ADMIXED]} to non-negative shares, got {fractions}")
    if n_subjects < 30:
        raise ValueError(f"n_subjects must be >= 30, got {n_subjects}")
    if not 0 <= missing_rate < 0.5:
        raise ValueError(f"missing_rate must be in [0, 0.5), got {missing_rate}")
    if not 0 < min_maf < 0.5:
        raise ValueError(f"min_maf must be in (0, 0.5), got {min_maf}")
    if not (0 <= weak_weight <= 1 and 0 <= strong_weight <= 1):
        raise ValueError(f"strong_weight and weak_weight must be in [0, 1], got {strong_weight}, {weak_weight}")
    if weak_block not in ("PDE4D_1", "PDE4D_2"):
        raise ValueError(f"weak_block must be 'PDE4D_1' or 'PDE4D_2', got {weak_block!r}")
    if max_variants < 2 or min_variants < 1 or sim_length < 1000 or pool_factor < 1 or lineage_tags < 0 or n_pc_snps < 0:
        raise ValueError("need max_variants >= 2, min_variants >= 1, sim_length >= 1000, pool_factor >= 1, lineage_tags >= 0, n_pc_snps >= 0")

    from threadpoolctl import threadpool_limits

    # Single-threaded BLAS/OpenMP by default: the matrices are small and extra
    # threads mostly spin-wait on a shared machine (3x slower measured).
    with threadpool_limits(limits=n_threads):
        out_dir = Path(out_dir)
        _clear_previous(out_dir, overwrite)
        species, model = _demography()
        blocks = select_demo_blocks(n_background_blocks)
        subjects = _make_subjects(n_subjects, fractions, np.random.default_rng(_seed_sequence(seed, 1)))
        weights = {"HLA_DRDQ": strong_weight, "HLA_DP": strong_weight, weak_block: weak_weight}

        simulated: dict[str, _Block] = {}
        for _, row in blocks.iterrows():
            simulated[row["block_id"]] = _simulate_block(
                row, subjects, weights.get(row["locus"], 0.0), seed=seed, model=model, species=species,
                sim_length=sim_length, pool_factor=pool_factor, min_maf=min_maf, max_variants=max_variants,
                min_variants=min_variants, missing_rate=missing_rate, n_panel=int(np.ceil(n_pc_snps / len(blocks))),
                lineage_tags=lineage_tags,
            )

        locus_blocks = {row["locus"]: row["block_id"] for _, row in blocks.iterrows() if row["locus"]}
        locus_blocks = {k: locus_blocks[k] for k in LOCUS_KEYS}
        # Ancestry PCs come from the unlinked panel, as real PCs come from genome-wide LD-pruned SNPs.
        pcs = _genotype_pcs([blk.panel for blk in simulated.values()], N_PCS)
        eigenvec = pd.DataFrame(np.round(pcs, 8), columns=[f"PC{i + 1}" for i in range(pcs.shape[1])])
        eigenvec.insert(0, "subject_id", subjects.ids)

        features = {locus: _within_ancestry(block_pc1(simulated[bid].genotypes), subjects.fractions)
                    for locus, bid in locus_blocks.items()}
        phenotypes = _phenotypes(subjects, features, np.random.default_rng(_seed_sequence(seed, 2)))

        truth = _truth(
            seed=seed, subjects=subjects, blocks=blocks, locus_blocks=locus_blocks, weights=weights,
            weak_block=weak_block, model_id=model.id, n_panel=sum(blk.panel.shape[1] for blk in simulated.values()),
            parameters={
                "max_variants": max_variants, "min_variants": min_variants, "min_maf": min_maf,
                "missing_rate": missing_rate, "sim_length": sim_length, "pool_factor": pool_factor,
                "n_pc_snps": n_pc_snps, "lineage_tags": lineage_tags, "population_fractions": fractions,
            },
        )
        truth_subjects = pd.DataFrame({
            "subject_id": subjects.ids,
            "population": subjects.population,
            "stratum": subjects.stratum,
            **{f"frac_{p}": np.round(subjects.fractions[:, j], 6) for j, p in enumerate(SOURCE_POPULATIONS)},
        })
        variants = pd.concat(
            [_variants_table(bid, str(chrom), simulated[bid]) for bid, chrom in zip(blocks["block_id"], blocks["chrom"])],
            ignore_index=True,
        )

        # Truth and variants first: write_cohort writes the manifest last, which marks the folder finished.
        out_dir.mkdir(parents=True, exist_ok=True)
        storage.write_json(out_dir / TRUTH_JSON, truth)
        storage.write_tsv(out_dir / TRUTH_SUBJECTS, truth_subjects)
        storage.write_tsv(out_dir / VARIANTS, variants)
        write_cohort(
            out_dir, subjects.ids,
            (BlockArray(row["block_id"], str(row["chrom"]), int(row["start"]), int(row["end"]), simulated[row["block_id"]].genotypes)
             for _, row in blocks.iterrows()),
            phenotypes=phenotypes, eigenvec=eigenvec, settings={"build": "hg19"},
        )
        return SimulatedCohort(
            out_dir=out_dir,
            manifest_path=out_dir / MANIFEST,
            subjects_path=out_dir / SUBJECTS,
            phenotypes_path=out_dir / PHENOTYPES,
            eigenvec_path=out_dir / EIGENVEC,
            variants_path=out_dir / VARIANTS,
            truth_path=out_dir / TRUTH_JSON,
            truth_subjects_path=out_dir / TRUTH_SUBJECTS,
            truth=truth,
            elapsed_s=time.perf_counter() - started,
        )


def read_truth(folder: str | Path) -> tuple[dict, pd.DataFrame]:
    """Read ``truth.json`` and ``truth_subjects.tsv`` of a simulated cohort."""
    import json

    folder = Path(folder)
    truth = json.loads((folder / TRUTH_JSON).read_text())
    subjects = pd.read_csv(folder / TRUTH_SUBJECTS, sep="\t", dtype={"subject_id": str, "population": str})
    return truth, subjects


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m genoembed_assets.genotypes.simulate",
        description="Write a deterministic simulated cohort with planted truth (original layout).",
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--n-subjects", type=int, default=1200)
    parser.add_argument("--n-background-blocks", type=int, default=24)
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument("--max-variants", type=int, default=160)
    parser.add_argument("--missing-rate", type=float, default=0.005)
    parser.add_argument("--overwrite", action="store_true", help="replace a non-simulated cohort already in OUT_DIR")
    args = parser.parse_args(argv)
    cohort = simulate_cohort(
        args.out_dir, n_subjects=args.n_subjects, n_background_blocks=args.n_background_blocks,
        seed=args.seed, max_variants=args.max_variants, missing_rate=args.missing_rate, overwrite=args.overwrite,
    )
    manifest = pd.read_csv(cohort.manifest_path, sep="\t")
    truth = cohort.truth
    print(f"wrote {truth['n_subjects']} subjects x {len(manifest)} blocks "
          f"({int(manifest['n_snps'].sum())} variants) to {cohort.out_dir} in {cohort.elapsed_s:.1f} s")
    print("populations: " + ", ".join(f"{k}={v}" for k, v in truth["population_counts"].items()))
    print("locus blocks: " + ", ".join(f"{k}={v}" for k, v in truth["locus_blocks"].items()))
    print(f"structure blocks: strong {truth['strong_structure_blocks']}, weak {truth['weak_structure_blocks']}")
    print(f"files: {', '.join(sorted(p.name for p in cohort.out_dir.iterdir() if p.is_file()))}, blocks/*.npy")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
