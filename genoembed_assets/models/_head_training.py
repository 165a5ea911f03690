"""The local head's training step and the validation pass of Phase 1 training (pure torch).

Used by :func:`._block_training.train_blocks`. The head (:mod:`._local_head`)
trains beside the VAE on the decoder's detached logits. Fitting it only after
the VAE had stopped, on the frozen best decoder, was tried (2026-12-05): 8
epochs cost a third of training beside it and matched its accuracy with the
``fast`` preset, but with ``impute`` (a wider decoder that fits its training
subjects closely) the chr20 block model fell from 0.959 to 0.947-0.953: a head
fitted on top of a decoder that already reproduces its training subjects
learns too little to help on subjects it has not seen.
"""

from __future__ import annotations

import torch

from ._block_config import BlockVAEConfig
from ._block_vae import StackedBlockVAE, masked_nll, vae_loss
from ._keys import TENSOR_KEYS
from ._local_head import StackedLocalHead

__all__ = ["copy_rows", "head_step", "validation_terms"]


def head_step(head: StackedLocalHead, optimizer, visible, vae_logits, x, observed, config: BlockVAEConfig,
               n_train: int) -> None:
    """One step of the local head on a mini-batch: mean NLL per observed call plus its L2 penalty, per block."""
    nll = masked_nll(vae_logits + head(x, visible), x, observed).sum(dim=(-1, -2))
    loss = nll / observed.sum(dim=(-1, -2)).clamp(min=1) + config.local_l2 * head.weight.pow(2).sum(
        dim=(1, 2, 3, 4)) / n_train
    optimizer.zero_grad(set_to_none=True)
    loss.sum().backward()  # blocks share no parameter
    optimizer.step()


@torch.no_grad()
def validation_terms(model: StackedBlockVAE, head: StackedLocalHead | None, x_val, visible, target, held,
                      config: BlockVAEConfig, chunk: int):
    """(loss, reconstruction, kl, head reconstruction, held-out accuracy) per block on validation subjects.

    Reconstructions are over ``target`` (stop) entries, at the target beta,
    decoding the posterior mean, so the yardstick of early stopping is
    deterministic and does not move with the beta schedule. The head's
    reconstruction is the block model's (decoder plus head; None without a
    head). The accuracy is the block model's on the ``held`` entries, which the
    encoder never saw and nothing is chosen on (a learning curve only).
    """
    model.eval()
    n_val = x_val.shape[1]
    recon = torch.zeros(x_val.shape[0], device=x_val.device)
    kl = torch.zeros_like(recon)
    head_recon = torch.zeros_like(recon)
    correct = torch.zeros_like(recon)
    for start in range(0, n_val, chunk):
        x, v, t = x_val[:, start:start + chunk], visible[:, start:start + chunk], target[:, start:start + chunk]
        h = held[:, start:start + chunk]
        inference, generative = model(x, v, sample=False)
        logits = generative[TENSOR_KEYS.LOGITS]
        terms = vae_loss(logits, x, t, inference[TENSOR_KEYS.Z_MEAN],
                         inference[TENSOR_KEYS.Z_LOG_VAR], config.beta, config.focal_gamma)
        recon += terms.reconstruction * x.shape[1]
        kl += terms.kl * x.shape[1]
        if head is not None:
            logits = logits + head(x, v)
            head_recon += masked_nll(logits, x, t).sum(dim=(-1, -2))
        correct += _held_correct(logits, x, h)
    recon, kl = (recon / n_val).cpu(), (kl / n_val).cpu()
    accuracy = (correct / held.sum(dim=(-1, -2)).clamp(min=1)).cpu()
    return recon + config.beta * kl, recon, kl, (head_recon / n_val).cpu() if head is not None else None, accuracy


@torch.no_grad()
def copy_rows(snapshot: list[torch.Tensor], live: list[torch.Tensor], rows: list[int]) -> None:
    """Copy blocks ``rows`` (leading index) of each live parameter into its snapshot."""
    if rows:
        index = torch.tensor(rows, device=live[0].device)
        for snap, param in zip(snapshot, live):
            snap.index_copy_(0, index, param.detach().index_select(0, index))


def _held_correct(logits: torch.Tensor, x: torch.Tensor, held: torch.Tensor) -> torch.Tensor:
    """Per block, how many ``held`` calls the logits (G, n, 3, V) predict right (argmax over the few held calls only)."""
    blocks, subjects, variants = held.nonzero(as_tuple=True)
    right = logits[blocks, subjects, :, variants].argmax(-1) == x[blocks, subjects, variants].long()
    return torch.zeros(held.shape[0], device=logits.device).index_add_(0, blocks, right.float())
