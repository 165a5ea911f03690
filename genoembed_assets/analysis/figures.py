"""PNG figures for each analysis (matplotlib object API, no pyplot state).

Every ``plot_*`` function takes the :class:`AnalysisResult` of its analysis and
an output path, writes the PNG atomically and returns the path. Figures are
built with :class:`matplotlib.figure.Figure` directly, so no global backend or
pyplot state is touched (safe in Dagster worker processes and threads).
``block_labels`` maps block IDs to gene names shown beside them. Given the
cohort's block table (``blocks``), the driver and association figures of a
cohort with more than ``MANHATTAN_MIN_BLOCKS`` blocks are Manhattan plots by
genomic position (``manhattan.py``) instead of bar lists of names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .. import storage
from .features import AnalysisResult, is_skipped
from .manhattan import MANHATTAN_MIN_BLOCKS, manhattan_figure

__all__ = [
    "association_manhattan",
    "drivers_manhattan",
    "plot_association",
    "plot_block_features",
    "plot_clusters",
    "plot_drivers",
    "plot_geometry",
    "plot_leave_region_out",
    "plot_locus",
    "plot_summary",
    "save_figure",
]

DPI = 110
KIND_COLOURS = {"block": "#1f77b4", "genotype_pc": "#d62728", "embedding": "#2ca02c"}


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as PNG through a temporary file (atomic)."""
    with storage.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    return Path(path)


def _label(feature: str, block_labels: Mapping[str, str] | None) -> str:
    genes = (block_labels or {}).get(feature, "")
    return f"{feature} ({genes})" if genes else str(feature)


def _bars(ax, names, values, colours, xlabel):
    y = np.arange(len(names))[::-1]
    ax.barh(y, values, color=colours)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)


def plot_clusters(result: AnalysisResult, path: str | os.PathLike) -> Path:
    """PCA scatter coloured by cluster, and the k scan (silhouette, stability)."""
    table, scan, s = result.table, result.tables["k_scan"], result.summary
    fig = Figure(figsize=(11, 4.5))
    ax, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1]})
    for c in sorted(table["cluster"].unique()):
        part = table[table["cluster"] == c]
        ax.scatter(part["pc1"], part["pc2"], s=8, alpha=0.7, label=f"cluster {c} (n={len(part)})")
    ax.set_xlabel("PC1 of clustered features")
    ax.set_ylabel("PC2")
    adjusted = "ancestry-adjusted" if s["adjusted_for_ancestry"] else "unadjusted"
    ax.set_title(f"Subject clusters ({adjusted}), k={s['k']}")
    ax.legend(fontsize=8, markerscale=2)
    ax2.plot(scan["k"], scan["silhouette"], "o-", label="silhouette")
    ax2.plot(scan["k"], scan["stability_ari"], "s-", label="stability (mean ARI)")
    ax2.axvline(s["k"], color="grey", ls="--", lw=1)
    ax2.set_xlabel("k")
    ax2.set_ylim(min(0, scan["silhouette"].min()) - 0.05, 1.05)
    ax2.set_title(f"k choice; HDBSCAN: {s['hdbscan_n_clusters']} clusters, {s['hdbscan_noise_fraction']:.0%} noise")
    ax2.legend(fontsize=8)
    return save_figure(fig, path)


def plot_block_features(features: pd.DataFrame, path: str | os.PathLike, block_labels: Mapping[str, str] | None = None, max_blocks: int = 60) -> Path:
    """Heatmap of correlations between block PC1 features (``subject_id, <block>...``).

    Unlinked blocks should be near 0 once ancestry is regressed out; blocks
    sharing a hidden structure show up as a correlated square.
    """
    cols = [c for c in features.columns if c != "subject_id"][:max_blocks]
    values = features[cols].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(values, rowvar=False) if len(cols) > 1 else np.ones((1, 1))
    size = min(12, 3 + 0.18 * len(cols))
    fig = Figure(figsize=(size + 1.5, size))
    ax = fig.subplots()
    image = ax.imshow(np.nan_to_num(np.atleast_2d(corr)), cmap="RdBu_r", vmin=-1, vmax=1)
    names = [_label(c, block_labels) for c in cols]
    ax.set_xticks(range(len(cols)), names, fontsize=6, rotation=90)
    ax.set_yticks(range(len(cols)), names, fontsize=6)
    ax.set_title(f"Block PC1 features: correlation across {len(features)} subjects ({len(cols)} blocks)", fontsize=9)
    fig.colorbar(image, ax=ax, label="Pearson r", shrink=0.8)
    return save_figure(fig, path)


