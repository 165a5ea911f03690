"""Phase a block's genotypes and fill its missing calls by haplotype copying (pure numpy + numba).

Genotype-level rules (the LD-neighbour rule, the block VAE, their blend) read a
missing call from the *genotypes* of correlated variants and plateau at 0.98
concordance on the 1000 Genomes chr20 panels. Beagle reaches 0.99 because it
works on *haplotypes*: it phases, and each haplotype is a mosaic of others (Li &
Stephens 2003). This module is a small version of that model:

1. each subject's two haplotypes start from its genotypes: homozygous calls
   fixed, heterozygous phase drawn at random, missing alleles drawn from the
   allele frequency;
2. per iteration, in windows of ``window`` markers (+ ``overlap`` a side), every
   haplotype takes the ``states`` haplotypes of other subjects closest in
   Hamming distance (one BLAS product per window), and a haploid Li-Stephens
   HMM over them (forward-backward, compiled with numba, parallel over
   haplotypes) gives each allele's ALT probability leaving that marker out
   (:func:`._copying_kernels._copy_kernel`); a heterozygous call puts ALT on the haplotype
   predicting it better, a missing allele takes the likelier one;
3. that leave-out rule mends isolated phase errors but not switch errors (each
   side of a switch copies well on its own), so the last ``refine`` iterations
   also re-decide, at every heterozygous call, whether to swap everything to
   its right between the two haplotypes (:func:`._copying_kernels._junction_kernel`);
   these iterations run over the markers of MAF >= ``phase_maf`` only (60% of
   chr20's markers are below 1%); two passes over every marker then phase the
   rare heterozygotes from them (Beagle 5 also phases rare variants after the
   common ones);
4. a final pass over every marker, with more states (256) over wider windows (800 markers + 200
   a side) and its switch rate fitted to the observed alleles
   (:func:`_calibrated_rates`), gives a missing call's genotype probabilities
   from its two haplotypes' ALT probabilities p1, p2:
   GP = ((1-p1)(1-p2), p1(1-p2) + (1-p1)p2, p1 p2);
5. :func:`copying_gp` averages the GP of ``runs`` such phasings, each from its
   own random start with its windows shifted (one phasing's errors are its own).

Measured (docs/benchmarks.md): on the chr20 panels alone 0.986 concordance,
above the LD rule's 0.980, and averaged with the rule (engine ``hap``) 0.987,
against Beagle's 0.990. Steps that got there, copying alone: 0.977 (24 states,
windows of 160 markers, ne 100,000), 0.980 (32 states, 400 markers), 0.984
(+ junction passes), 0.986 (64 states, ne 20,000). Switch errors between
heterozygous calls of the 300 phased chr20 samples: 2.6% (8.9% without the
junction passes); 5.5% on the mosaic cohort of the tests. The settings were
chosen on chr20 and checked on two simulated cohorts never tuned on, where the
last step helped more (OutOfAfrica_3G09: 0.978 -> 0.987 alone, 0.985 -> 0.988
averaged, against the rule's 0.982).

Averaging runs (chr20, copying alone): 0.986 (1 run), 0.988 (2), 0.989 (4).
The wider final pass and cheaper early iterations (8 iterations, the first
three with 16 states, the next two with 32) then moved one run from 0.9870 to
0.9893 on chr20's first 6,000 markers, in about the same time, and 2 runs on
all of chr20 to 0.9894 (0.9899 mixed with the rule). On the simulated cohorts,
one run mixed: OutOfAfrica_3G09 0.9882 -> 0.9925, AmericanAdmixture_4B18
0.9844 -> 0.9905; fitting the final switch rate then gave 0.9946 and 0.9925
(chr20 keeps the prior rate).

Phasing on markers of MAF >= 0.005 only (then two passes for the rare
heterozygotes) took chr20, 2 runs, from 88 to 51 s at the same concordance
(0.9899 mixed with the rule); on two simulated cohorts with rare variants
kept, -0.0002 and +0.0003. Single precision emissions without branches (so
the loops over states vectorize) made the final pass's kernel 1.37x faster.
Running the final pass over the common markers too lost 0.0017 there: the
rare alleles a haplotype shares tell its copy apart.

The phasing iterations with all states fit their switch rate too (once, on
the phase the cheap iterations reached): on three simulated cohorts with rare
variants kept (markers about 10 kb apart), 0.9869 -> 0.9881, 0.9893 -> 0.9901
and 0.9903 -> 0.9917, where Beagle scored 0.9877, 0.9899 and 0.9909; chr20
keeps the prior rate and its calls.

The junction passes swap a subject's haplotypes right of a heterozygous call
but decide only observed alleles; the guesses at its missing calls used to stay
on the old sides, where the next iteration's state selection and the final
pass (as other haplotypes' copied alleles) read them. :func:`_swap_missing`
moves them with the phase. The longer the stretch phased, the more swaps pile
up: copying alone on chr20 phased as one segment 0.9892 -> 0.9901, block by
block 0.9896 -> 0.9897; the mosaic cohort of the tests with 15% of its calls
hidden (1,500 markers) 0.9375 -> 0.944 and 0.936 -> 0.942 (two seeds); on a
simulated cohort of 160-marker blocks within seed noise (AmericanAdmixture_4B18
0.9881 -> 0.9878 at seed 0, 0.9884 -> 0.9885 at seed 7).

Each pass computes the leave-out probabilities its caller reads and no others
(``need`` of :func:`._copying_kernels._copy_kernel`): the phasing iterations
read heterozygous and missing calls, the rare passes the rare ones, the final
pass the missing calls, and a window whose core holds none is not run (a
cohort with few missing calls skips most of the final pass). Same calls on
chr20 (0.9906), 140.1 -> 129.8 s end to end (median of 3, one machine).

Tried and worse: a single shared state set per subject with junction decisions
only, from a random phase (0.93-0.95: it needs the leave-out passes first);
composite states from a PBWT, as Beagle picks them (0.977: exact matches break
at every error of the current phase).
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from ._copying_kernels import _copy_kernel, _junction_kernel

__all__ = ["HaplotypeConfig", "copying_gp", "haplotype_gp", "phase_and_impute"]


@dataclass(frozen=True)
class HaplotypeConfig:
    """Settings of the haplotype-copying model (window and states chosen on chr20, checked on simulations).

    Attributes
    ----------
    states
        Haplotypes each haplotype copies from in a window while phasing. The
        first 3/8 of the iterations use a quarter of them and the next 2/8 half
        (the phase is still mostly random there, and near states found in it are
        no better than a few): on chr20's first 6,000 markers, 6 iterations so
        scored as all at 64 (0.9875 against 0.9870, one seed) in 0.85x the time,
        and two more iterations at that cost then added 0.0005.
    window, overlap
        Markers per window, and markers added on each side as context.
    iterations
        Phase-refinement passes (a final pass then gives the probabilities).
    final_states, final_window, final_overlap
        States and windows of the final pass, which fills the missing calls from
        the phase reached: more states over wider windows than phasing needs,
        because a missing call is read from whoever shares its haplotype longest
        (chr20's first 6,000 markers, one run, mixed with the LD rule: 0.9877
        with 64 states in the phasing windows, 0.9892 with 256 in windows of
        800 + 200 a side).
    refine
        How many of the last iterations (all, when fewer) also re-decide the phase at every
        heterozygous call, swapping right-hand parts (twice the states: both
        haplotypes' sets).
    mismatch
        Probability that a haplotype differs from the one it copies at a marker.
    ne
        Effective population size of the prior switch rate (Beagle's ``ne``).
        The cheap early iterations use it; the iterations with all ``states``
        and the final pass divide it by a factor fitted to the cohort
        (:func:`_calibrated_rates`; chr20 keeps the prior, simulated cohorts
        with sparse markers do not).
    phase_maf
        Markers of lower minor allele frequency sit out the phasing iterations;
        two passes over every marker then phase their heterozygotes, and the
        final pass reads every marker. 0 phases every marker in the iterations.
        chr20, 2 runs: 51 s instead of 88 s, concordance 0.9899 either way;
        0.01 scored as well there but 0.0003-0.0005 lower on simulated cohorts;
        0.02 lost 0.0008 on chr20's first 6,000 markers (its MAF 1-2% calls,
        which are scored, are then phased by the rare passes alone).
    marker_switch
        Switch probability between neighbouring markers when positions are unusable.
    seed
        Seed of the initial phase and alleles (run r uses ``seed + r``).
    runs
        Independent phasings whose genotype probabilities are averaged
        (:func:`copying_gp`); run r starts from its own random phase and shifts
        its windows by ``r * window / runs`` markers.
    """

    states: int = 64
    window: int = 400
    overlap: int = 100
    iterations: int = 8
    final_states: int = 256
    final_window: int = 800
    final_overlap: int = 200
    mismatch: float = 0.002
    ne: float = 20_000.0
    marker_switch: float = 0.02
    refine: int = 4
    seed: int = 0
    runs: int = 2
    phase_maf: float = 0.005

    def __post_init__(self) -> None:
        for name in ("states", "window", "iterations", "runs", "final_states", "final_window"):
            if getattr(self, name) < 1:
                raise ValueError(f"HaplotypeConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("overlap", "refine", "final_overlap"):
            if getattr(self, name) < 0:
                raise ValueError(f"HaplotypeConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.mismatch < 0.5:
            raise ValueError(f"HaplotypeConfig.mismatch must be in (0, 0.5), got {self.mismatch}")
        if not 0 <= self.phase_maf < 0.5:
            raise ValueError(f"HaplotypeConfig.phase_maf must be in [0, 0.5), got {self.phase_maf}")


def _windows(n: int, window: int, overlap: int, shift: int = 0) -> tuple[np.ndarray, ...]:
    """(lo, hi, core_lo, core_hi): windows tiling n markers, each run over its core and ``overlap`` a side.

    ``shift`` moves every core boundary but the first right by that many markers.
    """
    shift %= window
    core_lo = np.arange(0, n, window, dtype=np.int64) if shift == 0 else \
        np.concatenate([[0], np.arange(shift, n, window)]).astype(np.int64)
    core_hi = np.append(core_lo[1:], n)
    return np.maximum(core_lo - overlap, 0), np.minimum(core_hi + overlap, n), core_lo, core_hi


#: Haplotypes whose distances are computed at once: bounds the distance block at 4096 x 2n floats.
_DISTANCE_ROWS = 4096


def _nearest_states(hap: np.ndarray, lo: np.ndarray, hi: np.ndarray, k: int) -> np.ndarray:
    """Per window, each haplotype's k closest haplotypes of other subjects (Hamming, by GEMM).

    Quadratic in subjects (every pair is compared per window): seconds for a few
    thousand subjects, too slow for biobanks, where a PBWT selection is the route.
    """
    n_hap = hap.shape[0]
    states = np.empty((n_hap, len(lo), k), dtype=np.int32)
    for w, (start, stop) in enumerate(zip(lo, hi)):
        x = hap[:, start:stop].astype(np.float32)
        ones = x.sum(1)
        for first in range(0, n_hap, _DISTANCE_ROWS):
            rows = np.arange(first, min(first + _DISTANCE_ROWS, n_hap))
            dist = ones[rows, None] + ones[None, :] - 2.0 * (x[rows] @ x.T)
            local = rows - first
            dist[local, rows] = np.inf  # a subject's own two haplotypes are not its references
            dist[local, rows ^ 1] = np.inf
            states[rows, w] = np.argpartition(dist, k - 1, axis=1)[:, :k]
    return states


def _phasing_states(iteration: int, config: HaplotypeConfig) -> int:
    """States of a phasing iteration: a quarter of ``config.states`` for the first 3/8, half for the next 2/8."""
    if 8 * iteration < 3 * config.iterations:
        return max(config.states // 4, 1)
    if 8 * iteration < 5 * config.iterations:
        return max(config.states // 2, 1)
    return config.states


def _switch_rates(positions, n_markers: int, config: HaplotypeConfig, n_states: int) -> np.ndarray:
    """Per marker, the probability of switching copied haplotype since the marker before (0 at the first)."""
    rho = np.full(n_markers, config.marker_switch, dtype=np.float32)
    pos = None if positions is None else np.asarray(positions, dtype=np.float64)
    if pos is not None and pos.shape == (n_markers,) and np.isfinite(pos).all() and (np.diff(pos) >= 0).all():
        # Beagle's rate: 1 - exp(-0.04 ne d / n_states), d in cM, 1 cM = 1 Mb
        rho = (1 - np.exp(-0.04 * config.ne * np.diff(pos, prepend=pos[0]) / 1e6 / n_states)).astype(np.float32)
    rho[0] = 0
    return np.clip(rho, 0, 0.5)


#: Haplotypes whose observed alleles score each switch rate of the final pass.
_CALIBRATION_HAPLOTYPES = 128
#: The final pass's switch rate is divided by a power of 2 within these bounds. Never above
#: the phasing's rate: a higher one lets the copying follow the phase errors of the very
#: alleles it is scored on (chr20 then picked 1/8-1/16, and concordance fell 0.9893 -> 0.9890).
_SCALE_BOUNDS = (1.0, 256.0)


def _calibrated_rates(hap, obs, states, windows, rho, config: HaplotypeConfig, longest: int,
                      rng: np.random.Generator) -> np.ndarray:
    """The final pass's switch rates: ``rho`` divided by the power of 2 that best predicts observed alleles.

    One ``ne`` does not fit every cohort (Beagle estimates it by EM): chosen on
    chr20, it switched far too often on simulated cohorts
    (AmericanAdmixture_4B18 picks 2-128 by block, mostly 8-32: one run 0.9905 ->
    0.9925). Each rate's leave-marker-out ALT probabilities, on a sample of
    haplotypes, are scored by the log-likelihood of the alleles observed there;
    from 1 the scale doubles while that improves (a unimodal likelihood: 2-8
    evaluations on a sample of 128 haplotypes).
    """
    rows = np.sort(rng.choice(len(hap), min(len(hap), _CALIBRATION_HAPLOTYPES), replace=False))
    seen, alt = obs[rows] >= 0, obs[rows] == 1
    hap_t, sample_obs, sample_states = np.ascontiguousarray(hap.T), np.ascontiguousarray(obs[rows]), states[rows]
    log_stay = np.log1p(-rho.astype(np.float64))
    scores: dict[float, float] = {}

    def score(scale: float) -> float:
        if scale not in scores:
            out = np.empty(sample_obs.shape, dtype=np.float32)
            _copy_kernel(hap_t, sample_obs, sample_states, *windows, _scaled(log_stay, scale),
                         np.float32(config.mismatch), longest, _EVERY, out)
            scores[scale] = float(np.log(np.where(alt, out, 1 - out)[seen]).sum())
        return scores[scale]

    scale = _SCALE_BOUNDS[0]
    while scale * 2 <= _SCALE_BOUNDS[1] and score(scale * 2) > score(scale):
        scale *= 2
    return _scaled(log_stay, scale)


def _scaled(log_stay: np.ndarray, scale: float) -> np.ndarray:
    """Switch rates whose per-marker stay probability is raised to 1/scale (the rate divided by ``scale``)."""
    return (-np.expm1(log_stay / scale)).astype(np.float32)


#: Passes over every marker that phase the heterozygotes of markers below ``phase_maf``. The
#: first reads them all as unobserved (a random phase would mislead the copying); the second
#: reads the others as the first phased them (planted rare variants of the tests: 0.70 of
#: them phased as their neighbours on the first pass and 0.81 after the second on one cohort;
#: 0.82 over three cohorts and four seeds, against 0.87 when every marker is phased in the
#: iterations).
_RARE_PASSES = 2


def phase_and_impute(
    genotypes: np.ndarray, positions: np.ndarray | None = None, config: HaplotypeConfig = HaplotypeConfig(),
    *, run: int = 0, cm: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Phase a block once and return (p1, p2): each subject's two haplotypes' ALT probabilities.

    Parameters
    ----------
    genotypes
        int8 (subjects, markers) ALT dosage, -1 missing; markers in position order.
    positions
        Base-pair positions (switch rates); None or unusable (not increasing):
        ``config.marker_switch`` between neighbours.
    config
        See :class:`HaplotypeConfig`.
    run
        Which of ``config.runs`` independent runs (its seed and window offset; see :func:`copying_gp`).
    cm
        Genetic positions (centimorgans, :mod:`genotypes.genetic_map`) to read
        the distances from instead of ``positions`` at 1 cM per Mb.

    Returns
    -------
    p1, p2
        float32 (subjects, markers): at a missing call the haplotype's
        leave-marker-out ALT probability, at an observed call its phased allele
        (so p1 + p2 is the call).
    """
    g = np.asarray(genotypes, dtype=np.int8)
    if g.ndim != 2 or g.shape[0] < 2:
        raise ValueError(f"haplotype copying needs a (subjects, markers) matrix of at least 2 subjects, got {g.shape}")
    n, m = g.shape
    if m == 0:
        return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.float32)
    if cm is not None:
        cm = np.asarray(cm, dtype=np.float64)
        if cm.shape != (m,):
            raise ValueError(f"cm must hold one genetic position per marker ({m}), got shape {cm.shape}")
        # at least 1e-6 cM between markers: a flat stretch of a map would
        # otherwise forbid any switch between its markers
        gaps = np.maximum(np.diff(cm), 1e-6) if np.isfinite(cm).all() else np.diff(cm)
        positions = (cm[:1].sum() + np.concatenate([[0.0], np.cumsum(gaps)])) * 1e6  # read at 1 cM per Mb
    rng = np.random.default_rng(config.seed + run)
    missing, het = g < 0, g == 1
    freq = np.where(missing, 0, g).sum(0) / np.maximum(2 * (~missing).sum(0), 1)
    first = np.where(het, rng.random((n, m)) < 0.5, g == 2)
    draw = rng.random((2, n, m)) < freq
    hap = np.empty((2 * n, m), dtype=np.int8)
    hap[0::2] = np.where(missing, draw[0], first)
    hap[1::2] = np.where(missing, draw[1], np.where(het, ~first, g == 2))
    common = np.minimum(freq, 1 - freq) >= config.phase_maf
    if common.sum() < 2:
        common[:] = True
    cols = np.flatnonzero(common)
    hap[:, cols] = _phase(g[:, cols], hap[:, cols], None if positions is None else np.asarray(positions)[cols],
                          config, run, rng)
    missing2 = np.repeat(missing, 2, axis=0)
    rare_het = het & ~common
    rare_need = np.repeat(rare_het | (missing & ~common), 2, axis=0)
    for rare_pass in range(_RARE_PASSES if rare_het.any() else 0):
        obs = np.where(missing2 | (np.repeat(rare_het, 2, axis=0) & (rare_pass == 0)), -1, hap).astype(np.int8)
        probs, _ = _copying_pass(hap, obs, positions, config.states, config.window, config.overlap, run, config,
                                 need=rare_need)
        _decide(hap, probs, rare_het, missing & ~common)
    obs = np.where(missing2, -1, hap).astype(np.int8)
    probs, _ = _copying_pass(hap, obs, positions, config.final_states, config.final_window, config.final_overlap,
                             run, config, calibrate=rng, need=missing2)
    return (np.where(missing, probs[0::2], hap[0::2]).astype(np.float32),
            np.where(missing, probs[1::2], hap[1::2]).astype(np.float32))


