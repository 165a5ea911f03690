"""Genetic maps: centimorgan positions of base-pair positions, for the haplotype-copying switch rates.

Without a map, the copying model reads 1 cM per Mb everywhere; recombination is
not uniform (hotspots carry most of it). On the 1000 Genomes chr20 panels the
shipped map (6.65 cM over their 3 Mb) raised ``hap``'s concordance from 0.9901
to 0.9903 and its r² at MAF 1-5% from 0.863 to 0.865; Beagle, given the same
map, went from 0.9903 to 0.9905 (docs/benchmarks.md).

Three layouts are read, the ones phasing and imputation tools ship:

* ``pos chr cM`` with that header (SHAPEIT4/5, the map in ``shared/data/1kg_chr20``);
* ``chr position rate(cM/Mb) map(cM)`` with a header (Eagle, HapMap II: the
  columns are found by name: a chromosome, a ``pos``/``position`` and a
  ``cM``/``map(cM)`` column);
* PLINK ``.map`` without a header: ``chr id cM bp`` (Beagle's ``map=``).

Gzipped files are read as well. Positions between map points are linearly
interpolated; outside the map's range they are extrapolated at the
chromosome's mean rate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import CohortInputError

__all__ = ["GeneticMap", "read_genetic_map"]

_CHROM_NAMES = ("chr", "chrom", "chromosome", "#chr", "#chrom")
_POS_NAMES = ("pos", "position", "position(bp)", "bp", "physical_position")
_CM_NAMES = ("cm", "map(cm)", "genetic_map(cm)", "genetic_position", "cm_position")


def _chrom_key(name) -> str:
    """``chr20``, ``Chr20`` and ``20`` name one chromosome."""
    return re.sub(r"^chr", "", str(name).strip(), flags=re.IGNORECASE)


@dataclass(frozen=True)
class GeneticMap:
    """Per chromosome, increasing base-pair positions and their centimorgans."""

    path: Path
    chromosomes: dict[str, tuple[np.ndarray, np.ndarray]] = field(repr=False)

    def points(self, chrom) -> tuple[np.ndarray, np.ndarray] | None:
        """The map's (bp, cM) points on ``chrom`` (``chr20`` or ``20``); None when it lacks that chromosome."""
        return self.chromosomes.get(_chrom_key(chrom))

    def cm(self, chrom, positions) -> np.ndarray | None:
        """Centimorgans of ``positions`` (bp) on ``chrom``; None when the map lacks that chromosome."""
        entry = self.points(chrom)
        if entry is None:
            return None
        bp, cm = entry
        pos = np.asarray(positions, dtype=np.float64)
        out = np.interp(pos, bp, cm)
        span = bp[-1] - bp[0]
        rate = (cm[-1] - cm[0]) / span if span > 0 else 1e-6  # cM per bp; a one-point map: 1 cM per Mb
        below, above = pos < bp[0], pos > bp[-1]
        out[below] = cm[0] - (bp[0] - pos[below]) * rate
        out[above] = cm[-1] + (pos[above] - bp[-1]) * rate
        return out


def _columns(first: list[str], path: Path) -> tuple[bool, int, int, int]:
    """(has header, chromosome, position, cM) column indices of a map whose first line is ``first``."""
    lower = [c.lower() for c in first]

    def find(names) -> int | None:
        return next((i for i, c in enumerate(lower) if c in names), None)

    chrom, pos, cm = find(_CHROM_NAMES), find(_POS_NAMES), find(_CM_NAMES)
    if chrom is not None and pos is not None and cm is not None:
        return True, chrom, pos, cm
    if len(first) == 4 and not any(re.search(r"[a-df-z]", c, re.IGNORECASE) for c in first[2:]):
        return False, 0, 3, 2  # PLINK .map: chr id cM bp
    raise CohortInputError(path, f"line 1: expected a header naming chromosome, position and cM columns "
                                 f"(e.g. 'pos chr cM') or a PLINK .map line 'chr id cM bp', got {' '.join(first)!r}")


def read_genetic_map(path: str | Path) -> GeneticMap:
    """Read a genetic map (see the module docstring for the layouts).

    Raises
    ------
    CohortInputError
        Naming the file and line: no such file, an unknown layout, a value that
        is not a number, or centimorgans that decrease along a chromosome.
    """
    path = Path(path)
    if not path.is_file():
        raise CohortInputError(path, "no such genetic map file")
    try:
        table = pd.read_csv(path, sep=r"\s+", header=None, dtype=str)
    except (OSError, EOFError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        why = " ".join(str(err).split())  # pandas' messages can span lines; the error is one
        raise CohortInputError(path, f"cannot be read as a whitespace-separated genetic map ({why})") from None
    if table.empty:
        raise CohortInputError(path, "the genetic map is empty")
    header, chrom_col, pos_col, cm_col = _columns(list(table.iloc[0].dropna()), path)
    first_line = 2 if header else 1
    if header:
        table = table.iloc[1:]
    pos = pd.to_numeric(table[pos_col], errors="coerce").to_numpy()
    cm = pd.to_numeric(table[cm_col], errors="coerce").to_numpy()
    bad = np.flatnonzero(~(np.isfinite(pos) & np.isfinite(cm)))
    if bad.size:
        i = bad[0]
        raise CohortInputError(path, f"expected numbers for position and cM, got {table.iloc[i][pos_col]!r} and "
                                     f"{table.iloc[i][cm_col]!r}", where=f"line {first_line + i}")
    chroms = table[chrom_col].map(_chrom_key).to_numpy()
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in dict.fromkeys(chroms):
        rows = np.flatnonzero(chroms == name)
        order = rows[np.argsort(pos[rows], kind="stable")]
        drop = np.flatnonzero(np.diff(cm[order]) < -1e-9)
        if drop.size:
            i = order[drop[0] + 1]
            raise CohortInputError(path, f"centimorgans decrease along chromosome {name} (cM {cm[i]:g} at position "
                                         f"{pos[i]:.0f}, after {cm[order[drop[0]]]:g}); expected a map sorted "
                                         "by position with non-decreasing cM", where=f"line {first_line + i}")
        bp_sorted, cm_sorted = pos[order], cm[order]
        keep = np.append(np.diff(bp_sorted) > 0, True)  # one cM per position (np.interp needs increasing x)
        out[name] = (bp_sorted[keep], cm_sorted[keep])
    return GeneticMap(path, out)
