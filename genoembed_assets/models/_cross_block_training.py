"""Training and artifacts of the Phase 2 cross-block Transformer.

Pure torch/numpy/pandas/matplotlib, no Dagster. The entry point is
:func:`fit_cross_block`; :func:`save_cross_block_result` writes the Phase 2
artifacts of ``docs/design.md`` atomically. Input standardization lives in
``_standardize``, block importance and its permutation null in ``_importance``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import torch
from scipy.spatial.distance import pdist
from scipy.stats import pearsonr, spearmanr

from ._cross_block import CrossBlockConfig, CrossBlockTransformer, draw_block_mask
from ._embedding_store import BlockEmbeddingStore
from ._importance import importance_table, ld_neighbours, measure_importance, rank_stability, top_block_agreement
from ._screen import cross_block_screen, focus_weights
from ._standardize import Standardizer, _Standardizer, shared_axes  # noqa: F401  (re-exported: older imports)

__all__ = [
    "CrossBlockResult",
    "shared_axes",
    "draw_block_mask",
    "effective_rank",
    "fit_cross_block",
    "rank_stability",
    "seed_ensemble",
]


@dataclass
class CrossBlockResult:
    """Everything one Phase 2 fit produces.

    Attributes
    ----------
    subject_embeddings
        ``subject_id, e0..e{seeds*width-1}``: every seed's CLS embedding side
        by side (seed-major), each scaled to unit mean variance (see
        :func:`seed_ensemble`; the factors are ``metrics["seed_scales"]``).
    block_importance
        ``block_id, chrom, start, end, importance_mean, importance_std,
        importance_seed_std, rank, importance_r2, importance_r2_distal,
        importance_z, importance_p, importance_p_empirical, importance_q,
        ld_only, ld_neighbours, attention_mean, cls_attention_mean,
        importance_seed{s}...`` (see ``_importance``). The statistic is the
        held-out predictability R2 of each block when hidden (the distal R2,
        neighbours hidden too, for ``ld_only`` blocks), tested against a
        permutation null; ``importance_mean`` is its positive part
        normalized to sum to 1, ``importance_std`` its null sd in the same
        units, ``importance_seed_std`` the spread across seeds, ``rank`` 1
        the most important block (ties broken by block order).
        ``attention_mean`` is the prediction-weighted attention on held-out
        subjects, ``cls_attention_mean`` the plain CLS attention (secondary).
        ``importance_cls_head`` is the share of seeds that scored the block
        with the CLS head (``config.importance_head``).
        ``screen_z, screen_p, screen_q, screen_partner`` are the linear
        cross-block screen on training subjects (``_screen``), which focuses
        training when ``metrics["screen"]["focus"]``.
    importance_by_seed
        ``(n_seeds, n_blocks)``; each row sums to 1.
    rank_stability
        Mean pairwise Spearman correlation of the seeds' importance vectors.
    importance
        The full :class:`~._importance.ImportanceResult` (null replicates included).
    distance_correlation
        Pearson correlation of pairwise subject distances, Phase 1
        (concatenated standardized block embeddings) vs Phase 2 (all seeds).
        ``metrics["distance_correlation_residual"]`` compares with Phase 1
        after the shared axes are removed, the space Phase 2 models.
    curves
        Per seed and epoch: losses and timing.
    state_dicts
        One CPU ``state_dict`` per seed (best validation epoch).
    metrics
        Summary numbers (JSON-serialisable).
    """

    subject_embeddings: pd.DataFrame
    block_importance: pd.DataFrame
    importance_by_seed: np.ndarray
    rank_stability: float
    distance_correlation: float
    curves: pd.DataFrame
    state_dicts: list[dict]
    metrics: dict = field(default_factory=dict)
    importance: object = None


# --------------------------------------------------------------------------- helpers
def effective_rank(embedding: np.ndarray) -> float:
    """exp(entropy) of the normalized singular values of the centered matrix.

    1 for a collapsed (rank-one) embedding, the width for an isotropic one.
    """
    centered = np.asarray(embedding, dtype=np.float64)
    centered = centered - centered.mean(axis=0)
    s = np.linalg.svd(centered, compute_uv=False)
    if s.sum() <= 0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _split(n_subjects: int, val_fraction: float, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint sorted train / validation (early stopping) / test (importance) subject indices."""
    if n_subjects < 4:
        raise ValueError(f"Phase 2 needs at least 4 subjects, got {n_subjects}")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_subjects)
    n_val = min(max(1, int(round(val_fraction * n_subjects))), n_subjects - 3)
    n_test = min(max(1, int(round(test_fraction * n_subjects))), n_subjects - n_val - 2)
    return np.sort(perm[n_val + n_test:]), np.sort(perm[:n_val]), np.sort(perm[n_val:n_val + n_test])