def _many_blocks(table: pd.DataFrame, blocks: pd.DataFrame | None) -> bool:
    return blocks is not None and int((table["kind"] == "block").sum()) > MANHATTAN_MIN_BLOCKS


def drivers_manhattan(result: AnalysisResult, blocks: pd.DataFrame, block_labels: Mapping[str, str] | None = None, top: int = 10) -> Figure:
    """Each block's eta squared (or r2 with axis 1 without discrete clusters) by position; the best genotype PC as a line."""
    table, s = result.table, result.summary
    score = "eta2" if s.get("explains", "cluster membership") == "cluster membership" else "r2_axis1"
    rows = table[table["kind"] == "block"]
    best_pc = table[table["kind"] == "genotype_pc"].sort_values(score, ascending=False).head(1)
    line = float(best_pc[score].iloc[0]) if len(best_pc) else None
    return manhattan_figure(
        pd.Series(rows[score].to_numpy(float), index=rows["feature"].astype(str)), blocks, labels=block_labels, top=top,
        threshold=line, threshold_label=f"best genotype PC ({best_pc['feature'].iloc[0]}): {line:.2f}" if line is not None else "",
        ylabel="eta squared (cluster membership)" if score == "eta2" else "r2 with clustered axis 1",
        title=f"What drives the clusters: {s['leading_feature']} leads ({score}={s['leading_eta2']:.2f}); "
              f"best genotype PC {s['top_genotype_pc']} ({s['top_genotype_pc_eta2']:.2f}); {len(rows)} blocks",
    )


def plot_drivers(result: AnalysisResult, path: str | os.PathLike, top: int = 20, block_labels: Mapping[str, str] | None = None,
                 blocks: pd.DataFrame | None = None) -> Path:
    """Bars of eta squared for the top features, blocks vs genotype PCs (a Manhattan plot for many ``blocks``)."""
    if _many_blocks(result.table, blocks):
        return save_figure(drivers_manhattan(result, blocks, block_labels), path)
    table = result.table.head(top)
    best_pc = result.table[result.table["kind"] == "genotype_pc"].head(1)
    if len(best_pc) and not best_pc["feature"].isin(table["feature"]).all():
        table = pd.concat([table.head(top - 1), best_pc])  # always show ancestry for contrast
    fig = Figure(figsize=(8, 0.3 * len(table) + 1.8))
    ax = fig.subplots()
    _bars(ax, [_label(f, block_labels) for f in table["feature"]], table["eta2"], [KIND_COLOURS[k] for k in table["kind"]], "eta squared (cluster membership)")
    s = result.summary
    ax.set_title(f"What drives the clusters: {s['leading_feature']} leads (eta2={s['leading_eta2']:.2f}); best genotype PC {s['top_genotype_pc']} ({s['top_genotype_pc_eta2']:.2f})", fontsize=9)
    handles = [Patch(color=c, label=k) for k, c in KIND_COLOURS.items() if k in set(table["kind"])]
    ax.legend(handles=handles, fontsize=8, loc="lower right")
    return save_figure(fig, path)


def plot_leave_region_out(result: AnalysisResult, path: str | os.PathLike, top: int = 15, block_labels: Mapping[str, str] | None = None) -> Path:
    """Eta squared of the new clusters by the remaining blocks, old clusters beside."""
    table = result.table.head(top)
    s = result.summary
    fig = Figure(figsize=(8, 0.32 * len(table) + 1.8))
    ax = fig.subplots()
    y = np.arange(len(table))[::-1]
    ax.barh(y + 0.2, table["eta2"], height=0.4, color="#1f77b4", label="new clusters")
    ax.barh(y - 0.2, table["eta2_old"], height=0.4, color="#aaaaaa", label="original clusters")
    ax.set_yticks(y, [_label(f, block_labels) for f in table["feature"]], fontsize=8)
    ax.set_xlabel("eta squared")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(
        f"Without {', '.join(s['regions'])} ({s['n_dropped']} blocks dropped):\n{s['leading_block']} leads; ARI old vs new {s['ari_old_new']:.2f}",
        fontsize=9,
    )
    return save_figure(fig, path)


def _q_line(table: pd.DataFrame, q_level: float) -> float | None:
    """-log10 of the largest p still at q < ``q_level`` (None when no test reaches it)."""
    sig = table[table["q"] < q_level]
    return float(-np.log10(sig["p"].max())) if len(sig) else None


