"""The planted truth written beside a simulated cohort: ``truth.json`` and ``truth_subjects.tsv``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .config import SimulationConfig
from .haplotypes import N_STRATA, Subjects
from .phenotypes import EFFECTS, NOISE_SD, SCALE

__all__ = ["TRUTH_JSON", "TRUTH_SUBJECTS", "read_truth", "truth_dict", "truth_subjects"]

TRUTH_JSON = "truth.json"
TRUTH_SUBJECTS = "truth_subjects.tsv"

_EIGENVEC_NOTES = {
    "panel": ("{n_panel} unlinked common SNPs drawn per SNP from the blocks' haplotype pools "
              "(an LD-pruned-like panel, not written as blocks)"),
    "own": ("top PCs of the cohort's own written genotypes, every block including the planted ones, "
            "standardized, not LD-pruned (like plink --pca on everything)"),
    "none": "no pcs.eigenvec written: genoembed computes the PCs itself",
}


def _note(strata: bool, partners: bool) -> str:
    if not strata:
        return "no planted strata: the stratum column of truth_subjects.tsv is 0 for every subject"
    return ("the ige effect of HLA_DRDQ lies along its stratum axis, so the other structure blocks"
            + (" and the LD partner blocks" if partners else "")
            + ", which share the stratum, associate with ige too: they are neither planted effects nor null blocks")


def truth_dict(
    config: SimulationConfig, *, subjects: Subjects, blocks: pd.DataFrame, locus_blocks: dict, model_id: str,
    n_panel: int,
) -> dict:
    """The ``truth.json`` content (keys of docs/design.md first, then extras).

    Without planted strata (``stratum_strength`` 0) ``n_strata`` is 0, the
    structure block lists are empty and every subject's stratum is 0.
    """
    effects = [
        {"block": locus_blocks[locus], "locus": locus, "phenotype": trait,
         "beta": float(b) if trait == "exacerbations" else float(b * NOISE_SD[trait]),
         "beta_std": float(b), "scale": SCALE[trait]}
        for trait, locus, b in EFFECTS
    ]
    weights = config.structure_weights()
    strong = [locus_blocks[k] for k in ("HLA_DRDQ", "HLA_DP") if weights.get(k, 0) > 0]
    weak = [locus_blocks[config.weak_block]] if weights.get(config.weak_block, 0) > 0 else []
    partners = blocks.loc[blocks["role"] == "ld_partner", "block_id"].tolist()
    effect_blocks = {e["block"] for e in effects}
    spec = config.demography_spec
    populations = list(spec.populations)
    structure_weights = {locus_blocks[k]: float(w) for k, w in weights.items() if w > 0}
    structure_weights.update({b: float(config.ld_partner_weight) for b in partners})
    return {
        "seed": int(config.seed),
        "n_subjects": len(subjects.ids),
        "build": "hg19",
        "n_strata": N_STRATA if strong or weak else 0,
        "strong_structure_blocks": strong,
        "weak_structure_blocks": weak,
        "structure_blocks": strong + weak,
        "background_blocks": blocks.loc[blocks["role"] == "background", "block_id"].tolist(),
        "locus_blocks": locus_blocks,
        "effects": effects,
        "null_blocks": [b for b in blocks["block_id"] if b not in effect_blocks and b not in strong + weak + partners],
        "populations": populations,
        # Extras beyond the contract, for readers that want the mechanism.
        "ld_partner_blocks": partners,
        "ld_partner_weight": float(config.ld_partner_weight) if partners else 0.0,
        "eigenvec_source": config.eigenvec_source,
        "population_counts": {p: int((subjects.population == p).sum()) for p in populations},
        "structure_weights": structure_weights,
        "effect_feature": ("block PC1 (simulate.block_pc1) residualized on the admixture fractions and "
                           "standardized: effects act within ancestry, confounding comes from the population shifts"),
        "note": _note(bool(strong or weak), bool(partners)),
        "eigenvec_note": _EIGENVEC_NOTES[config.eigenvec_source].format(n_panel=n_panel),
        "demographic_model": f"stdpopsim HomSap {model_id}",
        "parameters": config.to_dict(),
    }


def truth_subjects(subjects: Subjects, sources: tuple[str, ...]) -> pd.DataFrame:
    """``subject_id, population, stratum, frac_<source>...`` per subject."""
    return pd.DataFrame({
        "subject_id": subjects.ids,
        "population": subjects.population,
        "stratum": subjects.stratum,
        **{f"frac_{p}": np.round(subjects.fractions[:, j], 6) for j, p in enumerate(sources)},
    })


def read_truth(folder: str | Path) -> tuple[dict, pd.DataFrame]:
    """Read ``truth.json`` and ``truth_subjects.tsv`` of a simulated cohort."""
    folder = Path(folder)
    truth = json.loads((folder / TRUTH_JSON).read_text())
    subjects = pd.read_csv(folder / TRUTH_SUBJECTS, sep="\t", dtype={"subject_id": str, "population": str})
    return truth, subjects
