"""Planted phenotypes: locus block PC1 effects, ancestry confounding, age/sex and noise."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from .config import Demography
from .haplotypes import Subjects

__all__ = ["EFFECTS", "NOISE_SD", "SCALE", "phenotypes", "within_ancestry"]

# Planted phenotype effects: (phenotype, locus, standardized beta). The beta is
# per SD of the block's ancestry-adjusted PC1 (see within_ancestry) in SDs of
# the trait's noise on its modelling scale (log for ige/eosinophils, litres for
# fev1, log-rate for exacerbations).
# Sized so every planted pair is found at a few hundred subjects.
EFFECTS = (
    ("ige", "HLA_DRDQ", 0.70),
    ("ige", "17q21", 0.45),
    ("ige", "IL33", 0.45),
    ("eosinophils", "IL1RL1", 0.50),
    ("eosinophils", "TSLP", 0.45),
    ("fev1", "17q21", -0.45),
    ("exacerbations", "17q21", 0.45),
)
# Noise SD of each trait on its modelling scale; exacerbations has none (its
# noise is the negative-binomial draw) so its beta is a log rate ratio.
NOISE_SD = {"ige": 1.0, "eosinophils": 0.55, "fev1": 0.45, "exacerbations": 1.0}
SCALE = {"ige": "log(kU/L)", "eosinophils": "log(cells/uL)", "fev1": "litres", "exacerbations": "log rate"}
# Ancestry confounding: mean shift per continental group of a source population
# on the modelling scale (admixed subjects get the fraction-weighted shift).
_ANCESTRY_SHIFT = {
    "ige": {"AFR": 0.45, "EUR": 0.0, "ASIA": 0.25},
    "eosinophils": {"AFR": -0.10, "EUR": 0.0, "ASIA": 0.15},
    "fev1": {"AFR": -0.35, "EUR": 0.0, "ASIA": -0.20},
    "exacerbations": {"AFR": 0.25, "EUR": 0.0, "ASIA": -0.10},
}


def within_ancestry(feature: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """``feature`` residualized on the admixture fractions, rescaled to SD 1.

    A block's PC1 is partly an ancestry axis; planting effects on the part
    within ancestry keeps them separate from the planted confounding (the
    population mean shifts) and recoverable after adjusting for ancestry PCs,
    whatever share of the block's PC1 ancestry happens to take.
    """
    design = np.column_stack([np.ones(len(feature)), fractions[:, :-1]])  # fractions sum to 1
    resid = feature - design @ np.linalg.lstsq(design, feature, rcond=None)[0]
    return resid / resid.std()


def phenotypes(subjects: Subjects, demography: Demography, features: Mapping[str, np.ndarray],
               rng: np.random.Generator) -> pd.DataFrame:
    """The phenotype table (``subject_id, age, sex, ige, eosinophils, fev1, exacerbations``)."""
    n = len(subjects.ids)
    age = rng.integers(18, 76, size=n)
    sex = rng.integers(0, 2, size=n)
    latent = {}
    for trait in NOISE_SD:
        shift = subjects.fractions @ np.array([_ANCESTRY_SHIFT[trait][c] for c in demography.continents])
        genetic = sum(
            (b * NOISE_SD[trait] * features[locus] for t, locus, b in EFFECTS if t == trait), np.zeros(n)
        )
        latent[trait] = shift + genetic
    ige = np.exp(np.log(60.0) + latent["ige"] + 0.15 * sex - 0.006 * (age - 45) + rng.normal(0, NOISE_SD["ige"], n))
    eos = np.exp(np.log(200.0) + latent["eosinophils"] + 0.05 * sex + rng.normal(0, NOISE_SD["eosinophils"], n))
    fev1 = 4.0 - 0.028 * (age - 20) + 0.9 * sex + latent["fev1"] + rng.normal(0, NOISE_SD["fev1"], n)
    fev1 = np.maximum(fev1, 0.5)  # physiological floor
    # Negative binomial as a gamma-Poisson mixture (dispersion 2).
    rate = np.exp(np.log(0.7) + latent["exacerbations"] + 0.005 * (age - 45) - 0.15 * sex)
    exac = rng.poisson(rate * rng.gamma(2.0, 1 / 2.0, n))
    return pd.DataFrame({
        "subject_id": subjects.ids,
        "age": age,
        "sex": sex,
        "ige": np.round(ige, 3),
        "eosinophils": np.round(eos, 1),
        "fev1": np.round(fev1, 3),
        "exacerbations": exac,
    })