def _subsample(n_subjects: int, size: int, seed: int) -> np.ndarray:
    if n_subjects <= size:
        return np.arange(n_subjects)
    return np.sort(np.random.default_rng(seed).choice(n_subjects, size=size, replace=False))


# --------------------------------------------------------------------------- training
def _run_epoch(model, store, standardize, index, config, device, weight, generator, optimizer=None) -> dict[str, float]:
    """One pass over ``index``: trains when ``optimizer`` is given, else evaluates."""
    training = optimizer is not None
    model.train(training)
    sums = {"loss": 0.0, "token": 0.0, "cls": 0.0}
    n_seen = 0
    with torch.set_grad_enabled(training):
        for chunk, batch in store.iter_batches(index, config.batch_size):
            x = torch.from_numpy(standardize(batch)).to(device)
            mask = draw_block_mask(len(chunk), store.n_blocks, config.mask_fraction_min, config.mask_fraction_max, generator).to(device)
            out = model(x, mask)
            losses = model.masked_loss(out, x, mask, weight, config.cls_loss_weight)
            if training:
                optimizer.zero_grad(set_to_none=True)
                losses["loss"].backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
            for key in sums:
                sums[key] += float(losses[key].detach()) * len(chunk)
            n_seen += len(chunk)
    return {key: value / max(n_seen, 1) for key, value in sums.items()}


