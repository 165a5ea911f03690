"""Training of Phase 1 block VAEs, many blocks per process (pure torch, no Dagster).

:func:`train_blocks` groups blocks of the same subject count and similar width,
pads them to the group's widest block and trains each group as one
:class:`StackedBlockVAE` (batched matmuls over a block dimension). Blocks stop
early on their own: a finished block's best weights are exported, scored and
dropped from the stack, so the remaining ones run faster. Groups run one after
another, so peak memory follows the largest group, not the number of blocks.

The evaluation protocol (subject split, held-out and stop entries, baselines) is
:mod:`._block_protocol`; a block's files are :mod:`._block_artifacts`.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from ._block_artifacts import BlockFit, pick_device
from ._block_config import DENSE_HEAD_MAX_WIDTH
from ._block_protocol import block_metrics, heldout_mask, split_subjects, validate_blocks
from ._block_vae import BlockVAE, BlockVAEConfig, StackedBlockVAE, vae_loss
from ._keys import METRIC_KEYS, TENSOR_KEYS
from ._ld_neighbours import ld_partners
from ._head_training import copy_rows, head_step, validation_terms
from ._local_head import StackedLocalHead
from ._schedules import kl_weight, learning_rate

__all__ = ["train_blocks"]

# heldout_acc: the block model's held-out masked accuracy after the epoch (scored in the validation pass, so
# free); seconds: the block's group's training time so far (blocks of a group train together).
CURVE_COLUMNS = ["epoch", "train_loss", "val_loss", "recon", "kl", "beta", "lr", "heldout_acc", "seconds"]
# A group's padded size: (blocks x widest block) variants. Bounds activation memory
# (batch x 3 x this many floats per layer); a single wider block still trains alone.
MAX_GROUP_VARIANTS = 8192
# Wider blocks gather each variant's partners for the local head (memory-bound): stacked in smaller groups,
# the gathered tensors stay small (13 chr20 blocks of 557-952 variants, preset fast: 19.8 s at 2,048 against
# 25.3 s at 8,192; the demo's 160-variant blocks, on the dense way, gain from the full 8,192).
MAX_GROUP_VARIANTS_WIDE = 2048
MAX_GROUP_BLOCKS = 64
# Blocks join a group while the widest is at most this multiple of the narrowest,
# so padding wastes at most ~1/3 of the compute.
MAX_WIDTH_RATIO = 1.5


# ---------------------------------------------------------------- training




def _group_blocks(widths: Sequence[int], n_subjects: Sequence[int]) -> list[list[int]]:
    """Indices grouped by subject count and similar width (deterministic)."""
    order = sorted(range(len(widths)), key=lambda i: (n_subjects[i], widths[i], i))
    dense = [w <= DENSE_HEAD_MAX_WIDTH for w in widths]  # the dense and the gathering head never share a group
    groups: list[list[int]] = []
    for i in order:
        current = groups[-1] if groups else None
        if (
            current is not None
            and n_subjects[current[0]] == n_subjects[i]
            and widths[i] <= MAX_WIDTH_RATIO * widths[current[0]]
            and dense[i] == dense[current[0]]
            and (len(current) + 1) * widths[i] <= (MAX_GROUP_VARIANTS if dense[i] else MAX_GROUP_VARIANTS_WIDE)
            and len(current) < MAX_GROUP_BLOCKS
        ):
            current.append(i)
        else:
            groups.append([i])
    return groups


def train_blocks(
    blocks: Sequence[tuple[str, np.ndarray]],
    config: BlockVAEConfig,
    *,
    device: str | torch.device | None = None,
    log: Callable[[str], None] | None = None,
    on_fit: Callable[[BlockFit], None] | None = None,
) -> list[BlockFit]:
    """Train one block VAE per block, stacking similar blocks into one batched model.

    Parameters
    ----------
    blocks
        ``(block_id, genotypes)`` pairs; genotypes int8 (subjects, variants), -1 missing.
    config
        Model and training settings (shared by all blocks).
    device
        Torch device; ``None`` picks CUDA when available, else CPU.
    log
        Receives progress lines (group i/n, epoch, losses).
    on_fit
        When given, each :class:`BlockFit` is handed to it as soon as it is
        ready and not kept, so results of thousands of blocks never pile up in
        memory; the function then returns an empty list.

    Returns
    -------
    list of BlockFit
        In the order of ``blocks`` (empty when ``on_fit`` is given).

    Raises
    ------
    ValueError
        On a bad block (see :func:`validate_blocks`) before anything trains.
    """
    checked = validate_blocks(blocks, config)
    device = pick_device(device)
    say = log or (lambda message: None)
    groups = _group_blocks([g.shape[1] for _, g in checked], [g.shape[0] for _, g in checked])
    fits: dict[int, BlockFit] = {}

    def deliver(index: int, fit: BlockFit) -> None:
        if on_fit is not None:
            on_fit(fit)
        else:
            fits[index] = fit

    for number, members in enumerate(groups, start=1):
        widths = [checked[i][1].shape[1] for i in members]
        say(f"block group {number}/{len(groups)}: {len(members)} blocks, {min(widths)}-{max(widths)} variants, "
            f"{checked[members[0]][1].shape[0]} subjects")
        _train_group([checked[i] for i in members], config, device, say, lambda j, fit: deliver(members[j], fit),
                     label=f"group {number}/{len(groups)}")
    return [fits[i] for i in range(len(checked))] if on_fit is None else []


def _train_group(
    blocks: list[tuple[str, np.ndarray]],
    config: BlockVAEConfig,
    device: torch.device,
    say: Callable[[str], None],
    deliver: Callable[[int, BlockFit], None],
    label: str,
) -> None:
    """Train blocks sharing a subject count as one stacked model."""
    n_subjects = blocks[0][1].shape[0]
    width = max(g.shape[1] for _, g in blocks)
    train_idx, val_idx = split_subjects(n_subjects, config)
    padded = np.full((len(blocks), n_subjects, width), -1, dtype=np.int8)
    held = np.zeros((len(blocks), len(val_idx), width), dtype=bool)
    stop = np.zeros_like(held)
    for g, (block_id, genotypes) in enumerate(blocks):
        padded[g, :, : genotypes.shape[1]] = genotypes
        held[g, :, : genotypes.shape[1]] = heldout_mask(genotypes[val_idx], config, block_id)
        rest = np.where(held[g, :, : genotypes.shape[1]], -1, genotypes[val_idx])
        stop[g, :, : genotypes.shape[1]] = heldout_mask(rest, config, f"{block_id}/stop")
    x_train = torch.as_tensor(padded[:, train_idx], device=device)
    x_val = torch.as_tensor(padded[:, val_idx], device=device)
    del padded
    # Held-out and stop entries are hidden from the encoder; early stopping scores the stop entries only.
    val_target = torch.as_tensor(stop, device=device)
    val_held = torch.as_tensor(held, device=device)
    val_visible = (x_val >= 0) & ~val_held & ~val_target

    generator = torch.Generator().manual_seed(config.seed)
    model = StackedBlockVAE([g.shape[1] for _, g in blocks], config.latent_size, config.hidden_widths,
                            generator=generator).to(device)
    if device.type != "cpu":
        generator = torch.Generator(device=device).manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    # The local head: its own optimiser, fed the decoder's detached logits, so the VAE trains as without it.
    head = head_optimizer = None
    k = config.head_partners(width)  # the same for every block of the group (_group_blocks keeps the two kinds apart)
    if k:
        head = StackedLocalHead([ld_partners(g[train_idx], k) for _, g in blocks], width).to(device)
        head_optimizer = torch.optim.Adam(head.parameters(), lr=config.local_lr)
        best_head = head.snapshot()
        best_head_val = torch.full((len(blocks),), float("inf"))

    n_train = len(train_idx)
    batch = min(config.batch_size, n_train)
    steps_per_epoch = math.ceil(n_train / batch)
    total_steps = config.max_epochs * steps_per_epoch
    warmup_steps = config.lr_warmup_epochs * steps_per_epoch
    schedule = dict(beta=config.beta, schedule=config.beta_schedule, warmup_epochs=config.kl_warmup_epochs,
                    max_epochs=config.max_epochs, n_cycles=config.kl_cycles)

    active = list(range(len(blocks)))  # original positions of the blocks still training
    best = model.parameters_snapshot()
    best_val = torch.full((len(blocks),), float("inf"))
    best_epoch = [0] * len(blocks)
    stale = [0] * len(blocks)
    curves: list[list[dict]] = [[] for _ in blocks]
    step = 0
    started = time.perf_counter()
    for epoch in range(config.max_epochs):
        model.train()
        train_sum = torch.zeros(len(active), device=device)
        order = torch.randperm(n_train, generator=generator, device=device)
        beta = lr = 0.0
        for start in range(0, n_train, batch):
            lr = learning_rate(step, lr=config.lr, warmup_steps=warmup_steps, total_steps=total_steps)
            beta = kl_weight(epoch + start / n_train, **schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x = x_train[:, order[start:start + batch]]
            observed = x >= 0
            rates = config.mask_rate_min + (config.mask_rate_max - config.mask_rate_min) * torch.rand(
                (x.shape[0], x.shape[1], 1), generator=generator, device=device)
            hidden = torch.rand(x.shape, generator=generator, device=device) < rates
            inference, generative = model(x, observed & ~hidden, generator=generator)
            terms = vae_loss(generative[TENSOR_KEYS.LOGITS], x, observed, inference[TENSOR_KEYS.Z_MEAN],
                             inference[TENSOR_KEYS.Z_LOG_VAR], beta, config.focal_gamma)
            optimizer.zero_grad(set_to_none=True)
            # Blocks share no parameter, so the sum trains each block on its own loss.
            terms.loss.sum().backward()
            optimizer.step()
            if head is not None:
                # The head follows the VAE's warm-up and cosine decay, and learns on top of the decoder at the
                # posterior mean, as the block model predicts (a sampled z only adds noise to its target).
                for group in head_optimizer.param_groups:
                    group["lr"] = config.local_lr * lr / config.lr
                with torch.no_grad():
                    offset = model.generative(inference[TENSOR_KEYS.Z_MEAN])[TENSOR_KEYS.LOGITS]
                head_step(head, head_optimizer, observed & ~hidden, offset, x, observed, config, n_train)
            train_sum += terms.loss.detach() * x.shape[1]
            step += 1

        val_loss, val_recon, val_kl, head_recon, val_acc = validation_terms(model, head, x_val, val_visible,
                                                                             val_target, val_held, config, batch)
        seconds = time.perf_counter() - started
        train_loss = (train_sum / n_train).cpu()
        finished: list[int] = []
        improved, head_improved = [], []  # snapshots are copied once per epoch for all such blocks
        for local, g in enumerate(active):
            curves[g].append({"epoch": epoch, "train_loss": float(train_loss[local]), "val_loss": float(val_loss[local]),
                              "recon": float(val_recon[local]), "kl": float(val_kl[local]),
                              "beta": beta, "lr": lr, "heldout_acc": float(val_acc[local]), "seconds": seconds})
            # the criterion is the stop entries' reconstruction: KL, summed over every latent unit, would drown it
            if val_recon[local] < best_val[g]:
                best_val[g] = val_recon[local]
                best_epoch[g] = epoch
                stale[g] = 0
                improved.append(local)
            else:
                stale[g] += 1
                if stale[g] >= config.patience:
                    finished.append(local)
            # the head keeps its own best epoch, on the same stop entries (the VAE's is unchanged by it)
            if head is not None and head_recon[local] < best_head_val[g]:
                best_head_val[g] = head_recon[local]
                head_improved.append(local)
        copy_rows(best, [*model.weights, *model.biases], improved)
        if head is not None:
            copy_rows(best_head, [head.weight, head.bias], head_improved)
        last = epoch == config.max_epochs - 1
        if last:
            finished = list(range(len(active)))
        say(f"{label} epoch {epoch + 1}/{config.max_epochs}: train {train_loss.mean():.3f} "
            f"val {val_loss.mean():.3f} beta {beta:.3f} lr {lr:.2e}, {len(active)} blocks training")
        if not finished:
            continue
        for local in finished:
            g = active[local]
            block_id, genotypes = blocks[g]
            single = BlockVAE.from_config(config, genotypes.shape[1]).to(device)
            state = model.block_state_dict(local, best)
            if head is not None:
                state.update({f"local.{k}": v for k, v in head.block_state_dict(local, best_head).items()})
            single.load_state_dict(state)
            embedding, metrics = block_metrics(single, genotypes, config, block_id)
            metrics[METRIC_KEYS.EPOCHS_RUN] = epoch + 1
            metrics[METRIC_KEYS.BEST_EPOCH] = best_epoch[g]
            deliver(g, BlockFit(block_id=block_id, state_dict={k: v.cpu() for k, v in state.items()},
                                embedding=embedding, curve=pd.DataFrame(curves[g], columns=CURVE_COLUMNS),
                                metrics=metrics, config=config))
            curves[g] = []
        if last:
            break
        keep_local = [i for i in range(len(active)) if i not in set(finished)]
        if not keep_local:
            break
        # Drop finished blocks from the stack (weights, optimiser moments, data) so they cost nothing more.
        keep = torch.tensor(keep_local, device=device)
        optimizer = _keep_blocks(model, optimizer, keep, config)
        best = [snap[keep].contiguous() for snap in best]
        if head is not None:
            old = [head.weight, head.bias]
            head.keep_blocks(keep)
            head_optimizer = _carry_moments(head_optimizer, old, [head.weight, head.bias], keep,
                                            torch.optim.Adam([head.weight, head.bias], lr=config.local_lr))
            best_head = [snap[keep].contiguous() for snap in best_head]
        x_train, x_val, val_visible, val_target = x_train[keep], x_val[keep], val_visible[keep], val_target[keep]
        val_held = val_held[keep]
        active = [active[i] for i in keep_local]


def _keep_blocks(model: StackedBlockVAE, optimizer, keep: torch.Tensor, config: BlockVAEConfig):
    """Shrink the stack to ``keep`` and return an AdamW carrying over those blocks' moments."""
    old = [*model.weights, *model.biases]
    model.keep_blocks(keep)
    new = [*model.weights, *model.biases]
    return _carry_moments(optimizer, old, new, keep, torch.optim.AdamW(new, lr=config.lr,
                                                                      weight_decay=config.weight_decay))


def _carry_moments(optimizer, old, new, keep: torch.Tensor, shrunk):
    """``shrunk`` (an Adam over ``new``) given the moments of blocks ``keep`` from ``optimizer`` over ``old``."""
    for before, after in zip(old, new):
        state = optimizer.state.get(before)
        if state:
            shrunk.state[after] = {key: value[keep].contiguous() if key in ("exp_avg", "exp_avg_sq") else value
                                   for key, value in state.items()}
    return shrunk
