"""Small helpers turning pure-layer results into Dagster metadata and check results."""

from __future__ import annotations

from typing import Iterable

import dagster as dg
import pandas as pd

from ..genotypes.validate import CheckOutcome


def check_results(outcomes: Iterable[CheckOutcome], *, asset_key: dg.AssetKey | None = None) -> list[dg.AssetCheckResult]:
    return [
        dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=o.name,
            passed=bool(o.passed),
            metadata={"message": o.message, **{k: _plain(v) for k, v in o.metadata.items()}},
        )
        for o in outcomes
    ]


def markdown_table(frame: pd.DataFrame, max_rows: int = 60) -> dg.MetadataValue:
    shown = frame.head(max_rows)
    text = shown.to_markdown(index=False) if _has_tabulate() else _plain_markdown(shown)
    if len(frame) > max_rows:
        text += f"\n\n... {len(frame) - max_rows} more rows"
    return dg.MetadataValue.md(text)


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    return value


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def _plain_markdown(frame: pd.DataFrame) -> str:
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
