"""Attention of the Phase 2 Transformer: dense, or windowed for genome-wide cohorts (pure torch).

The token sequence is ``[CLS, block_1 .. block_T]`` with blocks in genomic
order. Dense attention materializes ``(batch, heads, T + 1, T + 1)`` weights:
at 1,703 blocks, batch 64, that is 1.5 GB per layer before the backward pass,
and one training step peaked at 21.5 GB (issue 12). Windowed attention
(block-sparse, as in Longformer/BigBird with one global token) splits the
blocks into windows of ``w`` consecutive blocks: a block token attends to the
CLS token and to its own window and the two beside it (``3 w + 1`` keys), the
CLS token attends to everything. Memory is linear in ``T``. Distant blocks
still inform each other through the CLS token from the second layer on, which
is what the CLS head trains the subject embedding to carry.

Both paths also return, on request, what block importance reads: the CLS
token's attention to each block and the attention each block receives from
block queries weighted by ``query_weight`` (both ``(batch, heads, T)``).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

__all__ = ["attend"]

Dropout = Callable[[torch.Tensor], torch.Tensor]


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window: int,
    dropout: Dropout,
    *,
    return_attention: bool = False,
    query_weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Mix values by attention; ``q, k, v`` are ``(batch, heads, 1 + T, dh)``, token 0 the CLS token.

    Returns the mixed values (same shape), and with ``return_attention`` the
    CLS row ``(batch, heads, T)`` and, given ``query_weight`` ``(batch, T)``,
    the weighted attention each block receives from block queries. ``window``
    0 is dense attention; with one window covering every block the windowed
    path gives the dense result.
    """
    if window <= 0:
        return _dense(q, k, v, dropout, return_attention, query_weight)
    return _windowed(q, k, v, window, dropout, return_attention, query_weight)


def _dense(q, k, v, dropout, return_attention, query_weight):
    attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    mixed = dropout(attn) @ v
    if not return_attention:
        return mixed, None, None
    received = None
    if query_weight is not None:
        received = torch.einsum("nhij,ni->nhj", attn[:, :, 1:, 1:], query_weight)
    return mixed, attn[:, :, 0, 1:], received


def _window_keys(z: torch.Tensor, n_windows: int, window: int) -> torch.Tensor:
    """``(n, h, Tp, dh)`` -> ``(n, h, C, 3w, dh)``: each window's previous, own and next window."""
    n, h, _, dh = z.shape
    chunks = F.pad(z.view(n, h, n_windows, window, dh), (0, 0, 0, 0, 1, 1))
    return torch.cat([chunks[:, :, :-2], chunks[:, :, 1:-1], chunks[:, :, 2:]], dim=3)


def _windowed(q, k, v, window, dropout, return_attention, query_weight):
    n, h, tokens, dh = q.shape
    n_blocks = tokens - 1
    n_windows = -(-n_blocks // window)
    pad = n_windows * window - n_blocks
    scale = 1.0 / math.sqrt(dh)

    # The CLS query is one dense row: cheap, and it is what links distant blocks.
    cls_attn = torch.softmax(q[:, :, :1] @ k.transpose(-1, -2) * scale, dim=-1)  # (n, h, 1, 1 + T)
    cls_mixed = dropout(cls_attn) @ v

    qb, kb, vb = (F.pad(z[:, :, 1:], (0, 0, 0, pad)) for z in (q, k, v))
    q_win = qb.view(n, h, n_windows, window, dh)
    keys = torch.cat([k[:, :, None, :1].expand(n, h, n_windows, 1, dh), _window_keys(kb, n_windows, window)], dim=3)
    values = torch.cat([v[:, :, None, :1].expand(n, h, n_windows, 1, dh), _window_keys(vb, n_windows, window)], dim=3)
    # Key slot s > 0 of window c is block (c - 1) w + s - 1; outside 0..T-1 it is padding.
    index = _key_index(n_windows, window, q.device)
    valid = (index >= 0) & (index < n_blocks)
    valid[:, 0] = True  # the CLS key
    if not return_attention:
        return torch.cat([cls_mixed, _fused_windows(q_win, keys, values, valid, scale, dropout)[:, :, :n_blocks]], dim=2), None, None
    scores = (q_win @ keys.transpose(-1, -2)) * scale  # (n, h, C, w, 1 + 3w)
    attn = torch.softmax(scores.masked_fill(~valid[None, None, :, None, :], float("-inf")), dim=-1)
    mixed_blocks = (dropout(attn) @ values).reshape(n, h, n_windows * window, dh)[:, :, :n_blocks]
    mixed = torch.cat([cls_mixed, mixed_blocks], dim=2)
    received = None
    if query_weight is not None:
        weights = F.pad(query_weight, (0, pad)).view(n, 1, n_windows, window, 1)
        per_key = (attn[..., 1:] * weights).sum(dim=3)  # (n, h, C, 3w): attention paid to each key slot
        # Padding slots go to a dump column n_blocks, dropped after the scatter.
        target = torch.where(valid[:, 1:], index[:, 1:], torch.full_like(index[:, 1:], n_blocks)).reshape(-1)
        received = torch.zeros(n, h, n_blocks + 1, dtype=per_key.dtype, device=per_key.device)
        received.index_add_(2, target, per_key.reshape(n, h, -1))
        received = received[:, :, :n_blocks]
    return mixed, cls_attn[:, :, 0, 1:], received


def _fused_windows(q_win, keys, values, valid, scale, dropout):
    """Windowed attention through the fused kernel, without a mask: ``(n, h, C * w, dh)``.

    On CPU, ``scaled_dot_product_attention`` with any ``attn_mask`` fell back to
    a path 5-7x slower than without one (1.2 s against 0.18-0.25 s per call at
    1,703 blocks, batch 64). So the padding is masked through the scores
    instead: queries get an extra coordinate 1 and keys a bias coordinate, 0 for
    real keys and -1e4 / scale for padding, whose weight underflows to exactly 0.
    """
    n, h, n_windows, window, dh = q_win.shape
    slots = keys.shape[3]
    bias = torch.zeros(n_windows, slots, dtype=q_win.dtype, device=q_win.device).masked_fill(~valid, -1e4 / scale)
    qx = torch.cat([q_win, q_win.new_ones(n, h, n_windows, window, 1)], dim=-1).reshape(n, h * n_windows, window, dh + 1)
    kx = torch.cat([keys, bias[None, None, :, :, None].expand(n, h, n_windows, slots, 1)], dim=-1).reshape(n, h * n_windows, slots, dh + 1)
    vx = torch.cat([values, values.new_zeros(n, h, n_windows, slots, 1)], dim=-1).reshape(n, h * n_windows, slots, dh + 1)
    p = dropout.p if isinstance(dropout, torch.nn.Dropout) and dropout.training and torch.is_grad_enabled() else 0.0
    out = F.scaled_dot_product_attention(qx, kx, vx, dropout_p=p, scale=scale)
    return out[..., :dh].reshape(n, h, n_windows * window, dh)


def _key_index(n_windows: int, window: int, device) -> torch.Tensor:
    """``(C, 1 + 3w)`` block index of every key slot (slot 0, the CLS key, is -1)."""
    slots = torch.arange(3 * window, device=device)
    start = (torch.arange(n_windows, device=device) - 1) * window
    index = start[:, None] + slots[None, :]
    return torch.cat([torch.full((n_windows, 1), -1, device=device, dtype=index.dtype), index], dim=1)
