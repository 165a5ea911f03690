"""Subjects and block genotypes: msprime under a stdpopsim model, haplotype pools, strata.

Each LD block is simulated independently on a shorter sequence (span / 25,
20-100 kb) and its variants are stretched onto the block's real hg19 span.
Per block, each source population gets a pool of haplotypes larger than
needed. In structure blocks the pooled haplotypes are split into
:data:`N_STRATA` groups by k-means on their top principal components after
centring within population (so a group means the same haplotype direction in
every population), and each group gets a few lineage-defining variants. A
subject of stratum ``s`` takes each of its two haplotypes from group ``s``
with probability ``weight`` and otherwise from the whole pool of its
(per-haplotype) source population.
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from .config import Demography
from .pca import top_axes

__all__ = ["N_STRATA", "Block", "Subjects", "load_model", "make_subjects", "seed_sequence", "simulate_block"]

N_STRATA = 3
_ADMIX_CONCENTRATION = 8.0  # Dirichlet concentration: individual fractions vary around the mean
_MIN_SIM_LENGTH = 20_000


def seed_sequence(seed: int, *key: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(entropy=seed, spawn_key=key)


def block_key(block_id: str) -> int:
    # Stable across runs and platforms (unlike hash()).
    return zlib.crc32(block_id.encode())


def load_model(demography: Demography):
    """``(species, model)`` from stdpopsim; imported lazily (slow import, only needed to simulate)."""
    import stdpopsim

    species = stdpopsim.get_species("HomSap")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # older stdpopsim only knows deprecated names (4B11)
        for model_id in (demography.model_id, *demography.aliases):
            try:
                return species, species.get_demographic_model(model_id)
            except ValueError:
                continue
    raise ValueError(f"the installed stdpopsim {stdpopsim.__version__} has no HomSap model {demography.model_id!r}")


@dataclass(frozen=True)
class Subjects:
    ids: np.ndarray
    population: np.ndarray  # names: a source population or the admixed one
    stratum: np.ndarray
    fractions: np.ndarray  # (n, sources): per-subject ancestry over the demography's sources


def make_subjects(n: int, fractions: Mapping[str, float], demography: Demography, rng: np.random.Generator,
                  *, strata: bool = True) -> Subjects:
    """Subjects with populations (shares ``fractions``), strata and admixture fractions.

    Strata are balanced within each population, hence independent of ancestry.
    With ``strata=False`` every stratum is 0 (the draws are still made, so the
    populations and fractions match the cohort with strata).
    """
    names = list(fractions)
    share = np.array([fractions[k] for k in names], dtype=float)
    share = share / share.sum()
    counts = np.floor(share * n).astype(int)
    # Largest remainder so the counts add up to n exactly.
    counts[np.argsort(-(share * n - counts), kind="stable")[: n - counts.sum()]] += 1
    population = rng.permutation(np.repeat(np.array(names, dtype=object), counts))
    stratum = np.empty(n, dtype=np.int64)
    for name in names:
        idx = np.flatnonzero(population == name)
        stratum[idx] = rng.permutation(np.arange(len(idx)) % N_STRATA)
    if not strata:
        stratum[:] = 0
    frac = np.zeros((n, len(demography.sources)))
    for j, name in enumerate(demography.sources):
        frac[population == name, j] = 1.0
    admixed = np.flatnonzero(population == demography.admixed) if demography.admixed else np.array([], dtype=int)
    if admixed.size:
        frac[admixed] = rng.dirichlet(_ADMIX_CONCENTRATION * np.array(demography.admix_mean), size=admixed.size)
    width = max(5, len(str(n)))
    ids = np.array([f"SIM{i + 1:0{width}d}" for i in range(n)], dtype=object)
    return Subjects(ids, population, stratum, frac)


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


def _haplotype_groups(haps: np.ndarray, pop: np.ndarray, rng: np.random.Generator, *, balanced: bool = False) -> np.ndarray:
    """Split pool haplotypes into N_STRATA groups shared across populations.

    Centring within population removes the ancestry axis, so the groups are
    haplotype clades found in every population rather than the populations.
    ``balanced``: each population's haplotypes are then reassigned to the
    nearest k-means centre under equal quotas (see :func:`_balance`).
    """
    x = haps.astype(np.float64)
    for p in np.unique(pop):
        x[pop == p] -= x[pop == p].mean(axis=0)
    scores = x @ top_axes(x, 3)
    labels = _kmeans(scores, N_STRATA, rng)
    if balanced:
        labels = _balance(scores, labels, pop)
    # Order groups by their mean on the first component so labels are stable.
    order = np.argsort([scores[labels == j, 0].mean() if (labels == j).any() else 0.0 for j in range(N_STRATA)])
    return np.argsort(order)[labels]


def _balance(scores: np.ndarray, labels: np.ndarray, pop: np.ndarray) -> np.ndarray:
    """Equal-sized groups within each population, each haplotype as near its k-means centre as quotas allow.

    Why: a draw from the whole pool lands in a group with the group's share, so
    with k-means groups of, say, 7 % and 50 % of a population the stratum of the
    large group is barely identifiable and the stratum signal depends on how
    clumpy one genealogy is (seed 9105 at strength 0.8: a haplotype-group oracle
    reaches ARI 0.78). With equal shares it is set by ``weight`` alone.
    Greedy: while a group is over its quota, the haplotype of an over-full group
    whose move to an under-full group costs the least squared distance moves;
    haplotypes of groups within their quota never move. Deterministic (no random
    draws), so the rest of the simulation's stream is unchanged.
    """
    centres = np.array([scores[labels == j].mean(axis=0) if (labels == j).any() else np.full(scores.shape[1], np.inf)
                        for j in range(N_STRATA)])
    dist = ((scores[:, None, :] - centres[None]) ** 2).sum(axis=2)
    out = labels.copy()
    for p in np.unique(pop):
        rows = np.flatnonzero(pop == p)
        quota = np.full(N_STRATA, len(rows) // N_STRATA) + (np.arange(N_STRATA) < len(rows) % N_STRATA)
        own = out[rows]
        d = np.where(np.isfinite(dist[rows]), dist[rows], 1e300)
        while True:
            counts = np.bincount(own, minlength=N_STRATA)
            over, under = counts > quota, counts < quota
            if not over.any():
                break
            cost = d - d[np.arange(len(rows)), own][:, None]
            cost[~over[own]] = np.inf
            cost[:, ~under] = np.inf
            i, j = np.unravel_index(np.argmin(cost), cost.shape)
            own[i] = j
        out[rows] = own
    return out


def stratum_loglik(groups: np.ndarray, hap_pop: np.ndarray, chosen: np.ndarray, sources: tuple[str, ...],
                   weight: float) -> np.ndarray:
    """log P(the groups of each subject's two haplotypes | stratum s), (subjects, N_STRATA).

    The exact likelihood of :func:`_draw_haplotypes`: a haplotype of source
    population ``p`` comes from group ``s`` with probability ``weight`` (when
    ``p`` has haplotypes of group ``s``) and otherwise from the whole pool,
    where group ``g`` has its share of ``p``'s haplotypes. Summed over blocks it
    is what an oracle that sees every haplotype's group knows of the stratum.
    """
    counts = np.stack([np.bincount(groups[hap_pop == p], minlength=N_STRATA) for p in sources]).astype(np.float64)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)  # (sources, groups)
    # an own-group draw needs the population to hold that group (else _draw_haplotypes falls back to the pool)
    to_group = np.where(share > 0, weight, 0.0)  # (sources, strata)
    pop_index = {p: i for i, p in enumerate(sources)}
    source = np.vectorize(pop_index.__getitem__, otypes=[np.int64])(hap_pop[chosen])  # (subjects, 2)
    group = groups[chosen]
    own = group[..., None] == np.arange(N_STRATA)  # (subjects, 2, strata)
    w = to_group[source]  # (subjects, 2, strata)
    p = (1 - w) * share[source, group][..., None] + w * own
    return np.log(np.maximum(p, 1e-12)).sum(axis=1)


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
class Block:
    genotypes: np.ndarray  # int8, with missing
    positions: np.ndarray  # 1-based
    alleles: np.ndarray  # (variants, 2) str
    panel: np.ndarray  # int8 (subjects, k): unlinked ancestry SNPs for the PCs, see _panel_draws
    stratum_loglik: np.ndarray | None = None  # (subjects, N_STRATA) in structure blocks, see stratum_loglik


def _panel_draws(haps: np.ndarray, hap_pop: np.ndarray, fractions: np.ndarray, sources: tuple[str, ...], k: int,
                 rng: np.random.Generator) -> np.ndarray:
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
    for j, p in enumerate(sources):
        members = np.flatnonzero(hap_pop == p)
        mask = source == j
        if not mask.any():
            continue
        rows = members[rng.integers(0, members.size, size=int(mask.sum()))]
        alleles[mask] = haps[rows, cols[np.nonzero(mask)[2]]]
    return alleles.sum(axis=1, dtype=np.int8)


def _simulate_pool(row: pd.Series, n_diploid: dict, *, seed: int, model, species, sim_length: int,
                   min_maf: float, min_variants: int):
    """Pool haplotypes (haplotypes x sites), site positions, their populations and the simulated length."""
    import msprime

    span = int(row["end"] - row["start"])
    recomb = species.genome.get_chromosome(str(row["chrom"])).recombination_rate
    # Simulated stretch ~ span / 25, so denser (larger) blocks keep more variants, as real blocks do.
    length = min(span, max(_MIN_SIM_LENGTH, min(sim_length, span // 25)))
    for attempt in range(4):
        attempt_ss = seed_sequence(seed, 3, block_key(row["block_id"]), 100 + attempt)
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
    names = [pop.metadata["name"] for pop in ts.populations()]
    hap_pop = np.array(names, dtype=object)[ts.tables.nodes.population[ts.samples()]]
    return haps[:, keep], sites[keep], hap_pop, length


def _draw_haplotypes(subjects: Subjects, sources: tuple[str, ...], hap_pop: np.ndarray, groups: np.ndarray,
                     weight: float, rng: np.random.Generator) -> np.ndarray:
    """Pool row of each subject's two haplotypes, (subjects, 2)."""
    pools = {
        (p, g): _Pool(np.flatnonzero((hap_pop == p) & (groups == g)), rng)
        for p in sources for g in range(N_STRATA) if ((hap_pop == p) & (groups == g)).any()
    }
    group_cum = {p: np.cumsum(np.bincount(groups[hap_pop == p], minlength=N_STRATA) / (hap_pop == p).sum())
                 for p in sources}
    n = len(subjects.ids)
    cum = np.cumsum(subjects.fractions, axis=1)
    source = (rng.random((n, 2, 1)) > cum[:, None, :-1]).sum(axis=2)  # per haplotype source population
    to_group = rng.random((n, 2)) < weight
    whole = rng.random((n, 2))
    chosen = np.empty((n, 2), dtype=np.int64)
    for i in range(n):
        for c in range(2):
            p = sources[source[i, c]]
            if to_group[i, c] and (p, subjects.stratum[i]) in pools:
                g = subjects.stratum[i]
            else:
                # A draw from the whole pool = pick a group by its share, then its queue.
                g = min(int(np.searchsorted(group_cum[p], whole[i, c], side="right")), N_STRATA - 1)
                while (p, g) not in pools:
                    g = (g + 1) % N_STRATA
            chosen[i, c] = pools[(p, g)].draw()
    return chosen


def simulate_block(
    row: pd.Series,
    subjects: Subjects,
    weight: float,
    *,
    demography: Demography,
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
    balanced_groups: bool = False,
) -> Block:
    """One block's cohort genotypes; ``weight`` > 0 plants the subject stratum in it."""
    sources = demography.sources
    rng = np.random.default_rng(seed_sequence(seed, 3, block_key(row["block_id"])))
    span = int(row["end"] - row["start"])
    # Expected haplotype draws per source population, inflated so draws rarely repeat.
    need = 2 * subjects.fractions.sum(axis=0)
    n_diploid = {p: max(20, int(np.ceil(pool_factor * need[j] / 2))) for j, p in enumerate(sources)}
    haps, sites, hap_pop, length = _simulate_pool(row, n_diploid, seed=seed, model=model, species=species,
                                                  sim_length=sim_length, min_maf=min_maf, min_variants=min_variants)

    panel = _panel_draws(haps, hap_pop, subjects.fractions, sources, n_panel, rng)

    is_tag = np.zeros(len(sites), dtype=bool)
    if weight > 0:
        groups = _haplotype_groups(haps, hap_pop, rng, balanced=balanced_groups)
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
    chosen = _draw_haplotypes(subjects, sources, hap_pop, groups, weight, rng)
    loglik = stratum_loglik(groups, hap_pop, chosen, sources, weight) if weight > 0 else None
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
    return Block(genotypes, positions, np.stack([bases[ref], bases[alt]], axis=1), panel, loglik)