#: ``need`` of :func:`._copying_kernels._copy_kernel` asking for every marker.
_EVERY = np.zeros((0, 0), dtype=np.uint8)


def _copying_pass(hap, obs, positions, states: int, window: int, overlap: int, run: int, config: HaplotypeConfig,
                  calibrate: np.random.Generator | None = None, rho: np.ndarray | None = None,
                  need: np.ndarray | None = None):
    """Each haplotype's leave-marker-out ALT probability, copying from ``states`` near others.

    ``need``: bool (haplotypes, markers), where the probabilities are read (the
    others stay 0 and their windows may be skipped); None: everywhere.

    Returns the probabilities (haplotypes, markers) and what the junction pass
    reuses: (states, lo, hi, core_lo, core_hi, rho, longest). ``calibrate``: a
    generator to fit the switch rate with (:func:`_calibrated_rates`); ``rho``:
    switch rates to use instead of the prior's (one fitted before).
    """
    m = hap.shape[1]
    lo, hi, core_lo, core_hi = _windows(m, window, overlap, run * window // config.runs)
    k = min(states, hap.shape[0] - 2)
    rho = _switch_rates(positions, m, config, k) if rho is None else rho
    longest = int((hi - lo).max())  # the kernels' per-window buffers
    chosen = _nearest_states(hap, lo, hi, k)
    if calibrate is not None:
        rho = _calibrated_rates(hap, obs, chosen, (lo, hi, core_lo, core_hi), rho, config, longest, calibrate)
    probs = np.zeros(hap.shape, dtype=np.float32)
    _copy_kernel(np.ascontiguousarray(hap.T), obs, chosen, lo, hi, core_lo, core_hi, rho,
                 np.float32(config.mismatch), longest, _EVERY if need is None else need.view(np.uint8),
                 probs)
    return probs, (chosen, lo, hi, core_lo, core_hi, rho, longest)


def _decide(hap: np.ndarray, probs: np.ndarray, het: np.ndarray, missing: np.ndarray) -> None:
    """In place: a heterozygous call puts ALT on the haplotype predicting it better, a missing allele the likelier one."""
    p1, p2 = probs[0::2], probs[1::2]
    alt_first = p1 * (1 - p2) > (1 - p1) * p2
    hap[0::2] = np.where(het, alt_first, np.where(missing, p1 > 0.5, hap[0::2]))
    hap[1::2] = np.where(het, ~alt_first, np.where(missing, p2 > 0.5, hap[1::2]))


def _phase(g: np.ndarray, hap: np.ndarray, positions, config: HaplotypeConfig, run: int,
           rng: np.random.Generator) -> np.ndarray:
    """The haplotypes ``hap`` of genotypes ``g`` after ``config.iterations`` phasing passes.

    The iterations with all ``config.states`` fit their switch rate once, on the
    phase the cheaper ones reached (:func:`_calibrated_rates`).
    """
    missing, het = g < 0, g == 1
    hap = np.ascontiguousarray(hap)
    het2, missing2 = np.repeat(het, 2, axis=0), np.repeat(missing, 2, axis=0)
    need = het2 | missing2  # what _decide reads
    fitted = None  # the full-state iterations' switch rate, fitted on the first of them
    for it in range(config.iterations):
        obs = np.where(missing2, -1, hap).astype(np.int8)
        k = _phasing_states(it, config)
        full = k == config.states
        probs, (states, *windows, rho, longest) = _copying_pass(
            hap, obs, positions, k, config.window, config.overlap, run, config,
            calibrate=rng if full and fitted is None else None, rho=fitted if full else None, need=need)
        if full:
            fitted = rho
        _decide(hap, probs, het, missing)
        if it >= config.iterations - config.refine:
            both = np.concatenate([states[0::2], states[1::2]], axis=2)  # a subject's two state sets, joined
            obs = np.where(missing2, -1, hap).astype(np.int8)
            decided = np.empty_like(hap)
            _junction_kernel(np.ascontiguousarray(hap.T), obs, both, *windows, rho,
                             np.float32(config.mismatch), longest, decided)
            hap = _swap_missing(np.where(het2, decided, hap).astype(np.int8), hap, het, missing)
    return hap


def _swap_missing(decided: np.ndarray, before: np.ndarray, het: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """``decided`` with each missing call's two guessed alleles swapped where the junction pass swapped the phase.

    The junction pass swaps everything right of a heterozygous call, but it
    only outputs observed alleles: the guesses at missing calls would stay on
    the old sides, and after a few swaps half of them would sit on the wrong
    haplotype, where the next iteration's state selection and every other
    haplotype's copying read them. A missing call takes the parity of the
    nearest heterozygous call on its left.
    """
    m = het.shape[1]
    flipped = het & (decided[0::2] != before[0::2])
    last = np.maximum.accumulate(np.where(het, np.arange(m), -1), axis=1)
    parity = np.take_along_axis(flipped, np.maximum(last, 0), axis=1) & (last >= 0)
    swap = missing & parity
    if swap.any():
        first, second = decided[0::2].copy(), decided[1::2].copy()
        decided[0::2] = np.where(swap, second, first)
        decided[1::2] = np.where(swap, first, second)
    return decided


def haplotype_gp(p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
    """Genotype probabilities (subjects, variants, 3) from two haplotypes' ALT probabilities."""
    return np.stack([(1 - p1) * (1 - p2), p1 * (1 - p2) + (1 - p1) * p2, p1 * p2], axis=-1).astype(np.float32)


def copying_gp(
    genotypes: np.ndarray, positions: np.ndarray | None = None, config: HaplotypeConfig = HaplotypeConfig(),
    *, cm: np.ndarray | None = None,
) -> np.ndarray:
    """Genotype probabilities (subjects, markers, 3), averaged over ``config.runs`` phasings.

    One phasing is one guess; where it is wrong, so is every call it fills.
    Runs started from other random phases, with windows cut elsewhere, err on
    other calls, and their mean is closer to the posterior over phase. On the
    chr20 panels, copying alone: 0.986 (1 run), 0.988 (2), 0.989 (4), at 1x,
    2x and 4x the time; on the first 6,000 markers window offsets alone (one
    seed) gave as much as new seeds. On two simulated cohorts never tuned on the
    gain was smaller: +0.0005 and +0.0008 with 4 runs. Observed calls keep
    probability 1 (every run keeps them). ``cm``: genetic positions, as in
    :func:`phase_and_impute`.
    """
    gp = haplotype_gp(*phase_and_impute(genotypes, positions, config, cm=cm))
    for run in range(1, config.runs):
        gp += haplotype_gp(*phase_and_impute(genotypes, positions, config, run=run, cm=cm))
    return gp / np.float32(config.runs)
