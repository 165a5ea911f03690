"""The compiled forward-backward kernels of haplotype copying (numba; see :mod:`._haplotype_copying`).

Both run a haploid Li-Stephens HMM per haplotype (or subject) and window over
that window's state haplotypes, in single precision, parallel over haplotypes.
They use fast-math: LLVM may reassociate the sums, so a fresh compilation can
flip a few phase decisions (docs/benchmarks.md, *Reproducibility*).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _gather(ref, hap_t, st, start, stop):  # pragma: no cover - compiled
    """ref[j - start, k] = allele of state k at marker j, for the window's markers."""
    for j in range(start, stop):
        for k in range(st.shape[0]):
            ref[j - start, k] = hap_t[j, st[k]]


@njit(cache=True)
def _emission(o, eps):  # pragma: no cover - compiled
    """(c0, c1): a state with allele r emits observed allele ``o`` with probability c0 + c1 r (1 when o < 0).

    Written so, the loops over states carry no branch and vectorize (1.3x the
    select per state on the final pass).
    """
    if o < 0:
        return np.float32(1.0), np.float32(0.0)
    hit, miss = np.float32(1.0) - eps, eps
    return (miss, hit - miss) if o == 1 else (hit, miss - hit)


@njit(parallel=True, cache=True, fastmath=True)
def _copy_kernel(hap_t, obs, states, lo, hi, core_lo, core_hi, rho, eps, longest, need, out):  # pragma: no cover
    """Leave-marker-out ALT probability of each haplotype at the markers ``need`` asks for.

    ``need``: uint8 (haplotypes, markers), nonzero where the probability is
    wanted, or an empty (0, 0) array for every marker of the windows' cores;
    ``out`` is left unwritten elsewhere, and a window whose core needs nothing is
    not run at all. The callers need a few markers per haplotype (the final pass:
    missing calls; phasing: heterozygous and missing ones), and the posterior
    sum over the states is a quarter of the work per marker. Single precision
    throughout and one pass over the states per marker and direction
    (normalisation folded into the next transition): 2.5x the straightforward
    loops.
    """
    n_hap = obs.shape[0]
    n_win, n_states = states.shape[1], states.shape[2]
    hit, miss, uniform = np.float32(1.0) - eps, eps, np.float32(1.0 / n_states)
    every = need.shape[0] == 0
    for t in prange(n_hap):
        alpha = np.empty((longest, n_states), np.float32)
        ref = np.empty((longest, n_states), np.int8)
        a = np.empty(n_states, np.float32)
        b = np.empty(n_states, np.float32)
        for w in range(n_win):
            if not every:
                wanted = False
                for j in range(core_lo[w], core_hi[w]):
                    if need[t, j]:
                        wanted = True
                        break
                if not wanted:
                    continue
            st = states[t, w]
            start, stop = lo[w], hi[w]
            _gather(ref, hap_t, st, start, stop)  # the states' alleles, once: the loops below vectorize
            inv = np.float32(1.0)
            for k in range(n_states):
                a[k] = uniform
            for j in range(start, stop):  # forward; alpha keeps the probabilities before j's emission
                row = j - start
                stay = (np.float32(1.0) - rho[j]) * inv if j > start else inv
                move = rho[j] * uniform if j > start else np.float32(0.0)
                c0, c1 = _emission(obs[t, j], eps)
                alpha_row, ref_row = alpha[row], ref[row]
                s = np.float32(0.0)
                for k in range(n_states):
                    pre = stay * a[k] + move
                    alpha_row[k] = pre
                    v = pre * (c0 + c1 * np.float32(ref_row[k]))
                    a[k] = v
                    s += v
                inv = np.float32(1.0) / s
            for k in range(n_states):
                b[k] = uniform
            for j in range(stop - 1, start - 1, -1):  # backward; b excludes j's emission
                row = j - start
                c0, c1 = _emission(obs[t, j], eps)
                alpha_row, ref_row = alpha[row], ref[row]
                if core_lo[w] <= j < core_hi[w] and (every or need[t, j]):
                    num = np.float32(0.0)
                    den = np.float32(0.0)
                    for k in range(n_states):
                        weight = alpha_row[k] * b[k]
                        den += weight
                        num += weight * np.float32(ref_row[k])
                    p = num / den
                    out[t, j] = p * hit + (np.float32(1.0) - p) * miss
                s = np.float32(0.0)
                for k in range(n_states):
                    v = b[k] * (c0 + c1 * np.float32(ref_row[k]))
                    b[k] = v
                    s += v
                stay = (np.float32(1.0) - rho[j]) / s
                move = rho[j] * uniform
                for k in range(n_states):
                    b[k] = stay * b[k] + move