def _fit_one_seed(store, standardize, train_idx, val_idx, config, seed, device, log, block_weight=None):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = CrossBlockTransformer(store.dims, store.chrom_index(), store.position_mb(), config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    active = standardize.active if block_weight is None else standardize.active * block_weight[:, None]
    weight = torch.from_numpy(np.ascontiguousarray(active, dtype=np.float32)).to(device)
    train_gen = torch.Generator().manual_seed(seed)
    best_loss, best_state, best_epoch, stale = float("inf"), None, 0, 0
    rows = []
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        order = rng.permutation(train_idx)
        train = _run_epoch(model, store, standardize, order, config, device, weight, train_gen, optimizer)
        # The same validation masks every epoch, so val losses compare across epochs.
        val = _run_epoch(model, store, standardize, val_idx, config, device, weight, torch.Generator().manual_seed(10_000 + seed))
        seconds = time.perf_counter() - started
        rows.append({
            "seed": seed, "epoch": epoch,
            "train_loss": train["loss"], "train_token": train["token"], "train_cls": train["cls"],
            "val_loss": val["loss"], "val_token": val["token"], "val_cls": val["cls"],
            "lr": optimizer.param_groups[0]["lr"], "seconds": seconds,
        })
        if log is not None:
            log(f"seed {seed} epoch {epoch}: train {train['loss']:.4f} val {val['loss']:.4f} ({seconds:.1f}s)")
        if val["loss"] < best_loss - 1e-4:
            best_loss, best_epoch, stale = val["loss"], epoch, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= config.patience:
                break
    model.load_state_dict(best_state)
    return model, best_state, pd.DataFrame(rows), {"best_epoch": best_epoch, "best_val_loss": best_loss, "epochs_run": len(rows)}


def seed_ensemble(per_seed: list[np.ndarray], scales: list[float] | None = None) -> tuple[np.ndarray, list[float]]:
    """The subject embedding: every seed's CLS embedding side by side, each scaled to unit mean variance.

    Seeds' spaces are not aligned (averaging would blur them), and one seed is
    a gamble: on a 800-subject simulated cohort with fast presets, the three
    seeds' embeddings recovered the planted strata with ARI 0.01, 0.91 and
    0.95 (the first had stopped early on a plateau). Side by side, distances
    add over seeds, so a seed that missed a structure dilutes it instead of
    deciding. Each seed's block is scaled by one factor (its geometry kept) so
    every seed weighs the same. The factors are returned; pass them back as
    ``scales`` to embed new subjects in the same space (projection).
    """
    if scales is None:
        rms = [float(np.sqrt(e.astype(np.float64).var(axis=0).mean())) for e in per_seed]
        scales = [1.0 / r if r > 0 else 1.0 for r in rms]
    if len(scales) != len(per_seed):
        raise ValueError(f"{len(scales)} seed scales for {len(per_seed)} seed embeddings")
    blocks = [e * np.float32(scale) for e, scale in zip(per_seed, scales)]
    return np.concatenate(blocks, axis=1).astype(np.float32), [float(x) for x in scales]


@torch.no_grad()
def _encode(model, store, standardize, index, batch_size, device) -> np.ndarray:
    """CLS subject embeddings ``(len(index), width)`` from unmasked inputs."""
    model.eval()
    out = [model(torch.from_numpy(standardize(b)).to(device)).cls.cpu().numpy() for _, b in store.iter_batches(index, batch_size)]
    return np.concatenate(out).astype(np.float32)


def _distance_correlation(phase1: np.ndarray, phase2: np.ndarray) -> tuple[float, float]:
    """Pearson and Spearman correlation of pairwise Euclidean distances between two embeddings."""
    d1, d2 = pdist(phase1.reshape(len(phase1), -1)), pdist(phase2)
    if d1.std() == 0 or d2.std() == 0:
        return float("nan"), float("nan")
    return float(pearsonr(d1, d2)[0]), float(spearmanr(d1, d2)[0])


# The screen's cross-correlations need no more subjects than this to find a
# dependence Phase 2 could learn; it bounds the screen's memory at biobank size.
_SCREEN_SUBJECTS = 4000


def _screen_training(store, standardize, train_idx, config, log):
    """The linear cross-block screen on (at most ``_SCREEN_SUBJECTS``) training subjects, and its metrics."""
    started = time.perf_counter()
    sample = train_idx[_subsample(train_idx.size, _SCREEN_SUBJECTS, config.seeds[0] + 2)]
    neighbours = ld_neighbours(store.block_meta, config.importance_ld_window_mb)
    screen = cross_block_screen(standardize(store.get(sample)), standardize.active, neighbours)
    focus = config.focus_for(store.n_blocks)
    metrics = {"subjects": int(sample.size), "candidates": int(screen.candidates.sum()), "inflation": screen.inflation,
               "focus": bool(focus), "seconds": time.perf_counter() - started}
    if log is not None:
        log(f"cross-block screen: {metrics['candidates']} of {store.n_blocks} blocks depend on distal blocks (q < 0.05)"
            f"{'; training focuses on them' if focus and metrics['candidates'] else ''} ({metrics['seconds']:.1f}s)")
    return screen, metrics


def phase2_input_space(store: BlockEmbeddingStore, config: CrossBlockConfig):
    """The standardizer Phase 2 trains in, its (train, val, test) split and the shared-axes summary.

    Deterministic given the store and the config, so projection rebuilds the
    exact input space of a trained model from the reference's embeddings.
    """
    train_idx, val_idx, test_idx = _split(store.n_subjects, config.val_fraction, config.importance_fraction, config.seeds[0])
    sample = train_idx[_subsample(train_idx.size, config.importance_subjects, config.seeds[0])]
    standardize = Standardizer(store, train_idx, sample=sample)
    shared_summary = []
    if config.shared_factors != 0:
        standardize.shared, shared_summary = shared_axes(
            standardize(store.get(sample)), standardize.active, None if config.shared_factors < 0 else config.shared_factors
        )
    return standardize, (train_idx, val_idx, test_idx), shared_summary


def fit_cross_block(
    store: BlockEmbeddingStore,
    config: CrossBlockConfig | None = None,
    *,
    device: str | torch.device | None = None,
    log: Callable[[str], None] | None = None,
) -> CrossBlockResult:
    """Train one cross-block Transformer per seed and derive embeddings and block importance.

    Parameters
    ----------
    store
        Phase 1 embeddings of one cohort; subjects are streamed in mini-batches.
    config
        Hyper-parameters (default: ``CROSS_BLOCK_PRESETS["balanced"]``).
    device
        Torch device; None uses CUDA when available, else CPU.
    log
        Called with one line per epoch when given.

    Returns
    -------
    CrossBlockResult
        See its documentation. The train / validation / test split is the same
        for all seeds (drawn from the first seed) so their validation losses
        compare; validation subjects choose the best epoch, test subjects
        (``importance_fraction``) serve block importance only.

    Raises
    ------
    ValueError
        For a bad config, fewer than 2 blocks or fewer than 4 subjects.
    """
    config = (config or CrossBlockConfig()).validate()
    if store.n_blocks < 2:
        raise ValueError(f"Phase 2 needs at least 2 blocks (one to hide, one to see), got {store.n_blocks}")
    device = _resolve_device(device)
    started = time.perf_counter()
    standardize, (train_idx, val_idx, test_idx), shared_summary = phase2_input_space(store, config)
    dist_idx = _subsample(store.n_subjects, config.distance_subjects, config.seeds[0] + 1)

    # Importance is measured on a test split used for nothing else: the
    # validation split chose the best epoch, and measured on it the null blocks'
    # z-scores had mean 0.16 and sd 1.29 on the demo (0.00 and 1.08 untouched).
    imp_idx = test_idx[_subsample(test_idx.size, config.importance_subjects, config.seeds[0])]

    screen, screen_metrics = _screen_training(store, standardize, train_idx, config, log)
    block_weight = focus_weights(screen) if screen_metrics["focus"] else None
    screen_metrics["focus_weight"] = float(block_weight.max()) if block_weight is not None else 1.0

    curves, states, seed_metrics, models = [], [], {}, []
    per_seed = []
    for seed in config.seeds:
        model, state, curve, info = _fit_one_seed(store, standardize, train_idx, val_idx, config, seed, device, log, block_weight)
        curves.append(curve)
        states.append(state)
        models.append(model)
        seed_metrics[str(seed)] = info
        per_seed.append(_encode(model, store, standardize, np.arange(store.n_subjects), config.batch_size, device))
    subject_embedding, seed_scales = seed_ensemble(per_seed)

    importance_started = time.perf_counter()
    select = None
    if config.head_for(store.n_blocks) == "best":  # heads chosen on validation subjects, tested on others
        select = standardize(store.get(val_idx[_subsample(val_idx.size, config.importance_subjects, config.seeds[0] + 3)]))
    measured = measure_importance(models, standardize(store.get(imp_idx)), standardize.active, store.block_meta, config,
                                  device=device, x_select=select)
    importance_seconds = time.perf_counter() - importance_started
    for seed, r2 in zip(config.seeds, measured.r2_by_seed):
        seed_metrics[str(seed)]["hidden_block_r2_mean"] = float(r2.mean())
    if log is not None:
        log(f"block importance: {config.importance_permutations} null permutations on {imp_idx.size} held-out subjects "
            f"({importance_seconds:.1f}s), {int((measured.q < 0.05).sum())} block(s) at q < 0.05")
    by_seed = measured.by_seed
    stability = rank_stability(by_seed)
    raw = store.get(dist_idx)
    pearson, spearman = _distance_correlation(standardize.standardized(raw), subject_embedding[dist_idx])
    # Phase 2 models what is left after removing shared axes; compare with that too.
    residual_pearson, _ = _distance_correlation(standardize(raw), subject_embedding[dist_idx])
    table = importance_table(store.block_meta, config.seeds, measured)
    table = table.merge(screen.table(store.block_ids), on="block_id", how="left", validate="one_to_one")
    embeddings = pd.DataFrame(subject_embedding, columns=[f"e{i}" for i in range(subject_embedding.shape[1])])
    embeddings.insert(0, "subject_id", store.subject_ids)
    curves_df = pd.concat(curves, ignore_index=True)
    metrics = {
        "n_subjects": store.n_subjects,
        "n_blocks": store.n_blocks,
        "n_train": int(train_idx.size),
        "n_val": int(val_idx.size),
        "n_test": int(test_idx.size),
        "device": str(device),
        "seconds": time.perf_counter() - started,
        "seeds": seed_metrics,
        "final_val_loss": float(np.mean([m["best_val_loss"] for m in seed_metrics.values()])),
        "embedding_dim_variance_min": float(subject_embedding.var(axis=0).min()),
        "embedding_layout": "seed-major: columns e{j*width+i} hold seed j's CLS dimension i, times seed_scales[j]",
        "embedding_width": int(config.width),
        # 0: dense; w > 0: each block token attends to the CLS token and to 3 windows of w blocks
        "attention_window": int(config.window_for(store.n_blocks)),
        "seed_scales": seed_scales,
        "embedding_effective_rank": effective_rank(subject_embedding),
        "rank_stability": stability,
        "top_block_agreement": top_block_agreement(by_seed, measured.q < 0.05),
        "distance_correlation": pearson,
        "distance_correlation_spearman": spearman,
        "distance_correlation_residual": residual_pearson,
        "distance_subjects": int(dist_idx.size),
        "importance_subjects": int(imp_idx.size),
        "importance_seconds": importance_seconds,
        "importance_significant_blocks": int((measured.q < 0.05).sum()),
        "importance_ld_only_blocks": int(measured.ld_only.sum()),
        "importance_head": config.head_for(store.n_blocks),
        "importance_cls_head_share": float(measured.cls_head.mean()),
        "active_latent_dims": int(standardize.active.sum()),
        "shared_factors_removed": 0 if standardize.shared is None else int(standardize.shared.shape[1]),
        "shared_factor_summary": shared_summary,
        "screen": screen_metrics,
        "config": asdict(config),
    }
    return CrossBlockResult(embeddings, table, by_seed, stability, pearson, curves_df, states, metrics, measured)

