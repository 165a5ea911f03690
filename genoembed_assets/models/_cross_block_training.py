"""Training, block importance and artifacts of the Phase 2 cross-block Transformer.

Pure torch/numpy/pandas/matplotlib, no Dagster. The entry point is
:func:`fit_cross_block`; :func:`save_cross_block_result` writes the Phase 2
artifacts of ``docs/design.md`` atomically.
"""

from __future__ import annotations

import io
import itertools
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from scipy.spatial.distance import pdist
from scipy.stats import pearsonr, spearmanr

from .. import storage
from ._cross_block import CrossBlockConfig, CrossBlockTransformer
from ._embedding_store import BlockEmbeddingStore

__all__ = [
    "CrossBlockResult",
    "shared_axes",
    "draw_block_mask",
    "effective_rank",
    "fit_cross_block",
    "plot_block_importance",
    "rank_stability",
    "save_cross_block_result",
]

# A Phase 1 latent whose spread is under this fraction of its block's largest
# one is a collapsed VAE unit: standardizing it would turn noise into signal.
_ACTIVE_DIM_RATIO = 0.01


@dataclass
class CrossBlockResult:
    """Everything one Phase 2 fit produces.

    Attributes
    ----------
    subject_embeddings
        ``subject_id, e0..e{width-1}``: CLS embeddings from the FIRST seed's
        model (seeds' spaces are not aligned, so averaging would blur them).
    block_importance
        ``block_id, chrom, start, end, importance_mean, importance_std,
        importance_seed_std, importance_head_std, rank, importance_seed{s}...``.
        Importance is the prediction-weighted attention that hidden-block
        queries pay to each visible block (see ``_block_importance``),
        averaged over layers and heads, normalized to sum to 1 per subject.
        ``importance_mean`` averages over seeds the per-seed mean over subjects;
        ``importance_std`` is the spread across subjects (mean over seeds),
        ``importance_seed_std`` across seeds and ``importance_head_std`` across
        heads. ``cls_attention_mean`` is the plain CLS attention (secondary).
        Rank 1 is the most important block.
    importance_by_seed
        ``(n_seeds, n_blocks)``; each row sums to 1.
    rank_stability
        Mean pairwise Spearman correlation of the seeds' importance vectors.
    distance_correlation
        Pearson correlation of pairwise subject distances, Phase 1
        (concatenated standardized block embeddings) vs Phase 2 (first seed).
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


# --------------------------------------------------------------------------- helpers
def draw_block_mask(n: int, n_blocks: int, fraction_min: float, fraction_max: float, generator: torch.Generator) -> torch.Tensor:
    """Boolean ``(n, n_blocks)`` mask hiding a per-subject random fraction of blocks.

    The fraction is uniform in ``[fraction_min, fraction_max]``; at least one
    block is hidden and at least one stays visible.
    """
    fraction = fraction_min + (fraction_max - fraction_min) * torch.rand(n, generator=generator)
    count = torch.clamp(torch.round(fraction * n_blocks), 1, n_blocks - 1).long()
    ranks = torch.rand(n, n_blocks, generator=generator).argsort(dim=1).argsort(dim=1)
    return ranks < count[:, None]


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


def rank_stability(importance_by_seed: np.ndarray) -> float:
    """Mean pairwise Spearman correlation between seeds' importance vectors (nan for one seed)."""
    rows = np.asarray(importance_by_seed)
    values = [spearmanr(rows[i], rows[j])[0] for i, j in itertools.combinations(range(len(rows)), 2)]
    return float(np.mean(values)) if values else float("nan")


