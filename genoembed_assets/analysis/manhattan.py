"""Manhattan-style figures: one value per LD block along the genome (pure, no Dagster).

A bar list of block names reads well for a few dozen blocks; a genome-wide
cohort has ~1,700. Here every block is a point at its genomic position
(cumulative block midpoint over chromosomes 1..22, X), chromosomes alternate
two colours with a tick at each one's centre, and only the top blocks are
named (their gene label), staggered so neighbouring labels do not overlap.
:func:`manhattan_figure` builds the :class:`~matplotlib.figure.Figure` (tests
inspect it); :func:`plot_manhattan` also writes it atomically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..genotypes.blockmap import CHROMOSOMES, normalize_chrom

__all__ = ["MANHATTAN_MIN_BLOCKS", "GenomeAxis", "add_manhattan_panel", "genome_axis", "manhattan_figure", "plot_manhattan"]

#: Above this many blocks the figures switch from bar lists to Manhattan plots.
MANHATTAN_MIN_BLOCKS = 40
COLOURS = ("#1f4e79", "#6baed6")
HIGHLIGHT = "#d62728"
_GAP = 0.004  # gap between chromosomes, as a share of the genome drawn
_LABEL_CHARS = 24
_CHAR_SHARE = 0.0058  # width of one 7-pt character as a share of a 14-inch panel (generous)
_ROW = 0.075  # height of one label row, as a share of the panel


@dataclass(frozen=True)
class GenomeAxis:
    """Where each block sits on the cumulative genome axis.

    Attributes
    ----------
    x : pandas.Series
        Block ID -> cumulative midpoint (bp), for blocks on a known chromosome.
    chrom : pandas.Series
        Block ID -> normalised chromosome name.
    ticks : list of float
        Centre of each chromosome drawn, in ``CHROMOSOMES`` order.
    tick_labels : list of str
        The chromosome names at ``ticks``.
    length : float
        End of the last chromosome drawn (bp, gaps included).
    """

    x: pd.Series
    chrom: pd.Series
    ticks: list
    tick_labels: list
    length: float


def genome_axis(blocks: pd.DataFrame) -> GenomeAxis:
    """Cumulative positions of ``blocks`` (``block_id, chrom, start, end``); unknown chromosomes are left out.

    Each chromosome spans 0 to its last block's end, so the axis needs no
    chromosome-length table and works for any build or block map.
    """
    missing = [c for c in ("block_id", "chrom", "start", "end") if c not in blocks.columns]
    if missing:
        raise ValueError(f"the block table lacks columns {missing}; expected block_id, chrom, start, end")
    frame = pd.DataFrame({
        "block_id": blocks["block_id"].astype(str).to_numpy(),
        "chrom": [normalize_chrom(c) for c in blocks["chrom"]],
        "mid": (blocks["start"].to_numpy(float) + blocks["end"].to_numpy(float)) / 2,
        "end": blocks["end"].to_numpy(float),
    }).dropna(subset=["chrom"])
    spans = frame.groupby("chrom")["end"].max()
    present = [c for c in CHROMOSOMES if c in spans.index]
    gap = _GAP * float(spans.sum()) if len(spans) else 0.0
    offsets, ticks, cursor = {}, [], 0.0
    for chrom in present:
        offsets[chrom] = cursor
        ticks.append(cursor + spans[chrom] / 2)
        cursor += spans[chrom] + gap
    x = frame["mid"] + frame["chrom"].map(offsets)
    return GenomeAxis(
        x=pd.Series(x.to_numpy(), index=frame["block_id"]),
        chrom=pd.Series(frame["chrom"].to_numpy(), index=frame["block_id"]),
        ticks=ticks, tick_labels=present, length=max(cursor - gap, 1.0),
    )


def _short(text: str) -> str:
    return text if len(text) <= _LABEL_CHARS else text[: _LABEL_CHARS - 2] + ".."


def _stagger(x_share: np.ndarray, width_share: np.ndarray, pad: float = 0.01) -> np.ndarray:
    """A row per label (0, 1, 2, ...) so that no two labels on one row overlap along x.

    Labels are centred on ``x_share`` and ``width_share`` wide (shares of the
    axis width); left to right, each goes on the lowest row whose last label
    ends ``pad`` before it starts.
    """
    levels = np.zeros(len(x_share), dtype=int)
    right_edges: list[float] = []
    for i in np.argsort(x_share, kind="stable"):
        left = x_share[i] - width_share[i] / 2
        level = next((r for r, edge in enumerate(right_edges) if left >= edge + pad), len(right_edges))
        if level == len(right_edges):
            right_edges.append(-np.inf)
        right_edges[level] = x_share[i] + width_share[i] / 2
        levels[i] = level
    return levels


def add_manhattan_panel(
    ax,
    values: pd.Series,
    axis: GenomeAxis,
    *,
    labels: Mapping[str, str] | None = None,
    top: int = 10,
    threshold: float | None = None,
    threshold_label: str = "",
    highlight: pd.Series | None = None,
    ylabel: str = "",
) -> list:
    """Draw ``values`` (block ID -> value) on ``ax``; return the text artists of the labelled blocks.

    ``highlight`` (block ID -> bool) marks blocks in red (e.g. q < 0.05);
    ``threshold`` draws a dashed line; blocks missing from ``axis`` or with a
    non-finite value are not drawn.
    """
    values = pd.Series(values, dtype=float)
    values.index = values.index.astype(str)
    values = values[np.isfinite(values.to_numpy()) & values.index.isin(axis.x.index)]
    x, chrom = axis.x[values.index].to_numpy(), axis.chrom[values.index]
    parity = chrom.map({c: i % 2 for i, c in enumerate(axis.tick_labels)}).to_numpy()
    colours = np.where(parity == 0, COLOURS[0], COLOURS[1])
    ax.scatter(x, values.to_numpy(), s=9, c=colours, linewidths=0)
    if highlight is not None:
        marked = highlight.reindex(values.index).fillna(False).astype(bool).to_numpy()
        ax.scatter(x[marked], values.to_numpy()[marked], s=16, c=HIGHLIGHT, linewidths=0, label="q < 0.05")
    if threshold is not None and np.isfinite(threshold):
        ax.axhline(threshold, color="grey", ls="--", lw=1, label=threshold_label or None)
    ax.set_xticks(axis.ticks, axis.tick_labels, fontsize=7)
    ax.set_xlim(-0.01 * axis.length, 1.01 * axis.length)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    chosen = values.sort_values(ascending=False, kind="mergesort").head(top)
    texts = []
    if len(chosen):
        names = [_short((labels or {}).get(block, "") or block) for block in chosen.index]
        cx = axis.x[chosen.index].to_numpy()
        widths = np.array([len(n) for n in names]) * _CHAR_SHARE
        # labels near either end are pulled inside the panel (the line still points at the block)
        tx = np.clip(cx / axis.length, widths / 2, 1 - widths / 2)
        levels = _stagger(tx, widths)
        # labels sit in rows at the top of the panel, a thin line down to their block;
        # the y range leaves that band free of points
        low, high = ax.get_ylim()
        data_top = 0.93 - _ROW * (int(levels.max()) + 1)
        ax.set_ylim(low, low + (values.max() - low) / data_top)
        for name, (block, value), xi, ti, level in zip(names, chosen.items(), cx, tx, levels):
            texts.append(ax.annotate(
                name, (xi, value), xytext=(ti * axis.length, 0.97 - _ROW * level), textcoords=("data", "axes fraction"),
                ha="center", va="top", fontsize=7, arrowprops={"arrowstyle": "-", "color": "#999999", "lw": 0.5},
                bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.85},  # hides lines passing behind
            ))
    return texts


def manhattan_figure(values: pd.Series | Mapping[str, pd.Series], blocks: pd.DataFrame, *, title: str = "", **panel) -> Figure:
    """A Manhattan figure of one value per block (or one panel per named series, sharing the x axis).

    Parameters
    ----------
    values : Series (block ID -> value) or mapping of panel title to such a Series
    blocks : DataFrame
        ``block_id, chrom, start, end`` of (at least) the blocks drawn.
    title : str
    **panel
        Options of :func:`add_manhattan_panel` for every panel: ``labels``
        (block ID -> gene label, shown for the ``top`` blocks; block ID when
        absent), ``top``, ``threshold`` and ``threshold_label`` (a dashed line,
        e.g. -log10 p at q = 0.05), ``highlight`` (single panel only), ``ylabel``.
    """
    panels = dict(values) if isinstance(values, Mapping) else {"": values}
    if len(panels) > 1:
        panel.pop("highlight", None)
    axis = genome_axis(blocks)
    fig = Figure(figsize=(14, 1.2 + 3.1 * len(panels)))
    axes = np.atleast_1d(fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0])
    for ax, (name, series) in zip(axes, panels.items()):
        add_manhattan_panel(ax, series, axis, **panel)
        if name:
            ax.set_title(name, fontsize=9, loc="left")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.002, 1.0))  # outside: the label band is inside
    axes[-1].set_xlabel(f"chromosome ({len(axis.x)} blocks by position)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_manhattan(values, blocks: pd.DataFrame, path: str | os.PathLike, **kwargs) -> Path:
    """:func:`manhattan_figure` written atomically as PNG to ``path``."""
    from .figures import save_figure

    return save_figure(manhattan_figure(values, blocks, **kwargs), path)

