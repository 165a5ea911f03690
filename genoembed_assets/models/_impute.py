"""Imputation with a trained block model: missing calls filled from its posterior predictive (pure torch).

A subject's observed calls of the block are encoded (missing calls are an
all-zero one-hot, as in training), latent vectors are drawn from the
posterior q(z | observed calls), and the genotype probabilities of every call
are the decoder's softmax averaged over the draws: the posterior predictive
p(g | observed) = E_q[p(g | z)]. Only missing calls take these probabilities;
an observed call keeps its genotype with probability 1, so output never
contradicts input.

Per call: GT = argmax GP, DS = GP1 + 2 GP2 (expected ALT dosage). Per variant,
the dosage r² estimate follows Beagle's DR2 (Browning & Browning 2009): the
variance of the imputed dosages over the variance a true dosage would have
under the predicted probabilities, over the imputed calls only (observed calls
would inflate it towards 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ._block_vae import BlockVAE
from ._keys import GENOTYPE_CLASSES, TENSOR_KEYS

__all__ = ["ImputedBlock", "dosage_r2", "impute_block", "posterior_predictive"]

DEFAULT_DRAWS = 16
_CHUNK = 1024


@dataclass
class ImputedBlock:
    """One block's calls after imputation.

    Attributes
    ----------
    gp
        float32 (subjects, variants, 3) genotype probabilities.
    gt
        int8 (subjects, variants) ALT dosage call, argmax of ``gp``; never -1.
    ds
        float32 (subjects, variants) expected dosage ``gp[..., 1] + 2 gp[..., 2]``.
    imputed
        bool (subjects, variants): True where the input call was missing.
    dr2
        float32 (variants,) dosage r² estimate over imputed calls (NaN where none).
    """

    gp: np.ndarray
    gt: np.ndarray
    ds: np.ndarray
    imputed: np.ndarray
    dr2: np.ndarray


@torch.no_grad()
def posterior_predictive(
    model: BlockVAE, genotypes: np.ndarray, *, visible: np.ndarray | None = None, n_draws: int = DEFAULT_DRAWS,
    seed: int = 0,
) -> np.ndarray:
    """Genotype probabilities (subjects, variants, 3) of every call given the visible ones.

    Parameters
    ----------
    model
        A trained single-block model (its device is used).
    genotypes
        int8 (subjects, variants), -1 missing.
    visible
        Calls the encoder sees; default every observed call. Benchmarks hide
        calls here to score them.
    n_draws
        Posterior draws averaged; 0 decodes the posterior mean only.
    seed
        Seed of the draws (the output is reproducible).
    """
    device = next(model.parameters()).device
    model.eval()
    x_all = torch.as_tensor(np.asarray(genotypes, dtype=np.int8), device=device)
    seen_all = x_all >= 0 if visible is None else torch.as_tensor(visible, device=device) & (x_all >= 0)
    generator = torch.Generator(device=device).manual_seed(seed)
    parts = []
    for start in range(0, x_all.shape[0], _CHUNK):
        x, seen = x_all[start:start + _CHUNK], seen_all[start:start + _CHUNK]
        inference = model.inference(x, seen, sample=False)
        mean, log_var = inference[TENSOR_KEYS.Z_MEAN], inference[TENSOR_KEYS.Z_LOG_VAR]
        if n_draws < 1:
            probs = torch.softmax(model.generative(mean)[TENSOR_KEYS.LOGITS], dim=-2)
        else:
            # all draws in one decoder pass: (draws * subjects, latent)
            noise = torch.randn((n_draws, *mean.shape), generator=generator, device=device)
            z = (mean + noise * (0.5 * log_var).exp()).flatten(0, 1)
            logits = model.generative(z)[TENSOR_KEYS.LOGITS].unflatten(0, (n_draws, mean.shape[0]))
            probs = torch.softmax(logits, dim=-2).mean(0)
        parts.append(probs.transpose(-1, -2).float().cpu())  # (subjects, variants, 3)
    return torch.cat(parts).numpy()


def dosage_r2(gp: np.ndarray, imputed: np.ndarray) -> np.ndarray:
    """Beagle-style DR2 per variant over the imputed calls; NaN where a variant has no imputed call.

    With d = E[dose] and e = E[dose²] per call under ``gp``:
    DR2 = (Σd² - (Σd)²/n) / (Σe - (Σd)²/n); 0 when the denominator vanishes
    (every imputed call certain and identical carries no variance to explain).
    """
    d = gp[..., 1] + 2.0 * gp[..., 2]
    e = gp[..., 1] + 4.0 * gp[..., 2]
    w = imputed.astype(np.float64)
    n = w.sum(axis=0)
    sum_d = (w * d).sum(axis=0)
    base = np.divide(sum_d ** 2, n, out=np.zeros_like(sum_d), where=n > 0)
    num = (w * d * d).sum(axis=0) - base
    den = (w * e).sum(axis=0) - base
    r2 = np.divide(num, den, out=np.zeros_like(num), where=den > 1e-12)
    r2 = np.clip(r2, 0.0, 1.0)
    r2[n == 0] = np.nan
    return r2.astype(np.float32)


def impute_block(model: BlockVAE, genotypes: np.ndarray, *, n_draws: int = DEFAULT_DRAWS, seed: int = 0) -> ImputedBlock:
    """Fill every missing call of one block; observed calls stay as they are (probability 1).

    Parameters
    ----------
    model
        The block's trained model (``load_block_model``).
    genotypes
        int8 (subjects, variants) in the model's variant order, -1 missing.
    n_draws, seed
        Posterior draws averaged (see :func:`posterior_predictive`).
    """
    genotypes = np.asarray(genotypes, dtype=np.int8)
    if genotypes.ndim != 2 or genotypes.shape[1] != model.n_snps:
        raise ValueError(f"genotypes of shape {genotypes.shape} do not fit a block model of {model.n_snps} variants")
    imputed = genotypes < 0
    gp = np.zeros((*genotypes.shape, GENOTYPE_CLASSES), dtype=np.float32)
    if imputed.any():
        gp[imputed] = posterior_predictive(model, genotypes, n_draws=n_draws, seed=seed)[imputed]
    observed = ~imputed
    gp[observed, genotypes[observed]] = 1.0
    gt = gp.argmax(-1).astype(np.int8)
    gt[observed] = genotypes[observed]  # ties in gp can never move an observed call
    ds = (gp[..., 1] + 2.0 * gp[..., 2]).astype(np.float32)
    return ImputedBlock(gp=gp, gt=gt, ds=ds, imputed=imputed, dr2=dosage_r2(gp, imputed))