class _Standardizer:
    """Per block: z-scores, then whitening, from training subjects; collapsed dims zeroed.

    Whitening each block (ridge-regularized inverse square root of its
    covariance) makes every block contribute decorrelated unit-variance
    dimensions, so what remains correlated across the concatenation is
    correlation BETWEEN blocks. With ``shared`` (``(D, r)`` orthonormal axes in
    the concatenated whitened space) the projection on those axes is removed.
    """

    def __init__(self, store: BlockEmbeddingStore, index: np.ndarray, *, sample: np.ndarray | None = None):
        mean, std = store.block_stats(index)
        real = np.arange(store.k_max)[None, :] < store.dims[:, None]
        block_max = np.where(real, std, 0).max(axis=1, keepdims=True)
        active = real & (std > _ACTIVE_DIM_RATIO * block_max) & (std > 1e-8)
        self.mean = mean.astype(np.float32)
        self.scale = np.where(active, 1.0 / np.where(active, std, 1.0), 0.0).astype(np.float32)
        self.active = active.astype(np.float32)
        self.shared: np.ndarray | None = None
        z = self.standardized(store.get(index if sample is None else sample)).astype(np.float64)
        z -= z.mean(axis=0)
        self.whiten = np.stack([_ridge_whitener(z[:, b, :], active[b]) for b in range(store.n_blocks)]).astype(np.float32)

    def standardized(self, batch: np.ndarray) -> np.ndarray:
        """Per-dimension z-scores (the Phase 1 space of the distance correlation)."""
        return (batch - self.mean) * self.scale

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        z = np.einsum("nbk,bkj->nbj", self.standardized(batch), self.whiten)
        if self.shared is None or self.shared.shape[1] == 0:
            return z.astype(np.float32, copy=False)
        flat = z.reshape(len(z), -1)
        flat = flat - (flat @ self.shared) @ self.shared.T
        return flat.reshape(z.shape).astype(np.float32, copy=False)


def _ridge_whitener(z: np.ndarray, active: np.ndarray, ridge: float = 0.05) -> np.ndarray:
    """``(k, k)`` matrix W with ``cov(z @ W)`` close to identity on the active dims.

    The ridge (a fraction of the mean eigenvalue) keeps near-empty directions
    from being blown up into noise of unit variance.
    """
    k = z.shape[1]
    w = np.zeros((k, k))
    idx = np.flatnonzero(active)
    if idx.size == 0:
        return w
    cov = np.cov(z[:, idx], rowvar=False).reshape(idx.size, idx.size)
    values, vectors = np.linalg.eigh(cov)
    values = np.maximum(values, 0) + ridge * max(values.mean(), 1e-12)
    w[np.ix_(idx, idx)] = vectors @ np.diag(values**-0.5) @ vectors.T
    return w


def shared_axes(
    z: np.ndarray, active: np.ndarray, n_factors: int | None, *, max_factors: int = 20, min_block_share: float = 0.5
) -> tuple[np.ndarray, list[dict]]:
    """Axes of variation that every block shares (ancestry), to be regressed out.

    Parameters
    ----------
    z
        Block-whitened embeddings of a subject subsample, ``(n, blocks, k_max)``
        (whitening keeps block-specific structure from passing the noise edge).
    active
        ``(blocks, k_max)`` 1 for dimensions in use.
    n_factors
        Number of leading principal components to remove; None picks them:
        a component is shared when its variance exceeds the Marchenko-Pastur
        noise edge and its loadings spread over at least ``min_block_share``
        of the blocks (effective number of blocks = exp entropy of the
        per-block loading mass). A factor only a few blocks carry (a planted
        stratum in the HLA blocks) is kept: it is what Phase 2 should find.

    Returns
    -------
    axes
        ``(blocks * k_max, r)`` orthonormal axes in the flattened space.
    summary
        Per inspected component: variance, noise edge, effective blocks, shared.
    """
    n, n_blocks, k_max = z.shape
    flat = (z * active).reshape(n, -1).astype(np.float64)
    flat = flat - flat.mean(axis=0)
    _, s, vt = np.linalg.svd(flat, full_matrices=False)
    variance = s**2 / max(n - 1, 1)
    n_dims = max(int(active.sum()), 1)
    edge = (1 + np.sqrt(n_dims / n)) ** 2  # noise edge for unit-variance dimensions
    chosen, summary = [], []
    for i in range(min(max_factors, len(s))):
        mass = (vt[i].reshape(n_blocks, k_max) ** 2).sum(axis=1)
        mass = mass / mass.sum()
        nz = mass[mass > 0]
        eff_blocks = float(np.exp(-(nz * np.log(nz)).sum()))
        if n_factors is None:
            shared = bool(variance[i] > edge and eff_blocks >= min_block_share * n_blocks)
        else:
            shared = i < n_factors
        summary.append({"component": i, "variance": float(variance[i]), "noise_edge": float(edge), "effective_blocks": eff_blocks, "shared": shared})
        if shared:
            chosen.append(i)
    return vt[chosen].T.astype(np.float32), summary


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _split(n_subjects: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if n_subjects < 4:
        raise ValueError(f"Phase 2 needs at least 4 subjects, got {n_subjects}")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_subjects)
    n_val = min(max(1, int(round(val_fraction * n_subjects))), n_subjects - 2)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


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


