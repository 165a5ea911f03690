"""Phase 2 artifacts: the result's files written atomically, and the block-importance figure (no Dagster)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from .. import storage

if TYPE_CHECKING:
    from ._cross_block_training import CrossBlockResult

__all__ = ["plot_block_importance", "save_cross_block_result"]


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
    ``genes`` column, shortened), with ``*`` for blocks that beat their
    permutation null (``importance_q < 0.05``) and ``(LD)`` for ``ld_only``
    ones; significant bars are blue, the others grey. Written atomically as PNG.

    A cohort with more than ``max_blocks`` blocks (genome-wide: ~1,700) gets a
    Manhattan plot instead: importance / uniform by genomic position, blocks at
    ``importance_q < 0.05`` in red, the top blocks named by their genes.
    """
    if len(block_importance) > max_blocks and {"chrom", "start", "end"} <= set(block_importance.columns):
        from ..analysis.manhattan import plot_manhattan
        from ..analysis.regions import short_gene_label

        ids = block_importance["block_id"].astype(str)
        uniform = 1.0 / len(block_importance)
        genes = block_importance["genes"].fillna("").astype(str) if "genes" in block_importance else pd.Series("", index=ids.index)
        q = block_importance["importance_q"] if "importance_q" in block_importance else pd.Series(np.nan, index=ids.index)
        significant = pd.Series((q < 0.05).to_numpy(), index=ids)
        return plot_manhattan(
            pd.Series(block_importance["importance_mean"].to_numpy(float) / uniform, index=ids), block_importance, path,
            labels={b: short_gene_label(g, 2) for b, g in zip(ids, genes) if g}, top=12, threshold=1.0,
            threshold_label="uniform (1 / n_blocks)", highlight=significant, ylabel="mean importance / uniform",
            title=f"Block importance (held-out R2 vs permutation null): {len(block_importance)} blocks, "
                  f"{int(significant.sum())} at q < 0.05 (red)",
        )
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
        star = "*" if float(row.get("importance_q", 1.0)) < 0.05 else " "
        ld = " (LD)" if bool(row.get("ld_only", False)) else ""
        labels.append(f"{int(row['rank']):>3}{star} {row['block_id']}{ld}  {genes}".rstrip())
    height = max(3.0, 0.28 * len(table) + 1.5)
    fig, (ax_heat, ax_bar) = plt.subplots(1, 2, figsize=(11, height), gridspec_kw={"width_ratios": [max(len(seed_cols), 2), 3]}, sharey=True)
    image = ax_heat.imshow(values / uniform, aspect="auto", cmap="viridis")
    ax_heat.set_xticks(range(len(seed_cols)), [c.replace("importance_", "") for c in seed_cols], rotation=45, ha="right")
    ax_heat.set_yticks(range(len(table)), labels, fontsize=8)
    ax_heat.set_title("importance / uniform, per seed")
    fig.colorbar(image, ax=ax_heat, fraction=0.08, pad=0.02)
    err = table["importance_seed_std"].fillna(0).to_numpy() / uniform if "importance_seed_std" in table else None
    significant = table["importance_q"].to_numpy(float) < 0.05 if "importance_q" in table else np.ones(len(table), bool)
    ax_bar.barh(range(len(table)), table["importance_mean"].to_numpy() / uniform, xerr=err,
                color=np.where(significant, "tab:blue", "lightgrey"))
    ax_bar.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    ax_bar.set_xlabel("mean importance / uniform (+- seed sd)")
    # imshow already puts row 0 (rank 1) on top and the bars share that axis.
    n_sig = int((block_importance["importance_q"] < 0.05).sum()) if "importance_q" in block_importance else 0
    fig.suptitle(f"Block importance (held-out R2 vs permutation null): top {len(table)} of {len(block_importance)} blocks, "
                 f"{n_sig} at q < 0.05 (*)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    with storage.atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return Path(path)
