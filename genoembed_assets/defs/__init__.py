"""The Dagster layer: thin assets over the pure layers, auto-loaded by ``dg.load_defs``."""
