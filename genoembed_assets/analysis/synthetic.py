"""Tiny synthetic analysis inputs with planted truth (for tests and notebooks).

This is not the genotype simulator (``genotypes/simulate.py``); it skips
genotypes and models and directly draws what the analyses read: per-block
latent embeddings, a subject embedding, genotype PCs and phenotypes, with the
same kind of planted truth as the demo cohort:

* two ancestral populations shift every block and genotype PC1;
* a hidden 3-level stratum, independent of ancestry, shapes two HLA class II
  blocks strongly and one PDE4D block weakly;
* phenotype effects come from named blocks, IgE strongest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .features import SUBJECT_ID

__all__ = ["SyntheticCohort", "synthetic_cohort"]

# block_id, chrom, start, end, locus name (hg19 coordinates inside the named loci)
_NAMED_BLOCKS = [
    ("chr6_b0100", "6", 29_000_000, 29_500_000, "MHC_class_I"),
    ("chr6_b0101", "6", 32_400_000, 32_700_000, "HLA_DRDQ"),
    ("chr6_b0102", "6", 33_000_000, 33_100_000, "HLA_DP"),
    ("chr5_b0050", "5", 58_200_000, 58_800_000, "PDE4D_1"),
    ("chr5_b0051", "5", 58_800_000, 59_800_000, "PDE4D_2"),
    ("chr17_b0060", "17", 37_900_000, 38_100_000, "17q21"),
    ("chr9_b0005", "9", 6_200_000, 6_300_000, "IL33"),
    ("chr5_b0090", "5", 110_400_000, 110_500_000, "TSLP"),
    ("chr2_b0080", "2", 102_900_000, 103_000_000, "IL1RL1"),
]
# planted effects in SD of the trait's noise per SD of the block's signal axis
_EFFECTS = [
    ("17q21", "ige", 0.5),
    ("IL1RL1", "ige", 0.3),
    ("IL33", "eosinophils", 0.35),
    ("TSLP", "fev1", 0.3),
    ("PDE4D_2", "exacerbations", 0.35),
]


@dataclass(frozen=True)
class SyntheticCohort:
    """Analysis inputs and their planted truth.

    Attributes
    ----------
    block_embeddings : dict of block_id to DataFrame ``subject_id, z0..``
    embedding : DataFrame ``subject_id, e0..`` (a stand-in Phase 2 embedding)
    pcs : DataFrame ``subject_id, PC1..PC10``
    phenotypes : DataFrame ``subject_id, age, sex, ige, eosinophils, fev1, exacerbations``
    blocks : DataFrame ``block_id, chrom, start, end, n_snps``
    subjects : DataFrame ``subject_id, population, stratum``
    truth : dict in the shape of the demo cohort's ``truth.json``
    """

    block_embeddings: dict
    embedding: pd.DataFrame
    pcs: pd.DataFrame
    phenotypes: pd.DataFrame
    blocks: pd.DataFrame
    subjects: pd.DataFrame
    truth: dict


def synthetic_cohort(
    n_subjects: int = 400,
    n_background: int = 30,
    latent_dim: int = 4,
    strong: float = 2.5,
    weak: float = 1.2,
    missing_fraction: float = 0.05,
    random_state: int = 0,
) -> SyntheticCohort:
    """Draw a synthetic cohort (see the module docstring for what is planted).

    Parameters
    ----------
    n_subjects, n_background, latent_dim : int
        Subjects, unnamed background blocks, latent units per block.
    strong, weak : float
        Separation of the stratum centres in the HLA blocks and the PDE4D block
        (in units of the latent noise SD).
    missing_fraction : float
        Fraction of IgE and FEV1 values set missing.
    random_state : int
    """
    rng = np.random.default_rng(random_state)
    n = n_subjects
    ids = np.array([f"S{i:05d}" for i in range(n)])
    population = rng.integers(0, 2, n)
    ancestry = population + rng.normal(0, 0.15, n)  # admixture around two populations
    ancestry -= ancestry.mean()
    stratum = rng.integers(0, 3, n)
    angles = 2 * np.pi * np.arange(3) / 3
    centres = np.column_stack([np.cos(angles), np.sin(angles)])[stratum]  # (n, 2)

    blocks = list(_NAMED_BLOCKS)
    used = {(c, s) for _, c, s, _, _ in blocks}
    for i in range(n_background):
        chrom = str(1 + i % 22)
        start = 120_000_000 + 1_000_000 * i
        if (chrom, start) not in used:
            blocks.append((f"chr{chrom}_b{1000 + i:04d}", chrom, start, start + 500_000, ""))
    locus_blocks = {name: b for b, _, _, _, name in blocks if name}
    strong_blocks = [locus_blocks["HLA_DRDQ"], locus_blocks["HLA_DP"]]
    weak_blocks = [locus_blocks["PDE4D_1"]]

    block_embeddings, signal = {}, {}
    for block, *_ in blocks:
        z = rng.normal(0, 1, (n, latent_dim))
        z[:, 0] *= 1.5  # a dominant genetic axis, the one phenotype effects act through
        signal[block] = (z[:, 0] - z[:, 0].mean()) / z[:, 0].std()
        direction = rng.normal(0, 1, latent_dim)
        z += np.outer(ancestry, direction / np.linalg.norm(direction)) * rng.uniform(1.0, 2.0)
        if block in strong_blocks or block in weak_blocks:
            z[:, :2] += centres * (strong if block in strong_blocks else weak)
        frame = pd.DataFrame(z, columns=[f"z{j}" for j in range(latent_dim)])
        frame.insert(0, SUBJECT_ID, ids)
        block_embeddings[block] = frame

    emb = rng.normal(0, 0.5, (n, 8))
    emb[:, 0] += 3.0 * ancestry  # ancestry dominates the embedding's main axis
    emb[:, 1:3] += 1.5 * centres
    emb[:, 3] += 0.5 * signal[locus_blocks["17q21"]]
    embedding = pd.DataFrame(emb, columns=[f"e{j}" for j in range(emb.shape[1])])
    embedding.insert(0, SUBJECT_ID, ids)

    pc = rng.normal(0, 1, (n, 10))
    pc[:, 0] = ancestry / ancestry.std() + rng.normal(0, 0.1, n)
    pcs = pd.DataFrame(pc, columns=[f"PC{j}" for j in range(1, 11)])
    pcs.insert(0, SUBJECT_ID, ids)

    age = rng.uniform(20, 70, n)
    sex = rng.integers(0, 2, n)
    effect = {p: np.zeros(n) for p in ("ige", "eosinophils", "fev1", "exacerbations")}
    for locus, trait, beta in _EFFECTS:
        effect[trait] += beta * signal[locus_blocks[locus]]
    log_ige = 4.0 + effect["ige"] + 0.3 * population + 0.01 * age + rng.normal(0, 1, n)
    log_eos = 5.0 + 0.8 * effect["eosinophils"] + rng.normal(0, 0.8, n)
    fev1 = 3.5 - 0.02 * (age - 45) + 0.5 * sex + 0.5 * effect["fev1"] + rng.normal(0, 0.5, n)
    mu = np.exp(0.3 + effect["exacerbations"])
    alpha = 1.0  # NB2 overdispersion: var = mu + alpha mu^2
    exac = rng.poisson(rng.gamma(1 / alpha, alpha * mu))
    phenotypes = pd.DataFrame(
        {SUBJECT_ID: ids, "age": age, "sex": sex, "ige": np.exp(log_ige), "eosinophils": np.exp(log_eos), "fev1": fev1, "exacerbations": exac}
    )
    for col in ("ige", "fev1"):
        phenotypes.loc[rng.random(n) < missing_fraction, col] = np.nan

    block_table = pd.DataFrame(
        [(b, c, s, e, int(rng.integers(50, 400))) for b, c, s, e, _ in blocks],
        columns=["block_id", "chrom", "start", "end", "n_snps"],
    )
    effect_blocks = {locus_blocks[locus] for locus, _, _ in _EFFECTS}
    structured = set(strong_blocks + weak_blocks)
    truth = {
        "seed": random_state,
        "n_subjects": n,
        "n_strata": 3,
        "strong_structure_blocks": strong_blocks,
        "weak_structure_blocks": weak_blocks,
        "structure_blocks": strong_blocks + weak_blocks,
        "locus_blocks": locus_blocks,
        "effects": [{"block": locus_blocks[lo], "phenotype": t, "beta": b} for lo, t, b in _EFFECTS],
        "null_blocks": [b for b, *_ in blocks if b not in effect_blocks and b not in structured],
    }
    subjects = pd.DataFrame({SUBJECT_ID: ids, "population": population, "stratum": stratum})
    return SyntheticCohort(block_embeddings, embedding, pcs, phenotypes, block_table, subjects, truth)