def association_manhattan(result: AnalysisResult, blocks: pd.DataFrame, block_labels: Mapping[str, str] | None = None,
                          q_level: float = 0.05, top: int = 6) -> Figure:
    """-log10 p of every block test by position, one panel per phenotype, the q-level line across all tests."""
    table = result.table.dropna(subset=["p"])
    rows = table[table["kind"] == "block"]
    panels = {}
    for trait, part in rows.groupby("phenotype", sort=False):
        panels[f"{trait} ({int((part['q'] < q_level).sum())} blocks at q<{q_level})"] = pd.Series(
            -np.log10(np.clip(part["p"].to_numpy(float), 1e-300, 1)), index=part["feature"].astype(str))
    others = len(table) - len(rows)
    s = result.summary
    return manhattan_figure(
        panels, blocks, labels=block_labels, top=top, threshold=_q_line(table, q_level), threshold_label=f"q = {q_level}",
        ylabel="-log10 p",
        title=f"Phenotype association: {s['n_significant']} of {s['n_tests']} tests at q<{q_level}; strongest trait "
              f"{s['strongest_phenotype']}" + (f" ({others} subject-embedding tests in the table, not drawn)" if others else ""),
    )


def plot_association(result: AnalysisResult, path: str | os.PathLike, q_level: float = 0.05, n_labels: int = 6,
                     blocks: pd.DataFrame | None = None, block_labels: Mapping[str, str] | None = None) -> Path:
    """-log10 p of every test, features along x (table order), one colour per phenotype.

    One-column (Wald) and joint block tests sit on one axis because both
    report a p-value; the q-level line is the largest p still at q < ``q_level``.
    With many ``blocks`` the block tests are drawn by genomic position instead
    (:func:`association_manhattan`).
    """
    if _many_blocks(result.table, blocks):
        return save_figure(association_manhattan(result, blocks, block_labels, q_level), path)
    table = result.table.dropna(subset=["p"]).reset_index(drop=True)
    features = list(dict.fromkeys(table["feature"]))
    position = {f: i for i, f in enumerate(features)}
    fig = Figure(figsize=(max(8, 0.12 * len(features) + 4), 5.5))
    ax = fig.subplots()
    logp = -np.log10(np.clip(table["p"].to_numpy(), 1e-300, 1))
    traits = list(table["phenotype"].unique())
    offsets = np.linspace(-0.25, 0.25, len(traits)) if len(traits) > 1 else [0.0]
    for trait, offset in zip(traits, offsets):
        sel = (table["phenotype"] == trait).to_numpy()
        x = table.loc[sel, "feature"].map(position).to_numpy() + offset
        ax.scatter(x, logp[sel], s=16, alpha=0.75, label=trait)
    line = _q_line(table, q_level)
    if line is not None:
        ax.axhline(line, color="grey", ls="--", lw=1, label=f"q = {q_level}")
    for i in np.argsort(-logp)[:n_labels]:
        row = table.iloc[i]
        ax.annotate(f"{row['feature']}:{row['phenotype']}", (position[row["feature"]], logp[i]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if "kind" in table.columns:
        kinds = table.drop_duplicates("feature").set_index("feature")["kind"]
        for i, f in enumerate(features[1:], start=1):
            if kinds[f] != kinds[features[i - 1]]:
                ax.axvline(i - 0.5, color="#888888", lw=0.8)
    ax.set_xticks(range(len(features)), features, fontsize=6, rotation=90)
    ax.set_xlim(-1, len(features))
    ax.set_ylabel("-log10 p")
    ax.grid(axis="y", alpha=0.3)
    s = result.summary
    ax.set_title(f"Phenotype association: {s['n_significant']} of {s['n_tests']} tests at q<{q_level}; strongest trait {s['strongest_phenotype']}", fontsize=10)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_locus(result: AnalysisResult, path: str | os.PathLike) -> Path:
    """Background min-p distributions per phenotype with the locus marked."""
    background, table = result.tables["background"], result.table
    traits = list(table["phenotype"])
    fig = Figure(figsize=(3.2 * len(traits), 3.6))
    axes = np.atleast_1d(fig.subplots(1, len(traits)))
    for ax, row in zip(axes, table.itertuples(index=False)):
        ax.hist(-np.log10(background[row.phenotype]), bins=30, color="#bbbbbb")
        ax.axvline(-np.log10(max(row.locus_min_p, 1e-300)), color="#d62728", lw=2)
        ax.set_title(f"{row.phenotype}: empirical p={row.empirical_p:.3g}", fontsize=9)
        ax.set_xlabel("-log10 min p")
    axes[0].set_ylabel("background sets")
    fig.suptitle(f"Locus validation: {result.summary['locus']} vs {result.summary['n_background']} matched background sets")
    return save_figure(fig, path)


def plot_geometry(result: AnalysisResult, path: str | os.PathLike) -> Path:
    """Heatmap of embedding axis x genotype PC correlations, and the distance scatter."""
    corr = result.table.pivot(index="axis", columns="pc", values="corr")
    corr = corr.loc[result.tables["axis_r2"]["axis"], sorted(corr.columns, key=lambda c: int(str(c).lstrip("PC") or 0))]
    s = result.summary
    fig = Figure(figsize=(11, 0.25 * len(corr) + 3))
    ax, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.2, 1]})
    image = ax.imshow(corr.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(corr.shape[1]), corr.columns, fontsize=8, rotation=45)
    ax.set_yticks(range(corr.shape[0]), corr.index, fontsize=7)
    ax.set_title(f"Embedding axes vs genotype PCs (mean R2 on PCs {s['mean_r2_pcs']:.2f})", fontsize=9)
    fig.colorbar(image, ax=ax, label="Pearson r")
    d = result.tables["distances"]
    ax2.scatter(d["phase1"], d["phase2"], s=3, alpha=0.3)
    ax2.set_xlabel("Phase 1 distance (all blocks)")
    ax2.set_ylabel("Phase 2 distance")
    ax2.set_title(f"Pairwise distances: Spearman {s['distance_spearman']:.2f}, Pearson {s['distance_pearson']:.2f}", fontsize=9)
    return save_figure(fig, path)


