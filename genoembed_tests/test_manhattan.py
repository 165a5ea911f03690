"""Figures that read at 1,703 blocks: Manhattan plots by genomic position (issue 12).

Every test uses the real hg19 LDetect block map shipped in ``data/reference``
(1,703 blocks on chromosomes 1-22) with synthetic per-block values, planted
peaks at known genes, and inspects the matplotlib figure a user would see:
chromosome ticks, the top blocks' gene labels, labels not overlapping.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text
from PIL import Image

from genoembed_assets import analysis as an
from genoembed_assets.analysis import figures
from genoembed_assets.genotypes.blockmap import read_block_map
from genoembed_assets.paths import block_map_path

AUTOSOMES = [str(i) for i in range(1, 23)]


@pytest.fixture(scope="module")
def genome():
    """The 1,703 hg19 blocks, their gene labels and the blocks planted as peaks (HLA class II, 17q21, IL33 and a neighbour pair)."""
    blocks = read_block_map(block_map_path("hg19"))
    labels = an.block_genes(blocks, "hg19", max_genes=2)

    def at(chrom, pos):
        row = blocks[(blocks["chrom"] == chrom) & (blocks["start"] <= pos) & (blocks["end"] > pos)]
        return str(row["block_id"].iloc[0])

    hla, ormdl3, il33 = at("6", 32_550_000), at("17", 38_050_000), at("9", 6_250_000)
    neighbours = [at("6", 32_550_000 + d) for d in (600_000, 1_200_000)]  # next to HLA: labels must stagger
    peaks = [hla, *neighbours, ormdl3, il33]
    return blocks, labels, peaks


def _values(blocks, peaks, seed=0) -> pd.Series:
    rng = np.random.default_rng(seed)
    values = pd.Series(rng.exponential(1.0, len(blocks)), index=blocks["block_id"])
    values[peaks] = [30.0, 26.0, 24.0, 18.0, 15.0]
    return values


def _texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def _overlaps(fig, ax) -> list[tuple[str, str]]:
    """Pairs of label texts whose rendered boxes overlap (the text itself, not its leader line)."""
    renderer = FigureCanvasAgg(fig).get_renderer()
    boxes = [(t.get_text(), Text.get_window_extent(t, renderer)) for t in ax.texts]
    return [(a, b) for i, (a, ba) in enumerate(boxes) for b, bb in boxes[i + 1:] if ba.overlaps(bb)]


def test_the_shipped_block_map_has_1703_blocks(genome):
    blocks, labels, peaks = genome
    assert len(blocks) == 1703 and set(blocks["chrom"]) == set(AUTOSOMES)
    assert "HLA" in labels[peaks[0]] and labels[peaks[3]] and labels[peaks[4]]


def test_manhattan_by_position_ticks_labels_no_overlap(genome, tmp_path):
    blocks, labels, peaks = genome
    values = _values(blocks, peaks)
    fig = an.manhattan_figure(values, blocks, labels=labels, top=8, threshold=10.0, threshold_label="q = 0.05", ylabel="-log10 p")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == AUTOSOMES
    ticks = ax.get_xticks()
    assert len(ticks) == 22 and np.all(np.diff(ticks) > 0)
    # every block is drawn once, at its chromosome's place on the axis
    axis = an.genome_axis(blocks)
    points = np.vstack([c.get_offsets() for c in ax.collections])
    assert len(points) == 1703
    chr6 = axis.x[blocks.loc[blocks["chrom"] == "6", "block_id"]]
    assert ticks[4] < axis.x[peaks[0]] and chr6.min() < axis.x[peaks[0]] < chr6.max() < ticks[6]
    # chromosomes alternate two colours
    colours = ax.collections[0].get_facecolors()
    first = {c: tuple(colours[i]) for i, c in enumerate(blocks["chrom"])}
    assert first["1"] != first["2"] and first["1"] == first["3"] and len(set(map(tuple, colours))) == 2
    texts = _texts(ax)
    assert len(texts) == 8
    for block in peaks:
        assert labels[block] in texts, (block, labels[block])
    assert not _overlaps(fig, ax)
    assert any(line.get_ydata()[0] == 10.0 for line in ax.get_lines())  # the significance line

    png = an.plot_manhattan(values, blocks, tmp_path / "m.png", labels=labels, top=8)
    with Image.open(png) as image:
        width, height = image.size
    assert 1000 < width < 2500 and 250 < height < 900
    assert not list(tmp_path.glob(".*.tmp"))


def test_unknown_chromosomes_and_missing_values_are_left_out(genome):
    blocks, labels, peaks = genome
    extra = pd.concat([blocks, pd.DataFrame({"block_id": ["chrUn_b0000"], "chrom": ["Un"], "start": [0], "end": [10]})])
    values = _values(blocks, peaks)
    values.iloc[:10] = np.nan
    fig = an.manhattan_figure(values, extra, labels=labels, top=3)
    ax = fig.axes[0]
    assert len(ax.collections[0].get_offsets()) == 1703 - 10 and len(ax.get_xticks()) == 22
    with pytest.raises(ValueError, match="lacks columns"):
        an.genome_axis(blocks.drop(columns="end"))


def _drivers_result(blocks, peaks, values) -> an.AnalysisResult:
    rows = pd.DataFrame({"feature": blocks["block_id"], "kind": "block", "eta2": values.to_numpy() / 40})
    pcs = pd.DataFrame({"feature": [f"PC{i}" for i in range(1, 11)], "kind": "genotype_pc", "eta2": np.linspace(0.3, 0.01, 10)})
    table = pd.concat([rows, pcs]).sort_values("eta2", ascending=False).reset_index(drop=True)
    summary = {"explains": "cluster membership", "leading_feature": peaks[0], "leading_eta2": 0.75,
               "top_genotype_pc": "PC1", "top_genotype_pc_eta2": 0.3}
    return an.AnalysisResult(table=table, summary=summary)


def test_drivers_figure_is_a_manhattan_for_many_blocks(genome, tmp_path, monkeypatch):
    blocks, labels, peaks = genome
    result = _drivers_result(blocks, peaks, _values(blocks, peaks))
    fig = figures.drivers_manhattan(result, blocks, labels)
    ax = fig.axes[0]
    assert len(ax.get_xticks()) == 22 and labels[peaks[0]] in _texts(ax)
    assert any(line.get_ydata()[0] == pytest.approx(0.3) for line in ax.get_lines())  # best genotype PC, for contrast
    built = []
    real = figures.save_figure
    monkeypatch.setattr(figures, "save_figure", lambda f, path: built.append(f) or real(f, path))
    an.plot_drivers(result, tmp_path / "drivers.png", block_labels=labels, blocks=blocks)
    small = _drivers_result(blocks.head(20), [blocks["block_id"].iloc[0]], _values(blocks, peaks).head(20))
    an.plot_drivers(small, tmp_path / "small.png", block_labels=labels, blocks=blocks.head(20))
    assert len(built[0].axes[0].get_xticks()) == 22  # genome-wide: by position
    assert len(built[1].axes[0].get_yticklabels()) == 20  # 20 blocks (+ a PC): the bar list of names
    assert (tmp_path / "drivers.png").stat().st_size > 20_000


def test_association_figure_has_a_panel_per_trait(genome, tmp_path):
    blocks, labels, peaks = genome
    parts = []
    for i, trait in enumerate(("ige", "fev1")):
        logp = _values(blocks, peaks, seed=i)
        p = 10.0 ** -logp.to_numpy()
        parts.append(pd.DataFrame({"feature": blocks["block_id"], "kind": "block", "phenotype": trait, "p": p}))
    parts.append(pd.DataFrame({"feature": ["e0", "e1"], "kind": "embedding", "phenotype": "ige", "p": [0.5, 0.01]}))
    table = pd.concat(parts, ignore_index=True)
    table["q"] = an.bh_fdr(table["p"].to_numpy())
    summary = {"n_significant": int((table["q"] < 0.05).sum()), "n_tests": len(table), "strongest_phenotype": "ige"}
    result = an.AnalysisResult(table=table, summary=summary)
    fig = figures.association_manhattan(result, blocks, labels)
    axes = fig.axes
    assert len(axes) == 2 and all(len(ax.get_xticks()) == 22 for ax in axes)
    assert [ax.get_title(loc="left").split(" ")[0] for ax in axes] == ["ige", "fev1"]
    line = -np.log10(table.loc[table["q"] < 0.05, "p"].max())
    for ax in axes:
        assert labels[peaks[0]] in _texts(ax) and not _overlaps(fig, ax)
        assert any(ln.get_ydata()[0] == pytest.approx(line) for ln in ax.get_lines())
    assert "2 subject-embedding tests" in fig.texts[0].get_text()
    png = an.plot_association(result, tmp_path / "assoc.png", blocks=blocks, block_labels=labels)
    with Image.open(png) as image:
        assert image.size[0] > 1000 and 400 < image.size[1] < 1500


def test_block_importance_figure_genome_wide(genome, tmp_path, monkeypatch):
    from genoembed_assets.models import plot_block_importance

    blocks, labels, peaks = genome
    values = _values(blocks, peaks) / 1703
    table = blocks.assign(importance_mean=values.to_numpy(), importance_q=np.where(values.to_numpy() * 1703 > 10, 0.01, 0.9),
                          genes=[labels[b].replace(", ", ",") for b in blocks["block_id"]])
    table["rank"] = table["importance_mean"].rank(ascending=False, method="first").astype(int)
    built = []
    real = figures.save_figure
    monkeypatch.setattr(figures, "save_figure", lambda f, path: built.append(f) or real(f, path))
    png = plot_block_importance(table, tmp_path / "block_importance.png")
    ax = built[0].axes[0]
    assert len(ax.get_xticks()) == 22 and not _overlaps(built[0], ax)
    texts = _texts(ax)
    assert an.short_gene_label(table.set_index("block_id").loc[peaks[0], "genes"], 2) in texts
    assert len(ax.collections) == 2 and len(ax.collections[1].get_offsets()) == len(peaks)  # q < 0.05 in red
    with Image.open(png) as image:
        assert image.size[0] > 1000 and image.size[1] < 900
    # a small cohort keeps the heatmap + bars: no Manhattan is built
    built.clear()
    small = table.sort_values("rank").head(20).assign(rank=range(1, 21))
    plot_block_importance(small, tmp_path / "small.png")
    assert not built and (tmp_path / "small.png").stat().st_size > 5000
