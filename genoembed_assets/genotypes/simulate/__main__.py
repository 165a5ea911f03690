"""``python -m genoembed_assets.genotypes.simulate OUT_DIR``: write a simulated cohort."""

from .cohort import main

if __name__ == "__main__":
    raise SystemExit(main())
