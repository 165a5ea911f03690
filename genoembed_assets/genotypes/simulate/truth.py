"""The planted truth written beside a simulated cohort: ``truth.json`` and ``truth_subjects.tsv``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

from .config import SimulationConfig
from .haplotypes import N_STRATA, Subjects
from .phenotypes import EFFECTS, NOISE_SD, SCALE

__all__ = ["TRUTH_JSON", "TRUTH_SUBJECTS", "oracle_strata", "read_truth", "truth_dict", "truth_subjects"]

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


def oracle_strata(logliks: list[np.ndarray]) -> np.ndarray | None:
    """Each subject's most probable stratum given the groups of all its planted haplotypes (None: no strata).

    ``logliks`` are the structure and LD-partner blocks' ``Block.stratum_loglik``
    (the exact draw likelihood); strata are equally common by construction, so
    the prior is flat. No method that sees genotypes knows more than these
    groups about the stratum, except by chance, so the ARI of these labels is the
    ceiling the validity grid scores clusters against.
    """
    if not logliks:
        return None
    return np.sum(logliks, axis=0).argmax(axis=1).astype(np.int64)


def truth_dict(
    config: SimulationConfig, *, subjects: Subjects, blocks: pd.DataFrame, locus_blocks: dict, model_id: str,
    n_panel: int, oracle: np.ndarray | None = None,
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
        # ARI of the haplotype-group oracle (oracle_stratum of truth_subjects.tsv) against the strata.
        "stratum_ari_oracle": None if oracle is None else float(adjusted_rand_score(subjects.stratum, oracle)),
        "effect_feature": ("block PC1 (simulate.block_pc1) residualized on the admixture fractions and "
                           "standardized: effects act within ancestry, confounding comes from the population shifts"),
        "note": _note(bool(strong or weak), bool(partners)),
        "eigenvec_note": _EIGENVEC_NOTES[config.eigenvec_source].format(n_panel=n_panel),
        "demographic_model": f"stdpopsim HomSap {model_id}",
        "parameters": config.to_dict(),
    }


def truth_subjects(subjects: Subjects, sources: tuple[str, ...], oracle: np.ndarray | None = None) -> pd.DataFrame:
    """``subject_id, population, stratum, frac_<source>..., oracle_stratum`` per subject.

    ``oracle_stratum`` (only with planted strata): see :func:`oracle_strata`.
    """
    table = pd.DataFrame({
        "subject_id": subjects.ids,
        "population": subjects.population,
        "stratum": subjects.stratum,
        **{f"frac_{p}": np.round(subjects.fractions[:, j], 6) for j, p in enumerate(sources)},
    })
    if oracle is not None:
        table["oracle_stratum"] = oracle
    return table


def read_truth(folder: str | Path) -> tuple[dict, pd.DataFrame]:
    """Read ``truth.json`` and ``truth_subjects.tsv`` of a simulated cohort."""
    folder = Path(folder)
    truth = json.loads((folder / TRUTH_JSON).read_text())
    subjects = pd.read_csv(folder / TRUTH_SUBJECTS, sep="\t", dtype={"subject_id": str, "population": str})
    return truth, subjects
