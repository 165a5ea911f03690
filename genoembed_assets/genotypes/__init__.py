"""Pure genotype layer: block maps, cohort layouts, readers, QC and the demo simulator.

Import submodules directly (``from genoembed_assets.genotypes.layout import ...``):
this package re-exports nothing, so importing it stays cheap and new modules
can be added beside the others without touching this file.
"""