def _fit_one_seed(store, standardize, train_idx, val_idx, config, seed, device, log):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = CrossBlockTransformer(store.dims, store.chrom_index(), store.position_mb(), config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    weight = torch.from_numpy(standardize.active).to(device)
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
            "lr": config.lr, "seconds": seconds,
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


@torch.no_grad()
def _encode(model, store, standardize, index, batch_size, device) -> np.ndarray:
    """CLS subject embeddings ``(len(index), width)`` from unmasked inputs."""
    model.eval()
    out = [model(torch.from_numpy(standardize(b)).to(device)).cls.cpu().numpy() for _, b in store.iter_batches(index, batch_size)]
    return np.concatenate(out).astype(np.float32)


def _normalize(values: torch.Tensor) -> torch.Tensor:
    return values / values.sum(dim=-1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def _block_importance(model, store, standardize, index, config, device, seed) -> dict[str, np.ndarray]:
    """Prediction-weighted attention from hidden blocks to visible blocks.

    Pass 1 hides random blocks (``importance_mask_draws`` draws per subject)
    and measures, per block, how well the token head predicts it when hidden
    (R^2 on the standardized residual embedding, clipped at 0). Pass 2 repeats
    the same masks and lets each hidden block's attention row (averaged over
    layers) count with that weight, so blocks nobody can predict (noise once
    shared ancestry is removed) do not spread their arbitrary attention.

    Returns per-subject importance ``(n, blocks)`` (rows sum to 1), per-head
    means ``(heads, blocks)``, CLS attention means ``(blocks,)`` and the R^2.
    """
    model.eval()
    weight = torch.from_numpy(standardize.active).to(device)
    n_blocks = store.n_blocks

    def masks(n_rows, generator):
        return [draw_block_mask(n_rows, n_blocks, config.mask_fraction_min, config.mask_fraction_max, generator).to(device) for _ in range(config.importance_mask_draws)]

    err = torch.zeros(n_blocks, dtype=torch.float64, device=device)
    var = torch.zeros_like(err)
    generator = torch.Generator().manual_seed(20_000 + seed)
    for _, batch in store.iter_batches(index, config.batch_size):
        x = torch.from_numpy(standardize(batch)).to(device)
        for mask in masks(len(x), generator):
            out = model(x, mask)
            hidden = mask.double()
            err += ((((out.token_pred - x) ** 2) * weight).sum(-1) * hidden).sum(0)
            var += (((x**2) * weight).sum(-1) * hidden).sum(0)
    r2 = (1 - err / var.clamp_min(1e-12)).clamp_min(0.0)
    # A small floor keeps the measure defined when nothing is predictable.
    query_weight = (r2 + 1e-3).float()

    per_subject, head_sum, cls_sum = [], None, None
    generator = torch.Generator().manual_seed(20_000 + seed)  # the same masks as pass 1
    for _, batch in store.iter_batches(index, config.batch_size):
        x = torch.from_numpy(standardize(batch)).to(device)
        total = torch.zeros(len(x), n_blocks, dtype=torch.float64, device=device)
        seen = torch.zeros_like(total)
        for mask in masks(len(x), generator):
            out = model(x, mask, return_attention=True, query_weight=mask.float() * query_weight)
            visible = (~mask).double()
            # Received attention counts only on visible keys; per draw a distribution over them.
            received = out.received_attention.double().mean(dim=1) * visible[:, None, :]  # (n, heads, blocks)
            heads = _normalize(received)
            head_sum = heads.sum(0) if head_sum is None else head_sum + heads.sum(0)
            total += _normalize(received.mean(dim=1))
            seen += visible
        per_subject.append(_normalize(total / seen.clamp_min(1)).cpu().numpy())
        cls = _normalize(model(x, return_attention=True).cls_attention.double()).mean(dim=(1, 2))
        cls_sum = cls.sum(0) if cls_sum is None else cls_sum + cls.sum(0)
    n_draws = len(index) * config.importance_mask_draws
    return {
        "per_subject": np.concatenate(per_subject),
        "heads": _normalize(head_sum / n_draws).cpu().numpy(),
        "cls": (cls_sum / len(index)).cpu().numpy(),
        "r2": r2.cpu().numpy(),
    }


def _distance_correlation(phase1: np.ndarray, phase2: np.ndarray) -> tuple[float, float]:
    """Pearson and Spearman correlation of pairwise Euclidean distances between two embeddings."""
    d1, d2 = pdist(phase1.reshape(len(phase1), -1)), pdist(phase2)
    if d1.std() == 0 or d2.std() == 0:
        return float("nan"), float("nan")
    return float(pearsonr(d1, d2)[0]), float(spearmanr(d1, d2)[0])


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
        See its documentation. The train/validation split is the same for all
        seeds (drawn from the first seed) so their validation losses compare.

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
    train_idx, val_idx = _split(store.n_subjects, config.val_fraction, config.seeds[0])
    sample = train_idx[_subsample(train_idx.size, config.importance_subjects, config.seeds[0])]
    standardize = _Standardizer(store, train_idx, sample=sample)
    imp_idx = _subsample(store.n_subjects, config.importance_subjects, config.seeds[0])
    shared_summary = []
    if config.shared_factors != 0:
        standardize.shared, shared_summary = shared_axes(
            standardize(store.get(sample)), standardize.active, None if config.shared_factors < 0 else config.shared_factors
        )
    dist_idx = _subsample(store.n_subjects, config.distance_subjects, config.seeds[0] + 1)

    curves, states, seed_metrics = [], [], {}
    importance, subject_std, head_means, cls_attention = [], [], [], []
    subject_embedding = None
    for seed in config.seeds:
        model, state, curve, info = _fit_one_seed(store, standardize, train_idx, val_idx, config, seed, device, log)
        measured = _block_importance(model, store, standardize, imp_idx, config, device, seed)
        info["hidden_block_r2_mean"] = float(measured["r2"].mean())
        curves.append(curve)
        states.append(state)
        seed_metrics[str(seed)] = info
        importance.append(measured["per_subject"].mean(axis=0))
        subject_std.append(measured["per_subject"].std(axis=0))
        head_means.append(measured["heads"])
        cls_attention.append(measured["cls"])
        if subject_embedding is None:
            subject_embedding = _encode(model, store, standardize, np.arange(store.n_subjects), config.batch_size, device)

    by_seed = np.vstack(importance)
    by_seed = by_seed / by_seed.sum(axis=1, keepdims=True)
    stability = rank_stability(by_seed)
    raw = store.get(dist_idx)
    pearson, spearman = _distance_correlation(standardize.standardized(raw), subject_embedding[dist_idx])
    # Phase 2 models what is left after removing shared axes; compare with that too.
    residual_pearson, _ = _distance_correlation(standardize(raw), subject_embedding[dist_idx])
    table = _importance_table(store, config, by_seed, np.vstack(subject_std), head_means, np.vstack(cls_attention))
    embeddings = pd.DataFrame(subject_embedding, columns=[f"e{i}" for i in range(subject_embedding.shape[1])])
    embeddings.insert(0, "subject_id", store.subject_ids)
    curves_df = pd.concat(curves, ignore_index=True)
    metrics = {
        "n_subjects": store.n_subjects,
        "n_blocks": store.n_blocks,
        "n_train": int(train_idx.size),
        "n_val": int(val_idx.size),
        "device": str(device),
        "seconds": time.perf_counter() - started,
        "seeds": seed_metrics,
        "final_val_loss": float(np.mean([m["best_val_loss"] for m in seed_metrics.values()])),
        "embedding_dim_variance_min": float(subject_embedding.var(axis=0).min()),
        "embedding_effective_rank": effective_rank(subject_embedding),
        "rank_stability": stability,
        "distance_correlation": pearson,
        "distance_correlation_spearman": spearman,
        "distance_correlation_residual": residual_pearson,
        "distance_subjects": int(dist_idx.size),
        "importance_subjects": int(imp_idx.size),
        "active_latent_dims": int(standardize.active.sum()),
        "shared_factors_removed": 0 if standardize.shared is None else int(standardize.shared.shape[1]),
        "shared_factor_summary": shared_summary,
        "config": asdict(config),
    }
    return CrossBlockResult(embeddings, table, by_seed, stability, pearson, curves_df, states, metrics)


def _importance_table(store, config, by_seed, subject_std, head_means, cls_attention) -> pd.DataFrame:
    table = store.block_meta[["block_id", "chrom", "start", "end"]].copy()
    table["importance_mean"] = by_seed.mean(axis=0)
    table["importance_std"] = subject_std.mean(axis=0)
    table["importance_seed_std"] = by_seed.std(axis=0, ddof=1) if len(by_seed) > 1 else 0.0
    # head_means: seeds x (heads, blocks) -> spread across heads, averaged over seeds
    table["importance_head_std"] = np.stack(head_means).std(axis=1).mean(axis=0)
    table["cls_attention_mean"] = cls_attention.mean(axis=0)
    table["rank"] = table["importance_mean"].rank(ascending=False, method="min").astype(int)
    for seed, row in zip(config.seeds, by_seed):
        table[f"importance_seed{seed}"] = row
    return table


# --------------------------------------------------------------------------- artifacts
def save_cross_block_result(result: CrossBlockResult, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write the Phase 2 artifacts of ``docs/design.md`` atomically into ``out_dir``.

    Returns the written paths by name: ``subject_embeddings``,
    ``block_importance``, ``curve``, ``metrics``, ``model_seed{s}``.
    """
    out_dir = Path(out_dir)
    written = {
        "subject_embeddings": storage.write_parquet(out_dir / "subject_embeddings.parquet", result.subject_embeddings),
        "block_importance": storage.write_parquet(out_dir / "block_importance.parquet", result.block_importance),
    }
    with storage.atomic_path(out_dir / "curve.csv") as tmp:
        result.curves.to_csv(tmp, index=False)
    written["curve"] = out_dir / "curve.csv"
    seeds = result.metrics.get("config", {}).get("seeds", range(len(result.state_dicts)))
    for seed, state in zip(seeds, result.state_dicts):
        path = out_dir / f"model_seed{seed}.pt"
        with storage.atomic_path(path) as tmp:
            torch.save(state, tmp)
        written[f"model_seed{seed}"] = path
    written["metrics"] = storage.write_json(out_dir / "metrics.json", result.metrics)
    return written


def plot_block_importance(block_importance: pd.DataFrame, path: str | os.PathLike, *, max_blocks: int = 40) -> Path:
    """Heatmap of block importance, top ``max_blocks`` blocks (rows) x seeds, plus mean +- seed spread.

    Row labels read ``rank  block_id  genes`` (genes when the table has a
    ``genes`` column, shortened). Written atomically as PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = block_importance.sort_values("rank").head(max_blocks).reset_index(drop=True)
    seed_cols = [c for c in table.columns if c.startswith("importance_seed") and c[len("importance_seed"):].isdigit()]
    if not seed_cols:
        seed_cols = ["importance_mean"]
    values = table[seed_cols].to_numpy(float)
    # Importance relative to uniform (1 / n_blocks) reads the same for any cohort size.
    uniform = 1.0 / len(block_importance)
    labels = []
    for _, row in table.iterrows():
        genes = str(row.get("genes", "") or "")
        genes = genes if len(genes) <= 28 else genes[:26] + ".."
        labels.append(f"{int(row['rank']):>3}  {row['block_id']}  {genes}".rstrip())
    height = max(3.0, 0.28 * len(table) + 1.5)
    fig, (ax_heat, ax_bar) = plt.subplots(1, 2, figsize=(11, height), gridspec_kw={"width_ratios": [max(len(seed_cols), 2), 3]}, sharey=True)
    image = ax_heat.imshow(values / uniform, aspect="auto", cmap="viridis")
    ax_heat.set_xticks(range(len(seed_cols)), [c.replace("importance_", "") for c in seed_cols], rotation=45, ha="right")
    ax_heat.set_yticks(range(len(table)), labels, fontsize=8)
    ax_heat.set_title("importance / uniform, per seed")
    fig.colorbar(image, ax=ax_heat, fraction=0.08, pad=0.02)
    err = table["importance_seed_std"].fillna(0).to_numpy() / uniform if "importance_seed_std" in table else None
    ax_bar.barh(range(len(table)), table["importance_mean"].to_numpy() / uniform, xerr=err, color="tab:blue")
    ax_bar.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    ax_bar.set_xlabel("mean importance / uniform (+- seed sd)")
    # imshow already puts row 0 (rank 1) on top and the bars share that axis.
    fig.suptitle(f"Block importance: top {len(table)} of {len(block_importance)} blocks")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    with storage.atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return Path(path)
