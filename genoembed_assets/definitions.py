"""The code location ``genoembed``: every asset, check, sensor and schedule under ``defs/``."""

from __future__ import annotations

import dagster as dg

from . import defs as defs_package
from .defs.resources import default_resources

defs = dg.Definitions.merge(
    dg.load_defs(defs_package),
    dg.Definitions(resources=default_resources()),
)
