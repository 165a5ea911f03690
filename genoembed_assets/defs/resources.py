"""Resources: where cohorts come from and where artifacts go, and which device trains."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from .. import paths


class GenoembedStorage(dg.ConfigurableResource):
    """Folders of one deployment.

    ``cohorts_root`` holds one sub-folder per cohort (the input); every artifact
    is written under ``results_root/<cohort>/`` (see docs/design.md).
    """

    cohorts_root: str = str(paths.default_cohorts_root())
    results_root: str = str(paths.default_results_root())

    def source_dir(self, cohort: str) -> Path:
        return Path(self.cohorts_root) / cohort

    def cohort_dir(self, cohort: str) -> Path:
        return Path(self.results_root) / cohort

    def input_dir(self, cohort: str) -> Path:
        return self.cohort_dir(cohort) / "input"

    def phase1_dir(self, cohort: str, block: str | None = None) -> Path:
        base = self.cohort_dir(cohort) / "phase1"
        return base if block is None else base / block

    def phase2_dir(self, cohort: str) -> Path:
        return self.cohort_dir(cohort) / "phase2"

    def analysis_dir(self, cohort: str) -> Path:
        return self.cohort_dir(cohort) / "analysis"


class ComputeResource(dg.ConfigurableResource):
    """Which torch device trains: 'auto' picks CUDA when present, else CPU."""

    device: str = "auto"

    def torch_device(self) -> str:
        import torch  # imported here so loading definitions stays light

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device


def default_resources() -> dict:
    return {"storage": GenoembedStorage(), "compute": ComputeResource()}
