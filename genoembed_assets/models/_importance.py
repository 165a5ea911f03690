"""Block importance of the Phase 2 Transformer, tested against a permutation null.

Pure torch/numpy/scipy, no Dagster. :func:`measure_importance` is called by
``fit_cross_block`` with the trained seeds' models and the standardized
embeddings of held-out subjects.

What is measured
----------------
*Held-out subjects.* Everything is computed on a test split
(``importance_fraction`` of the subjects, at most ``importance_subjects``)
that neither fitted the models nor chose their best epoch, so importance is
not inflated by what the models memorized, and the permutation test is exact:
given fixed models, a block independent of the others has exchangeable rows.
Measured on the demo (fast preset, 120 subjects each): on the early-stopping
subjects the 25 null blocks' z-scores had mean 0.16 and sd 1.29, on untouched
subjects mean 0.00 and sd 1.08.

*Statistic: held-out predictability.* Random block masks hide blocks
(``importance_mask_draws`` draws per subject, from a fixed generator, so the
observed data and every null replicate see the same masks). For block ``b``,
``R2_b = 1 - SSE_b / SS_b`` over its active standardized dimensions and the
occurrences where ``b`` is hidden, with the token head's prediction. It is not
clipped: under the null a model that predicts anything makes it negative.
With ``importance_head="best"`` (auto at genome scale) each seed predicts each
block with whichever head, token or CLS, predicts it better on the
validation subjects (never the test subjects): on the 1,703-block bench
cohort the CLS head predicted the weak PDE4D block with held-out R2 0.098
and the token head with -0.04 (information from another chromosome reaches
a windowed token only through the CLS token). The choice is fixed before
the test, so the null stays exact.
A block is important when the other blocks predict it, that is when it
shares structure with them beyond the shared ancestry axes removed upstream.
R2 is dependence-based, so a permutation null is valid for it. Attention is
not: attention patterns follow block identity and survive permutation.

*LD guard.* Neighbours of ``b`` are blocks on its chromosome whose intervals
lie within ``importance_ld_window_mb``. The distal statistic ``R2d_b`` uses
neighbour-closed masks (whenever a block is hidden its neighbours are hidden
too), so ``b`` must be predicted from blocks beyond LD range. On a dense map
(a genome-wide cohort: each block has 2-4 neighbours within 2 Mb) closing the
plain masks would hide about 80% of the blocks, so there the closed masks
grow from a thinned seed mask and hide about as many blocks as the plain ones.
The guard acts on LD groups, a block and its neighbours: the group is
distally linked when some member's distal dependence is significant
(``p_distal < 0.05 / group size``, Bonferroni within the group); a block
whose group is not is ``ld_only``: its final statistic and p are the
distal ones, so adjacent blocks that predict each other only through LD are
not important. Groups were connected components of the neighbour graph
until genome-wide cohorts: on a contiguous map a component is a whole
chromosome, and one distal block decided for a hundred. Judging each block alone was measured to fail: at 800
subjects HLA DR/DQ passed its distal test and its neighbour HLA DP (full R2
0.125, p < 1e-10) did not, so DP ranked 31 of 32; the pair is linked to the
rest of the genome through DR/DQ, and both are then scored in full.
Otherwise the final statistic is the full ``R2_b``. Always using the distal
statistic would be wrong: the two strongest blocks of the demo (HLA DR/DQ and
HLA DP) are adjacent and predict each other strongly but a distal weak block
only weakly; distal-only would rank the weak block above them. Blocks with no
neighbour are never ``ld_only`` (their distal test repeats the full one with
fewer visible blocks, and a second chance to fail would cost power only).

*Null.* ``importance_permutations`` replicates shuffle the held-out subjects
within each block independently (each block's rows with its own
permutation). The test of block ``b`` re-pairs ``b``'s shuffled rows with the
other blocks as observed: ``b``'s dependence on the rest is destroyed, its
marginal and the joint distribution of the rest are kept, which is the exact
permutation null of "``b`` independent of the rest". A hidden block's
prediction depends on the visible blocks only, never on its own value, so a
replicate reuses the observed forward passes and only the targets move.
Shuffling the visible blocks too (one forward pass per replicate) would feed
the models incoherent inputs they never saw in training, a null of something
else, and it cost 107 s on the demo against 3 s. Rows are shuffled in the
space the models see (standardized, whitened, shared axes removed). For the
observed data and each replicate the statistic is averaged over seeds (each
seed's model on the same data). ``z = (obs - null mean) / null sd``; ``p`` is
the normal upper tail of ``z`` (the statistic is a mean over hundreds of
hidden occurrences, close to normal: null kurtosis about 0 on the demo, and
the tail resolves p below ``1 / (R + 1)``); ``p_empirical = (1 + #{null >=
obs}) / (R + 1)`` is reported beside it; ``q`` is the Benjamini-Hochberg
adjustment of the final p over blocks.

*Importance.* ``importance_mean`` is the positive part of the final
statistic normalized to sum to 1 (uniform when no block is positive), so it
reads as a share of the cross-block predictability; ``rank`` orders blocks by
the final statistic. ``attention_mean`` keeps the former measure, the
prediction-weighted attention that hidden-block queries pay to visible blocks
(on held-out subjects), as a secondary "where the Transformer looks" column.

Cost: per seed, ``2 * draws`` forward passes over the held-out subjects
(plain and closed masks) plus one attention pass per draw; the null replicates
are arithmetic on stored predictions, chunked to ``_ELEMENTS_PER_CHUNK`` floats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ._cross_block import CrossBlockConfig
from ._importance_stats import (
    _distally_linked,
    _test,
    bh_qvalues,
    importance_masks,
    ld_neighbours,
    normalized_positive,
    null_permutations,
    rank_stability,
    top_block_agreement,
)

__all__ = [
    "ImportanceResult",
    "bh_qvalues",
    "choose_heads",
    "importance_masks",
    "importance_table",
    "ld_neighbours",
    "measure_importance",
    "null_permutations",
    "rank_stability",
    "top_block_agreement",
]

# Tokens (rows x blocks) per forward pass: large enough to amortize per-call
# overhead on CPU, small enough for any GPU: 4,096 rows at 32 blocks, 76 rows at
# 1,703 (each token's feed-forward activations are 4 x width floats).
_TOKENS_PER_PASS = 4096 * 32
# Floats per chunk of null targets (replicates x subjects x blocks x dims), ~64 MB.
_ELEMENTS_PER_CHUNK = 1 << 24


@dataclass
class ImportanceResult:
    """Per-block importance statistics, null and flags (arrays over blocks unless said).

    Attributes
    ----------
    r2, r2_distal
        Seed-averaged observed statistics, full and neighbour-closed masks.
    r2_by_seed, r2_distal_by_seed
        ``(n_seeds, n_blocks)`` observed statistics per seed.
    null, null_distal
        ``(R, n_blocks)`` seed-averaged statistics of the null replicates.
    z, p, p_empirical, z_distal, p_distal
        Full and distal test of each block against its null.
    ld_only
        Has a neighbour, and its LD group has no significant distal link (module docstring).
    final_z, final_p, final_p_empirical, q
        The test that counts (distal for ``ld_only`` blocks, else full); ``q`` BH over blocks.
    final, final_by_seed, final_null_sd
        The statistic that counts, seed-averaged and per seed, and its null sd.
    attention
        Prediction-weighted attention on held-out subjects (sums to 1).
    cls_attention
        Plain CLS attention on held-out subjects, unmasked (sums to 1).
    n_subjects, n_neighbours
        Held-out subjects used; LD neighbours per block.
    cls_head
        ``(n_seeds, n_blocks)`` bool: the seed predicted the block with its CLS
        head (chosen on selection subjects), else with its token head.
    """

    r2: np.ndarray
    r2_distal: np.ndarray
    r2_by_seed: np.ndarray
    r2_distal_by_seed: np.ndarray
    null: np.ndarray
    null_distal: np.ndarray
    z: np.ndarray
    p: np.ndarray
    p_empirical: np.ndarray
    z_distal: np.ndarray
    p_distal: np.ndarray
    ld_only: np.ndarray
    final: np.ndarray
    final_by_seed: np.ndarray
    final_null_sd: np.ndarray
    final_z: np.ndarray
    final_p: np.ndarray
    final_p_empirical: np.ndarray
    q: np.ndarray
    attention: np.ndarray
    cls_attention: np.ndarray
    n_subjects: int
    n_neighbours: np.ndarray
    cls_head: np.ndarray | None = None

    @property
    def by_seed(self) -> np.ndarray:
        """``(n_seeds, n_blocks)`` per-seed importance, each row normalized to sum to 1."""
        return np.vstack([normalized_positive(row) for row in self.final_by_seed])


# --------------------------------------------------------------------------- scoring
@torch.no_grad()
def heldout_r2(model, x: torch.Tensor, weight: torch.Tensor, mask_sets: list[torch.Tensor], perms: np.ndarray,
               use_cls: torch.Tensor | None = None) -> np.ndarray:
    """R2 of every block when hidden, for the observed pairing and every null replicate.

    A hidden block's prediction depends on the visible blocks only, never on
    its own value, so a null replicate re-pairs each block's (permuted) target
    rows with the predictions already made: one forward pass per mask, for
    any number of replicates.

    Parameters
    ----------
    model
        A trained ``CrossBlockTransformer`` (set to eval mode here).
    x
        ``(n, n_blocks, k_max)`` standardized held-out embeddings on the model's device.
    weight
        ``(n_blocks, k_max)`` 1 for active dimensions.
    mask_sets
        Mask sets, each ``(draws, n, n_blocks)`` bool.
    perms
        ``(R, n, n_blocks)`` null row permutations, one per replicate and block.
    use_cls
        ``(n_blocks,)`` bool: blocks predicted by the CLS head instead of the
        token head (default: the token head for every block).

    Returns
    -------
    numpy.ndarray
        ``(len(mask_sets), 1 + R, n_blocks)``; replicate 0 is the observed data.
        A block never hidden, or with no active dimension, gets 0.
    """
    model.eval()
    n, n_blocks, k_max = x.shape
    device = x.device
    identity = np.broadcast_to(np.arange(n)[:, None], (n, n_blocks))
    all_perms = torch.from_numpy(np.concatenate([identity[None], perms]).astype(np.int64)).to(device)
    replicates = len(all_perms)
    columns = torch.arange(n_blocks, device=device)[None, :]
    sse = torch.zeros(len(mask_sets), replicates, n_blocks, dtype=torch.float64, device=device)
    ss = torch.zeros_like(sse)
    per_chunk = max(1, _ELEMENTS_PER_CHUNK // (n * n_blocks * k_max))
    rows = max(1, _TOKENS_PER_PASS // n_blocks)
    for s, masks in enumerate(mask_sets):
        for mask in masks.to(device):
            pred = torch.cat([_prediction(model(x[i:i + rows], mask[i:i + rows]), use_cls) for i in range(0, n, rows)])
            hidden = mask.double()[None]
            for first in range(0, replicates, per_chunk):
                target = x[all_perms[first:first + per_chunk], columns]  # (c, n, blocks, k): block b's rows permuted
                err = (((target - pred[None]) ** 2) * weight).sum(-1).double()
                energy = ((target**2) * weight).sum(-1).double()
                sse[s, first:first + per_chunk] += (err * hidden).sum(1)
                ss[s, first:first + per_chunk] += (energy * hidden).sum(1)
    r2 = torch.where(ss > 1e-12, 1 - sse / ss.clamp_min(1e-12), torch.zeros_like(ss))
    return r2.cpu().numpy()


def _prediction(out, use_cls: torch.Tensor | None) -> torch.Tensor:
    if use_cls is None:
        return out.token_pred
    return torch.where(use_cls[None, :, None], out.cls_pred, out.token_pred)


@torch.no_grad()
def choose_heads(model, x: torch.Tensor, weight: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per block, whether the CLS head predicts it better than the token head on ``x`` (selection subjects).

    ``x`` must not be the subjects importance is tested on: then the choice is
    fixed before the test and the permutation null stays exact.
    """
    none = np.empty((0, x.shape[0], x.shape[1]), dtype=np.int64)
    token = heldout_r2(model, x, weight, [masks], none)[0, 0]
    cls = heldout_r2(model, x, weight, [masks], none, use_cls=torch.ones(x.shape[1], dtype=torch.bool, device=x.device))[0, 0]
    return torch.from_numpy(cls > token).to(x.device)


