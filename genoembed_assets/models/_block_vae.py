"""Phase 1 model: a beta-VAE over the genotypes of one LD block (pure torch).

The module follows scvi-tools' contract: ``inference`` (encoder -> posterior),
``generative`` (latent -> genotype logits) and ``loss`` (a :class:`LossOutput`
keeping reconstruction, KL and beta*KL apart). Training lives in
``_block_training.py``.

Encoding: genotype ``g`` in {0, 1, 2} becomes a one-hot triple; a missing
(-1) or hidden entry becomes an all-zero triple, so it contributes nothing to
the encoder (never "dosage 0"). Inputs and logits are class-major (class ``c``
of variant ``v`` at ``c * n_snps + v``): the softmax over 3 classes then runs
over contiguous rows, several times faster on CPU than over a trailing axis of 3. The loss only counts entries named by a target
mask, which never includes missing ones.

Two implementations share the encoding and the loss:

* :class:`BlockVAE`, a plain single-block ``nn.Module`` (what is saved and loaded);
* :class:`StackedBlockVAE`, G blocks' weights stacked along a leading block
  dimension and run with batched matmuls, so many small blocks train in one
  pass. Variants are padded to the widest block; padding is encoded as missing
  and never a target, and :meth:`StackedBlockVAE.block_state_dict` slices a
  block's weights back into a :class:`BlockVAE` ``state_dict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ._block_config import PRESETS, BlockVAEConfig
from ._keys import GENOTYPE_CLASSES, TENSOR_KEYS
from ._encoding import one_hot_genotypes
from ._local_head import LocalHead

__all__ = [
    "PRESETS",
    "BlockVAE",
    "BlockVAEConfig",
    "LossOutput",
    "StackedBlockVAE",
    "masked_nll",
    "one_hot_genotypes",
    "vae_loss",
]

# Keeps exp(log_var) finite in float32 early in training.
_LOG_VAR_RANGE = (-12.0, 8.0)


@dataclass
class LossOutput:
    """Loss terms, each averaged over subjects (per block when blocks are stacked).

    Attributes
    ----------
    loss
        ``reconstruction + kl_weight * kl``: what is minimised.
    reconstruction
        Summed cross-entropy (or focal loss) over target entries, per subject.
    kl
        KL divergence of the posterior from N(0, I), per subject.
    weighted_kl
        ``kl_weight * kl``.
    n_targets
        Number of target entries scored (per block).
    """

    loss: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor
    weighted_kl: torch.Tensor
    n_targets: torch.Tensor


def vae_loss(
    logits: torch.Tensor,
    genotypes: torch.Tensor,
    target: torch.Tensor,
    z_mean: torch.Tensor,
    z_log_var: torch.Tensor,
    kl_weight: float,
    focal_gamma: float = 0.0,
) -> LossOutput:
    """Masked reconstruction + weighted KL.

    Parameters
    ----------
    logits
        (..., subjects, 3, variants) decoder output (class-major).
    genotypes
        (..., subjects, variants) integers; only read where ``target`` is True.
    target
        Bool mask of the entries that count; must exclude missing entries.
    z_mean, z_log_var
        (..., subjects, latent) posterior parameters.
    kl_weight
        Current beta.
    focal_gamma
        Focal exponent; 0 is plain cross-entropy.

    Returns
    -------
    LossOutput
        Terms reduced over subjects; leading (block) dimensions are kept.
    """
    reconstruction = masked_nll(logits, genotypes, target, focal_gamma).sum(-1).mean(-1)
    kl = (0.5 * (z_mean.pow(2) + z_log_var.exp() - 1.0 - z_log_var)).sum(-1).mean(-1)
    weighted = kl_weight * kl
    return LossOutput(
        loss=reconstruction + weighted,
        reconstruction=reconstruction,
        kl=kl,
        weighted_kl=weighted,
        n_targets=target.sum(dim=(-1, -2)),
    )


def masked_nll(logits: torch.Tensor, genotypes: torch.Tensor, target: torch.Tensor,
               focal_gamma: float = 0.0) -> torch.Tensor:
    """Per-entry negative log-likelihood (..., subjects, variants), zero outside ``target``."""
    log_p = torch.log_softmax(logits, dim=-2)
    # clamp only makes the gather index legal at masked (-1) entries; they are zeroed below.
    index = genotypes.clamp(min=0).long().unsqueeze(-2)
    log_p_true = torch.gather(log_p, -2, index).squeeze(-2)
    nll = -log_p_true
    if focal_gamma > 0:
        nll = nll * (1.0 - log_p_true.exp()).pow(focal_gamma)
    return torch.where(target, nll, torch.zeros((), dtype=nll.dtype, device=nll.device))


def _reparameterize(mean: torch.Tensor, log_var: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return mean + noise * (0.5 * log_var).exp()


class BlockVAE(nn.Module):
    """Single-block beta-VAE over one-hot genotypes.

    Parameters
    ----------
    n_snps
        Variants in the block.
    latent_size
        Latent dimensions.
    hidden_widths
        Encoder widths; the decoder uses them reversed.
    local_partners
        Partners per variant of the local imputation head (0: none). The
        partner indices are a buffer, set by training (:meth:`set_partners`)
        or loaded with the state dict.
    """

    def __init__(self, n_snps: int, latent_size: int, hidden_widths: Sequence[int], local_partners: int = 0) -> None:
        super().__init__()
        self.n_snps = int(n_snps)
        k = int(local_partners) if self.n_snps > 1 else 0  # a lone variant has no partner
        self.local = LocalHead(np.zeros((self.n_snps, k), dtype=np.int64)) if k else None
        widths = [GENOTYPE_CLASSES * self.n_snps, *hidden_widths]
        self.encoder = nn.Sequential(*_mlp(widths))
        self.z_mean = nn.Linear(widths[-1], latent_size)
        self.z_log_var = nn.Linear(widths[-1], latent_size)
        back = [latent_size, *reversed(hidden_widths)]
        self.decoder = nn.Sequential(*_mlp(back), nn.Linear(back[-1], GENOTYPE_CLASSES * self.n_snps))

    @classmethod
    def from_config(cls, config: BlockVAEConfig, n_snps: int) -> "BlockVAE":
        return cls(n_snps, config.latent_size, config.hidden_widths, config.head_partners(n_snps))

    def local_logits(self, genotypes: torch.Tensor, visible: torch.Tensor) -> torch.Tensor | None:
        """The local head's logits (subjects, 3, variants) from the visible calls; None without a head."""
        return None if self.local is None else self.local(genotypes, visible)

    def predict_logits(self, genotypes: torch.Tensor, visible: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The block model's logits: the decoder's at ``z`` plus the local head's (the imputation model).

        ``z`` may hold several draws per subject, (draws * subjects, latent) in draw-major order.
        """
        logits = self.generative(z)[TENSOR_KEYS.LOGITS]
        local = self.local_logits(genotypes, visible)
        if local is None:
            return logits
        draws = logits.shape[0] // local.shape[0]
        return (logits.unflatten(0, (draws, local.shape[0])) + local).flatten(0, 1)

    def inference(
        self, genotypes: torch.Tensor, visible: torch.Tensor, *, sample: bool = True,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Posterior mean, log-variance and a sample (the mean when ``sample`` is False)."""
        hidden = self.encoder(one_hot_genotypes(genotypes, visible))
        mean = self.z_mean(hidden)
        log_var = self.z_log_var(hidden).clamp(*_LOG_VAR_RANGE)
        z = _reparameterize(mean, log_var, generator) if sample else mean
        return {TENSOR_KEYS.Z_MEAN: mean, TENSOR_KEYS.Z_LOG_VAR: log_var, TENSOR_KEYS.Z: z}

    def generative(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits (subjects, 3, variants) over the genotype classes."""
        logits = self.decoder(z)
        return {TENSOR_KEYS.LOGITS: logits.unflatten(-1, (GENOTYPE_CLASSES, self.n_snps))}

    def loss(
        self, genotypes: torch.Tensor, target: torch.Tensor, inference_outputs: dict, generative_outputs: dict,
        kl_weight: float, focal_gamma: float = 0.0,
    ) -> LossOutput:
        return vae_loss(
            generative_outputs[TENSOR_KEYS.LOGITS], genotypes, target,
            inference_outputs[TENSOR_KEYS.Z_MEAN], inference_outputs[TENSOR_KEYS.Z_LOG_VAR],
            kl_weight, focal_gamma,
        )

    def forward(self, genotypes: torch.Tensor, visible: torch.Tensor, **kwargs) -> tuple[dict, dict]:
        inference_outputs = self.inference(genotypes, visible, **kwargs)
        return inference_outputs, self.generative(inference_outputs[TENSOR_KEYS.Z])


def _mlp(widths: Sequence[int]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return layers


class StackedBlockVAE(nn.Module):
    """G block VAEs with stacked weights, run together with batched matmuls.

    Each layer holds a weight (G, fan_in, fan_out) and a bias (G, 1, fan_out),
    applied with ``torch.baddbmm``. Blocks never share a parameter, so summing
    their losses and stepping AdamW equals training them apart.

    Parameters
    ----------
    n_snps
        Variants of each block; the input is padded to ``max(n_snps)``.
    latent_size, hidden_widths
        As in :class:`BlockVAE`.
    generator
        Draws the initialisation (nn.Linear's default, with each block's own fan-in).
    """

    def __init__(
        self, n_snps: Sequence[int], latent_size: int, hidden_widths: Sequence[int],
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.n_snps = [int(n) for n in n_snps]
        self.width = max(self.n_snps)
        self.latent_size = int(latent_size)
        self.hidden_widths = tuple(int(w) for w in hidden_widths)
        fan_ins = torch.tensor([GENOTYPE_CLASSES * n for n in self.n_snps], dtype=torch.float32)
        enc = [GENOTYPE_CLASSES * self.width, *self.hidden_widths]
        dec = [self.latent_size, *reversed(self.hidden_widths), GENOTYPE_CLASSES * self.width]
        # The mean and log-variance heads are one layer here (one matmul); split on export.
        shapes = list(zip(enc[:-1], enc[1:])) + [(enc[-1], 2 * self.latent_size)] + list(zip(dec[:-1], dec[1:]))
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i, (fan_in, fan_out) in enumerate(shapes):
            block_fan_in = fan_ins if i == 0 else torch.full((len(self.n_snps),), float(fan_in))
            bound = (1.0 / block_fan_in.sqrt()).view(-1, 1, 1)
            weight = (torch.rand(len(self.n_snps), fan_in, fan_out, generator=generator) * 2 - 1) * bound
            bias = (torch.rand(len(self.n_snps), 1, fan_out, generator=generator) * 2 - 1) * bound
            if i == 0:
                weight = weight * self._input_rows_mask().unsqueeze(-1)
            if i == len(shapes) - 1:
                cols = self._input_rows_mask().unsqueeze(1)
                weight, bias = weight * cols, bias * cols
            self.weights.append(nn.Parameter(weight))
            self.biases.append(nn.Parameter(bias))
        self._n_encoder = len(enc) - 1

    def _input_rows_mask(self) -> torch.Tensor:
        """(G, 3 * width) float mask of real (not padding) one-hot positions."""
        variant = torch.arange(GENOTYPE_CLASSES * self.width) % self.width
        limits = torch.tensor(self.n_snps).unsqueeze(1)
        return (variant.unsqueeze(0) < limits).to(torch.float32)

    def _real_positions(self, g: int) -> torch.Tensor:
        """Indices of block ``g``'s real one-hot positions in the padded class-major layout."""
        variants = torch.arange(self.n_snps[g])
        return torch.cat([c * self.width + variants for c in range(GENOTYPE_CLASSES)])

    @property
    def n_blocks(self) -> int:
        return len(self.n_snps)

    def _layer(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.biases[i], x, self.weights[i])

    def inference(
        self, genotypes: torch.Tensor, visible: torch.Tensor, *, sample: bool = True,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """As :meth:`BlockVAE.inference` with inputs (G, subjects, width)."""
        hidden = one_hot_genotypes(genotypes, visible)
        for i in range(self._n_encoder):
            hidden = torch.relu(self._layer(i, hidden))
        stats = self._layer(self._n_encoder, hidden)
        mean, log_var = stats.split(self.latent_size, dim=-1)
        log_var = log_var.clamp(*_LOG_VAR_RANGE)
        z = _reparameterize(mean, log_var, generator) if sample else mean
        return {TENSOR_KEYS.Z_MEAN: mean, TENSOR_KEYS.Z_LOG_VAR: log_var, TENSOR_KEYS.Z: z}

    def generative(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = z
        last = len(self.weights) - 1
        for i in range(self._n_encoder + 1, last):
            hidden = torch.relu(self._layer(i, hidden))
        logits = self._layer(last, hidden)
        return {TENSOR_KEYS.LOGITS: logits.unflatten(-1, (GENOTYPE_CLASSES, self.width))}

    def forward(self, genotypes: torch.Tensor, visible: torch.Tensor, **kwargs) -> tuple[dict, dict]:
        inference_outputs = self.inference(genotypes, visible, **kwargs)
        return inference_outputs, self.generative(inference_outputs[TENSOR_KEYS.Z])

    @torch.no_grad()
    def keep_blocks(self, keep: torch.Tensor) -> None:
        """Keep only the blocks at indices ``keep``, as new ``Parameter`` objects.

        New parameters (rather than resizing ``.data``) because autograd keeps the
        old shapes of a leaf it has seen; the caller rebuilds the optimiser.
        """
        for params in (self.weights, self.biases):
            for i, param in enumerate(params):
                params[i] = nn.Parameter(param.detach()[keep].contiguous())
        self.n_snps = [self.n_snps[i] for i in keep.tolist()]

    @torch.no_grad()
    def block_state_dict(self, g: int, params: Sequence[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Block ``g``'s weights as a :class:`BlockVAE` ``state_dict`` (padding sliced off).

        ``params`` may be a snapshot (weights then biases, as in
        :meth:`parameters_snapshot`) to export instead of the live weights.
        """
        weights = list(params[: len(self.weights)]) if params is not None else list(self.weights)
        biases = list(params[len(self.weights):]) if params is not None else list(self.biases)
        real = self._real_positions(g).to(self.weights[0].device)
        names = BlockVAE(1, self.latent_size, self.hidden_widths)  # layer names only
        enc_names = [n for n, m in names.encoder.named_children() if isinstance(m, nn.Linear)]
        dec_names = [n for n, m in names.decoder.named_children() if isinstance(m, nn.Linear)]
        state: dict[str, torch.Tensor] = {}

        def put(prefix: str, weight: torch.Tensor, bias: torch.Tensor) -> None:
            # nn.Linear stores (fan_out, fan_in); stacked layers store (fan_in, fan_out).
            state[f"{prefix}.weight"] = weight.t().contiguous().clone()
            state[f"{prefix}.bias"] = bias.reshape(-1).clone()

        for i, name in enumerate(enc_names):
            w = weights[i][g]
            put(f"encoder.{name}", w[real] if i == 0 else w, biases[i][g])
        head_w, head_b = weights[self._n_encoder][g], biases[self._n_encoder][g].reshape(-1)
        k = self.latent_size
        put("z_mean", head_w[:, :k], head_b[:k])
        put("z_log_var", head_w[:, k:], head_b[k:])
        for j, name in enumerate(dec_names):
            i = self._n_encoder + 1 + j
            w, b = weights[i][g], biases[i][g].reshape(-1)
            if j == len(dec_names) - 1:
                w, b = w[:, real], b[real]
            put(f"decoder.{name}", w, b)
        return state

    @torch.no_grad()
    def parameters_snapshot(self) -> list[torch.Tensor]:
        """Copies of every weight then every bias (for keeping the best epoch)."""
        return [p.detach().clone() for p in [*self.weights, *self.biases]]
