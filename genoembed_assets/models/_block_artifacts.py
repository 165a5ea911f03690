"""What training one Phase 1 block produces, and its files: write atomically, load back (pure torch, no Dagster)."""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .. import storage
from ._block_vae import BlockVAE, BlockVAEConfig
from ._keys import METRIC_KEYS

__all__ = ["BlockFit", "load_block_model", "pick_device", "save_block_fit"]


@dataclass
class BlockFit:
    """What training one block produced.

    Attributes
    ----------
    block_id
        The block's id.
    state_dict
        Weights of a single-block :class:`BlockVAE` (best validation epoch).
    embedding
        float32 (subjects, latent): posterior means, rows in input order.
    curve
        One row per epoch: epoch, train_loss, val_loss, recon, kl, beta, lr.
    metrics
        Held-out accuracy, mode baseline, losses, active units, epochs (see ``METRIC_KEYS``).
    config
        The configuration trained with.
    """

    block_id: str
    state_dict: dict[str, torch.Tensor]
    embedding: np.ndarray
    curve: pd.DataFrame
    metrics: dict[str, float | int]
    config: BlockVAEConfig = field(repr=False)

    @property
    def n_snps(self) -> int:
        return int(self.metrics[METRIC_KEYS.N_SNPS])


def pick_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def save_block_fit(fit: BlockFit, out_dir: str | Path, subject_ids: Sequence[str]) -> dict[str, Path]:
    """Write a block's artifacts atomically into ``out_dir``.

    Files: ``embedding.parquet`` (subject_id, z0..), ``embedding.npy``
    (float32), ``model.pt`` (single-block ``state_dict``), ``curve.csv`` and
    ``metrics.json`` (metrics plus block id and config).

    Returns
    -------
    dict
        Artifact name (file stem) to path.
    """
    out_dir = Path(out_dir)
    ids = [str(s) for s in subject_ids]
    if len(ids) != fit.embedding.shape[0]:
        raise ValueError(
            f"block {fit.block_id!r}: {len(ids)} subject ids for an embedding of {fit.embedding.shape[0]} rows"
        )
    frame = pd.DataFrame(fit.embedding, columns=[f"z{i}" for i in range(fit.embedding.shape[1])])
    frame.insert(0, "subject_id", ids)
    buffer = io.BytesIO()
    torch.save(fit.state_dict, buffer)
    with storage.atomic_path(out_dir / "model.pt") as tmp:
        tmp.write_bytes(buffer.getvalue())
    metrics = {**fit.metrics, "block_id": fit.block_id, "config": dataclasses.asdict(fit.config)}
    return {
        "embedding": storage.write_parquet(out_dir / "embedding.parquet", frame),
        "embedding_npy": storage.write_npy(out_dir / "embedding.npy", fit.embedding.astype(np.float32)),
        "model": out_dir / "model.pt",
        "curve": storage.write_text(out_dir / "curve.csv", fit.curve.to_csv(index=False)),
        "metrics": storage.write_json(out_dir / "metrics.json", metrics),
    }


def load_block_model(out_dir: str | Path, config: BlockVAEConfig, n_snps: int, *, device=None) -> BlockVAE:
    """Rebuild a block's :class:`BlockVAE` from ``out_dir/model.pt`` (``weights_only=True``), in eval mode.

    The head is rebuilt with as many partners as it was saved with (models saved
    before the local head existed, without ``local.*`` weights, load as the VAE alone).
    """
    state = torch.load(Path(out_dir) / "model.pt", map_location="cpu", weights_only=True)
    k = int(state["local.partners"].shape[1]) if "local.partners" in state else 0
    model = BlockVAE(n_snps, config.latent_size, config.hidden_widths, k)
    model.load_state_dict(state)
    return model.to(pick_device(device) if device is not None else "cpu").eval()