def _normalize(values: torch.Tensor) -> torch.Tensor:
    return values / values.sum(dim=-1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def prediction_weighted_attention(model, x: torch.Tensor, masks: torch.Tensor, r2: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Attention hidden-block queries pay to visible blocks, each query weighted by its block's R2.

    Blocks nobody can predict (noise once shared ancestry is removed) would
    otherwise spread their arbitrary attention. Returns the attention share
    per block and the plain CLS attention (unmasked), each summing to 1.
    """
    model.eval()
    query_weight = torch.from_numpy(np.clip(r2, 0, None) + 1e-3).float().to(x.device)  # floor: defined when nothing is predictable
    per_subject, cls_rows = [], []
    for first in range(0, len(x), batch_size):
        xb = x[first:first + batch_size]
        total = torch.zeros(xb.shape[:2], dtype=torch.float64, device=x.device)
        seen = torch.zeros_like(total)
        for mask in masks[:, first:first + batch_size].to(x.device):
            out = model(xb, mask, return_attention=True, query_weight=mask.float() * query_weight)
            visible = (~mask).double()
            # Received attention counts only on visible keys; per draw a distribution over them.
            received = out.received_attention.double().mean(dim=(1, 2)) * visible
            total += _normalize(received)
            seen += visible
        per_subject.append(_normalize(total / seen.clamp_min(1)))
        cls_rows.append(_normalize(model(xb, return_attention=True).cls_attention.double().mean(dim=(1, 2))))
    attention = _normalize(torch.cat(per_subject).mean(0))
    cls = _normalize(torch.cat(cls_rows).mean(0))
    return attention.cpu().numpy(), cls.cpu().numpy()


def measure_importance(models: list, x: np.ndarray, active: np.ndarray, block_meta: pd.DataFrame, config: CrossBlockConfig,
                       *, device: torch.device | str = "cpu", x_select: np.ndarray | None = None) -> ImportanceResult:
    """Held-out predictability of every block, its permutation null and the LD guard (see the module docstring).

    Parameters
    ----------
    models
        One trained ``CrossBlockTransformer`` per seed.
    x
        ``(n, n_blocks, k_max)`` standardized embeddings of held-out subjects.
    active
        ``(n_blocks, k_max)`` 1 for active dimensions.
    block_meta
        ``block_id, chrom, start, end`` in the model's block order.
    config
        ``importance_*`` fields, mask fractions and seeds.
    device
        Torch device of the models.
    x_select
        Standardized embeddings of other subjects (not ``x``'s): when given,
        each seed predicts each block with the head (token or CLS) that
        predicts it better on them; otherwise the token head throughout.
    """
    n, n_blocks, _ = x.shape
    neighbours = ld_neighbours(block_meta, config.importance_ld_window_mb)
    plain, closed = importance_masks(n, neighbours, config, config.seeds[0])
    perms = null_permutations(n, n_blocks, config.importance_permutations, config.seeds[0])
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    weight = torch.from_numpy(np.asarray(active, dtype=np.float32)).to(device)
    scores, attention, cls, heads = [], [], [], []
    if x_select is not None:
        xs = torch.from_numpy(np.ascontiguousarray(x_select, dtype=np.float32)).to(device)
        select_masks, _ = importance_masks(len(xs), neighbours, config, config.seeds[0] + 1)
    for model in models:
        use_cls = None if x_select is None else choose_heads(model, xs, weight, select_masks)
        heads.append(np.zeros(n_blocks, bool) if use_cls is None else use_cls.cpu().numpy())
        r2 = heldout_r2(model, xt, weight, [plain, closed], perms, use_cls)  # (2, 1 + R, blocks)
        scores.append(r2)
        att, cls_att = prediction_weighted_attention(model, xt, plain, r2[0, 0], config.batch_size)
        attention.append(att)
        cls.append(cls_att)
    scores = np.stack(scores)  # (seeds, 2, 1 + R, blocks)
    mean = scores.mean(axis=0)
    r2, r2d = mean[0, 0], mean[1, 0]
    z, p, p_emp, sd = _test(r2, mean[0, 1:])
    zd, pd_, pd_emp, sdd = _test(r2d, mean[1, 1:])
    has_neighbour = neighbours.any(axis=1)
    ld_only = has_neighbour & ~_distally_linked(neighbours, pd_)
    final_by_seed = np.where(ld_only[None, :], scores[:, 1, 0], scores[:, 0, 0])
    final_p = np.where(ld_only, pd_, p)
    return ImportanceResult(
        r2=r2, r2_distal=r2d, r2_by_seed=scores[:, 0, 0], r2_distal_by_seed=scores[:, 1, 0],
        null=mean[0, 1:], null_distal=mean[1, 1:],
        z=z, p=p, p_empirical=p_emp, z_distal=zd, p_distal=pd_, ld_only=ld_only,
        final=np.where(ld_only, r2d, r2), final_by_seed=final_by_seed, final_null_sd=np.where(ld_only, sdd, sd),
        final_z=np.where(ld_only, zd, z), final_p=final_p, final_p_empirical=np.where(ld_only, pd_emp, p_emp),
        q=bh_qvalues(final_p),
        attention=_normalize(torch.from_numpy(np.mean(attention, axis=0))).numpy(),
        cls_attention=_normalize(torch.from_numpy(np.mean(cls, axis=0))).numpy(),
        n_subjects=int(n), n_neighbours=neighbours.sum(axis=1), cls_head=np.stack(heads),
    )


def importance_table(block_meta: pd.DataFrame, seeds, result: ImportanceResult) -> pd.DataFrame:
    """The ``block_importance`` table (see ``CrossBlockResult.block_importance``)."""
    table = block_meta[["block_id", "chrom", "start", "end"]].copy().reset_index(drop=True)
    importance = normalized_positive(result.final)
    positive = np.clip(result.final, 0, None).sum()
    by_seed = result.by_seed
    table["importance_mean"] = importance
    # The null sd of the statistic in importance units: the noise level of importance_mean.
    table["importance_std"] = result.final_null_sd / positive if positive > 0 else 0.0
    table["importance_seed_std"] = by_seed.std(axis=0, ddof=1) if len(by_seed) > 1 else 0.0
    table["rank"] = pd.Series(result.final).rank(ascending=False, method="first").astype(int).to_numpy()
    table["importance_r2"] = result.r2
    table["importance_r2_distal"] = result.r2_distal
    table["importance_z"] = result.final_z
    table["importance_p"] = result.final_p
    table["importance_p_empirical"] = result.final_p_empirical
    table["importance_q"] = result.q
    table["ld_only"] = result.ld_only
    table["ld_neighbours"] = result.n_neighbours.astype(int)
    table["attention_mean"] = result.attention
    table["cls_attention_mean"] = result.cls_attention
    # share of seeds whose CLS head (not the token head) predicted the block
    table["importance_cls_head"] = result.cls_head.mean(axis=0) if result.cls_head is not None else 0.0
    for seed, row in zip(seeds, by_seed):
        table[f"importance_seed{seed}"] = row
    return table