def plot_summary(
    drivers: AnalysisResult,
    leave_out: AnalysisResult,
    association: AnalysisResult | None,
    path: str | os.PathLike,
    block_labels: Mapping[str, str] | None = None,
    top: int = 8,
) -> Path:
    """One panel of findings: drivers, leave-region-out and the strongest association (or why it was skipped)."""
    fig = Figure(figsize=(15, 5))
    ax1, ax2, ax3 = fig.subplots(1, 3)
    d = drivers.table.head(top)
    _bars(ax1, [_label(f, block_labels) for f in d["feature"]], d["eta2"], [KIND_COLOURS[k] for k in d["kind"]], "eta squared")
    ax1.set_title(f"A. Leading block: {_label(drivers.summary['leading_block'], block_labels)}", fontsize=10)
    lo = leave_out.table.head(top)
    _bars(ax2, [_label(f, block_labels) for f in lo["feature"]], lo["eta2"], "#1f77b4", "eta squared (new clusters)")
    ax2.set_title(f"B. Without {leave_out.summary['n_dropped']} region blocks: {leave_out.summary['leading_block']} leads\n(ARI old vs new {leave_out.summary['ari_old_new']:.2f})", fontsize=10)
    if association is None or is_skipped(association):
        why = association.summary["skipped"] if association is not None else "not run"
        ax3.text(0.5, 0.5, f"skipped:\n{why}", ha="center", va="center", fontsize=11, wrap=True, transform=ax3.transAxes)
        ax3.set_axis_off()
        ax3.set_title("C. Phenotype association", fontsize=10)
        fig.suptitle("genoembed findings summary", fontsize=12)
        fig.tight_layout()
        return save_figure(fig, path)
    per = association.summary["per_phenotype"]
    traits = list(per)
    strengths = [per[t]["max_abs_stat"] for t in traits]
    y = np.arange(len(traits))[::-1]
    ax3.barh(y, strengths, color="#2ca02c")
    ax3.set_yticks(y, [f"{t} ({per[t]['n_q05']} at q<0.05)" for t in traits], fontsize=8)
    ax3.set_xlabel("strongest |t| or |z| per phenotype")
    top_hit = association.summary["strongest"] or {}
    ax3.set_title(f"C. Strongest association: {top_hit.get('feature')} with {top_hit.get('phenotype')}\n(q={top_hit.get('q', float('nan')):.2g})", fontsize=10)
    fig.suptitle("genoembed findings summary", fontsize=12)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_skipped(result: AnalysisResult, path: str | os.PathLike, title: str = "") -> Path:
    """A small figure saying why an analysis was skipped (the UI preview shows it)."""
    fig = Figure(figsize=(5, 1.6))
    ax = fig.subplots()
    ax.text(0.5, 0.5, f"{title + ': ' if title else ''}skipped\n{result.summary.get('skipped', '')}", ha="center",
            va="center", fontsize=10, wrap=True, transform=ax.transAxes)
    ax.set_axis_off()
    return save_figure(fig, path)
