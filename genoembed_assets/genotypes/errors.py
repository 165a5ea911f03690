"""The one exception type for malformed cohort input."""

from __future__ import annotations

from pathlib import Path


class CohortInputError(ValueError):
    """Input that cannot be used as given.

    The message always names the file and, where it applies, the block, row or
    variant, and says what was expected, so a user can fix the input without
    reading a traceback.
    """

    def __init__(self, path: str | Path | None, problem: str, *, where: str | None = None):
        self.path = None if path is None else Path(path)
        self.where = where
        self.problem = problem
        parts = []
        if path is not None:
            parts.append(str(path))
        if where:
            parts.append(where)
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {problem}" if prefix else problem)