@njit(cache=True, fastmath=True)
def _allele(dec, obs, row, x, j, first_undecided, par):  # pragma: no cover - compiled
    """Haplotype x's allele at marker j: decided (left of the window's core) or the input's under parity ``par``."""
    if j < first_undecided:
        return dec[x, j]
    return obs[row + (x ^ par), j]


@njit(parallel=True, cache=True, fastmath=True)
def _junction_kernel(hap_t, obs, states, lo, hi, core_lo, core_hi, rho, eps, longest, out):  # pragma: no cover
    """Per subject, re-decide the phase at every heterozygous call: keep or swap everything to its right.

    A haplotype's leave-out probability cannot mend a switch error: each side of
    the switch copies well on its own. Here both haplotypes run over one state
    set (the subject's two, joined). Per window: a backward pass over the
    current phase, then a forward pass that at every heterozygous call of the
    core joins the forward probabilities of the decided left parts to the
    backward probabilities of the right parts as they are, or crossed, and
    keeps the likelier (Beagle 5 decides phase between heterozygotes alike).
    ``out`` gets the decided alleles.
    """
    n_sub, n_markers = obs.shape[0] // 2, obs.shape[1]
    n_win, n_states = states.shape[1], states.shape[2]
    hit, miss, uniform = np.float32(1.0) - eps, eps, np.float32(1.0 / n_states)
    for i in prange(n_sub):
        row = 2 * i
        dec = np.empty((2, n_markers), np.int8)
        beta = np.empty((2, longest, n_states), np.float32)
        ref = np.empty((longest, n_states), np.int8)
        a = np.empty((2, n_states), np.float32)
        b = np.empty(n_states, np.float32)
        be = np.empty((2, n_states), np.float32)
        inv = np.empty(2, np.float32)
        score = np.empty((2, 2), np.float32)
        g_par = 0
        for w in range(n_win):
            st = states[i, w]
            start, stop, c0, c1 = lo[w], hi[w], core_lo[w], core_hi[w]
            _gather(ref, hap_t, st, start, stop)
            for x in range(2):  # backward over the current phase; beta excludes j's emission
                for k in range(n_states):
                    b[k] = uniform
                for j in range(stop - 1, start - 1, -1):
                    e0, e1 = _emission(_allele(dec, obs, row, x, j, c0, g_par), eps)
                    beta_row, ref_row = beta[x, j - start], ref[j - start]
                    s = np.float32(0.0)
                    for k in range(n_states):
                        beta_row[k] = b[k]
                        v = b[k] * (e0 + e1 * np.float32(ref_row[k]))
                        b[k] = v
                        s += v
                    stay = (np.float32(1.0) - rho[j]) / s
                    move = rho[j] * uniform
                    for k in range(n_states):
                        b[k] = stay * b[k] + move
            for x in range(2):
                inv[x] = np.float32(1.0)
                for k in range(n_states):
                    a[x, k] = uniform
            par = 0
            for j in range(start, stop):
                r = rho[j] if j > start else np.float32(0.0)
                o0 = _allele(dec, obs, row, 0, j, c0, g_par)
                o1 = _allele(dec, obs, row, 1, j, c0, g_par)
                if c0 <= j < c1 and j > start and o0 >= 0 and o1 >= 0 and o0 != o1:
                    for y in range(2):  # the right parts' backward probabilities, j's emission included
                        o = o0 if y == 0 else o1
                        s = np.float32(0.0)
                        for k in range(n_states):
                            be[y, k] = beta[y, j - start, k] * (hit if ref[j - start, k] == o else miss)
                            s += be[y, k]
                        for k in range(n_states):
                            be[y, k] /= s
                    for x in range(2):
                        for y in range(2):
                            dot = np.float32(0.0)
                            for k in range(n_states):
                                dot += a[x, k] * be[y ^ par, k]
                            score[x, y] = (np.float32(1.0) - r) * dot * inv[x] + r * uniform
                    if score[0, 1] * score[1, 0] > score[0, 0] * score[1, 1]:
                        par ^= 1
                ref_row = ref[j - start]
                for x in range(2):
                    o = o0 if (x ^ par) == 0 else o1
                    if c0 <= j < c1:
                        dec[x, j] = o
                        out[row + x, j] = o
                    stay = (np.float32(1.0) - r) * inv[x]
                    move = r * uniform
                    e0, e1 = _emission(o, eps)
                    a_x = a[x]
                    s = np.float32(0.0)
                    for k in range(n_states):
                        v = (stay * a_x[k] + move) * (e0 + e1 * np.float32(ref_row[k]))
                        a_x[k] = v
                        s += v
                    inv[x] = np.float32(1.0) / s
            g_par ^= par
