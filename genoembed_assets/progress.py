"""A terminal progress display for a cohort run: stage, step, block i/n, epoch, ETA (through rich).

No Dagster here: the runner hands over each stage's steps, step starts and ends, and
every log line of the run; the display reads progress from the lines the training
code already writes:

* Phase 1: ``Phase 1 on cpu: 9 block partition(s), ...`` (the number of blocks),
  ``group 2/5 epoch 7/30: ...`` (stacked groups and epochs), ``<cohort>/<block>:
  held-out accuracy ...`` (one block finished), ``<cohort>: 3 block(s) already
  trained ...`` (blocks resumed from earlier artifacts);
* Phase 2: ``seed 0 epoch 4: ...``.

The display is off when stdout is not a terminal (pipes, CI, tests), so logs and
captured output stay plain.
"""

from __future__ import annotations

import re
import sys
from typing import Sequence

__all__ = ["ProgressDisplay", "parse_progress"]

_PATTERNS = {
    "blocks_total": re.compile(r"^Phase 1 on \S+: (?P<n>\d+) block partition"),
    "blocks_resumed": re.compile(r"^\S+: (?P<n>\d+) block\(s\) already trained"),
    "block_done": re.compile(r"^(?P<cohort>[^/\s]+)/(?P<block>\S+): held-out accuracy"),
    "group_epoch": re.compile(r"^group (?P<group>\d+)/(?P<groups>\d+) epoch (?P<epoch>\d+)/(?P<epochs>\d+)"),
    "seed_epoch": re.compile(r"^seed (?P<seed>\d+) epoch (?P<epoch>\d+):"),
}


def parse_progress(message: str) -> tuple[str, dict] | None:
    """``(kind, fields)`` when ``message`` is a progress line of the training code, else None."""
    for kind, pattern in _PATTERNS.items():
        match = pattern.search(message)
        if match:
            return kind, match.groupdict()
    return None


class ProgressDisplay:
    """Rich progress bars for one cohort run; every method is a no-op when disabled.

    Parameters
    ----------
    enabled : bool or None
        None (default): on when stdout is a terminal.
    """

    def __init__(self, enabled: bool | None = None):
        self.enabled = sys.stdout.isatty() if enabled is None else enabled
        self._progress = None
        self._stage = self._blocks = None
        self._steps: list[str] = []
        self._stage_label = ""
        self._detail = ""

    def __enter__(self) -> "ProgressDisplay":
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), transient=False,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    # ---------------------------------------------------------------- what the runner reports

    def stage(self, name: str, index: int, total: int, steps: Sequence[str]) -> None:
        """A new stage ``index`` of ``total`` with these steps (op names)."""
        if self._progress is None:
            return
        for task in (self._stage, self._blocks):
            if task is not None:
                self._progress.update(task, visible=False)
        self._steps, self._detail = list(steps), ""
        self._stage_label = f"[{index}/{total}] {name}"
        self._stage = self._progress.add_task(self._stage_label, total=max(len(self._steps), 1))
        self._blocks = None

    def step_started(self, step: str) -> None:
        self._detail = step
        self._refresh()

    def step_finished(self, step: str) -> None:
        if self._progress is not None and self._stage is not None:
            self._progress.advance(self._stage)

    def message(self, step: str | None, text: str) -> None:
        """A log line of the run: updates blocks and epochs when it reports progress."""
        if self._progress is None:
            return
        parsed = parse_progress(text)
        if parsed is None:
            return
        kind, f = parsed
        if kind == "blocks_total":
            if self._blocks is not None:
                self._progress.update(self._blocks, visible=False)
            self._blocks = self._progress.add_task("blocks", total=int(f["n"]))
        elif kind in ("blocks_resumed", "block_done") and self._blocks is not None:
            self._progress.advance(self._blocks, int(f.get("n") or 1))
        elif kind == "group_epoch" and self._blocks is not None:
            self._progress.update(self._blocks, description=f"blocks (group {f['group']}/{f['groups']}, epoch {f['epoch']}/{f['epochs']})")
        elif kind == "seed_epoch":
            self._detail = f"{step or ''} (seed {f['seed']}, epoch {f['epoch']})".strip()
            self._refresh()

    def _refresh(self) -> None:
        if self._progress is not None and self._stage is not None:
            self._progress.update(self._stage, description=f"{self._stage_label}: {self._detail}" if self._detail else self._stage_label)
