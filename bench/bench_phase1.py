"""Phase 1 benchmark: a plain per-block PyTorch loop against genoembed's stacked trainer.

Both ways train the same blocks with the same configuration, the same
subject split and the same held-out entries, each in its own subprocess so
peak memory does not mix. Printed per way: genotype-epochs per second
(subjects x variants x epochs run / training seconds), peak RSS and the mean
held-out masked accuracy beside the per-variant mode baseline.

(a) ``loop``: the way a first version is usually written: one ``nn.Module`` per
    block, a ``DataLoader`` over a ``TensorDataset``, ``F.one_hot`` input,
    ``F.cross_entropy`` on a (subjects x variants, 3) view, early stopping with
    a ``deepcopy`` of the best ``state_dict``.
(c) ``competent``: what a competent PyTorch user writes: the block's tensors in
    memory (``randperm`` batches, no DataLoader), the class-major one-hot that
    genoembed uses, one fused ``F.cross_entropy`` over (batch, 3, variants)
    with ``ignore_index`` on the entries that are not targets (way ``competent_ce``), or,
    faster on CPU, the same masked sum as ``log_softmax`` over the class dimension and one
    ``gather`` (way ``competent``).
(d) ``single``: :func:`genoembed_assets.models.train_blocks` given one block at a time.
(b) ``genoembed``: :func:`genoembed_assets.models.train_blocks` given every block.

Every way follows genoembed's protocol: the same split, held-out entries and
early-stopping (stop) entries (both hidden from the encoder), stopping on the
stop entries' reconstruction. The loops also score held-out accuracy after each
epoch (untimed), so the driver reports their **time to genoembed's accuracy**:
per block, the training time until the block first reached the held-out
accuracy the stacked trainer ended with (its whole time when it never did),
summed over blocks.

Examples::

    python bench/bench_phase1.py --cohort demo --preset fast
    python bench/bench_phase1.py --cohort /tmp/big --blocks 40 --preset fast
    python bench/bench_phase1.py --cohort 1kg --preset fast
    python bench/bench_phase1.py --cohort synthetic --blocks 16 --subjects 1000
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KG_VCF = Path(os.environ.get("GENOEMBED_SHARED", "/work/shared")) / "data" / "1kg_chr20" / "reference.vcf.gz"
CACHE = Path(tempfile.gettempdir()) / "genoembed_bench"


# ---------------------------------------------------------------- blocks


def load_blocks(cohort: str, n_blocks: int | None, n_subjects: int, seed: int) -> tuple[list[tuple[str, np.ndarray]], str]:
    """Blocks of a cohort: ``demo`` (simulated), ``synthetic``, ``1kg`` or a cohort folder."""
    if cohort == "synthetic":
        from genoembed_assets.models import synthetic_genotypes

        rng = np.random.default_rng(seed)
        widths = rng.integers(40, 161, size=n_blocks or 16)
        blocks = [(f"syn_b{i:04d}", synthetic_genotypes(n_subjects, int(w), 6, seed=seed + i, missing_rate=0.01))
                  for i, w in enumerate(widths)]
        return blocks, f"synthetic haplotype blocks ({n_subjects} subjects)"
    if cohort == "demo":
        folder = CACHE / f"demo_{n_subjects}"
        if not (folder / "manifest.tsv").exists():
            from genoembed_assets.genotypes.simulate import simulate_cohort

            simulate_cohort(folder, n_subjects=n_subjects, overwrite=True)
        label = f"simulated demo cohort ({n_subjects} subjects, simulate_cohort defaults)"
    elif cohort == "1kg":
        folder = CACHE / "1kg_chr20"
        if not (folder / "manifest.tsv").exists():
            from genoembed_assets.genotypes.ingest import ingest_cohort

            source = CACHE / "1kg_chr20_vcf"
            source.mkdir(parents=True, exist_ok=True)
            link = source / KG_VCF.name
            if not link.exists():
                link.symlink_to(KG_VCF)
            ingest_cohort(source, folder, log=lambda message: None)
        label = "1000 Genomes chr20 reference panel (ingested with default QC)"
    elif cohort.endswith(".npz"):  # blocks saved by --save-blocks (to run where the cohort's files are not)
        data = np.load(cohort)
        return [(key, data[key]) for key in data.files][: n_blocks or None], f"blocks saved in {Path(cohort).name}"
    else:
        folder = Path(cohort)
        label = str(folder)
    from genoembed_assets.genotypes.layout import load_block, read_manifest, read_subjects

    manifest = read_manifest(folder)
    n = len(read_subjects(folder))
    rows = list(manifest.itertuples(index=False))[: n_blocks or None]
    return [(row.block_id, load_block(folder, row._asdict(), n)) for row in rows], label


# ---------------------------------------------------------------- (a), (c): loops


def _protocol(genotypes, config, block_id):
    """Split, held-out and stop masks exactly as train_blocks draws them."""
    from genoembed_assets.models import heldout_mask, split_subjects

    train_idx, val_idx = split_subjects(genotypes.shape[0], config)
    held = heldout_mask(genotypes[val_idx], config, block_id)
    stop = heldout_mask(np.where(held, -1, genotypes[val_idx]), config, f"{block_id}/stop")
    return train_idx, val_idx, held, stop


def _time_to(curve: list[tuple[float, float]], target: float | None) -> float:
    """Training seconds until held-out accuracy first reached ``target`` (all of it when never)."""
    for seconds, accuracy in curve:
        if target is not None and accuracy >= target - 1e-12:
            return seconds
    return curve[-1][0] if curve else 0.0


def train_competent(blocks, config, targets: dict | None = None, fused_ce: bool = False, device: str = "cpu") -> list[dict]:
    """One model per block, data in memory, class-major one-hot, masked cross-entropy in one op.

    ``fused_ce``: ``F.cross_entropy`` over (batch, 3, variants) with ``ignore_index`` (way
    ``competent_ce``); otherwise ``log_softmax`` over the class dimension and one ``gather``.
    """
    import torch
    from torch import nn
    from torch.nn import functional as F

    from genoembed_assets.models import kl_weight, learning_rate, mode_baseline
    from genoembed_assets.models._ld_neighbours import ld_partners

    def mlp(widths):
        layers = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        return layers

    classes = torch.arange(3, device=device).view(1, 3, 1)
    results = []
    for block_id, genotypes in blocks:
        torch.manual_seed(config.seed)
        n_snps = genotypes.shape[1]
        train_idx, val_idx, held_np, stop_np = _protocol(genotypes, config, block_id)
        x_all = torch.as_tensor(genotypes.astype(np.int64), device=device)
        x_train, x_val = x_all[train_idx], x_all[val_idx]
        held, stop = torch.as_tensor(held_np, device=device), torch.as_tensor(stop_np, device=device)
        val_visible = (x_val >= 0) & ~held & ~stop
        encoder = nn.Sequential(*mlp([3 * n_snps, *config.hidden_widths]), nn.Linear(config.hidden_widths[-1], 2 * config.latent_size))
        decoder = nn.Sequential(*mlp([config.latent_size, *reversed(config.hidden_widths)]),
                                nn.Linear(config.hidden_widths[0], 3 * n_snps))
        encoder, decoder = encoder.to(device), decoder.to(device)
        params = [*encoder.parameters(), *decoder.parameters()]
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        # the same block model as genoembed's: the local head on LD partners, fed the decoder's detached logits
        # (written as a competent user would: gather the partners' one-hot calls, one einsum per variant)
        head = None
        if config.head_partners(n_snps):
            partners = torch.as_tensor(ld_partners(genotypes[train_idx], config.head_partners(n_snps)), device=device)
            head_w = nn.Parameter(torch.zeros(n_snps, partners.shape[1], 3, 3, device=device))
            head_b = nn.Parameter(torch.zeros(3, n_snps, device=device))
            head_optimizer = torch.optim.Adam([head_w, head_b], lr=config.local_lr)
            head_best, head_state = math.inf, [head_w.detach().clone(), head_b.detach().clone()]

            def head(x, visible):
                hot = one_hot(x, visible).view(-1, 3, n_snps)[:, :, partners]  # (batch, 3, variants, partners)
                return torch.einsum("bcvk,vkcd->bdv", hot, head_w) + head_b

        def one_hot(x, visible):
            return ((x.unsqueeze(1) == classes) & visible.unsqueeze(1)).float().flatten(1)  # class-major

        def forward(x, visible, sample):
            mean, log_var = encoder(one_hot(x, visible)).split(config.latent_size, dim=1)
            log_var = log_var.clamp(-12, 8)
            z = mean + torch.randn_like(mean) * (0.5 * log_var).exp() if sample else mean
            return decoder(z).view(-1, 3, n_snps), mean, log_var

        def loss(x, visible, target, beta, sample):
            logits, mean, log_var = forward(x, visible, sample)
            if fused_ce:
                labels = torch.where(target, x, torch.full_like(x, -100))
                recon = F.cross_entropy(logits, labels, ignore_index=-100, reduction="sum") / x.shape[0]
            else:  # the same sum, 12x faster on CPU here than F.cross_entropy over (batch, 3, variants)
                picked = torch.gather(torch.log_softmax(logits, dim=1), 1, x.clamp(min=0).unsqueeze(1)).squeeze(1)
                recon = -torch.where(target, picked, torch.zeros((), dtype=picked.dtype)).sum() / x.shape[0]
            kl = (0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var)).sum(1).mean()
            return recon, kl, logits, mean

        n_train = len(train_idx)
        batch = min(config.batch_size, n_train)
        steps = math.ceil(n_train / batch)
        total = config.max_epochs * steps
        best, best_state, stale, step, epochs, trained, curve = math.inf, None, 0, 0, 0, 0.0, []
        truth = genotypes[val_idx][held_np]
        for epoch in range(config.max_epochs):
            started = time.perf_counter()
            order = torch.randperm(n_train, device=device)
            for i, begin in enumerate(range(0, n_train, batch)):
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(step, lr=config.lr, warmup_steps=config.lr_warmup_epochs * steps, total_steps=total)
                beta = kl_weight(epoch + begin / n_train, beta=config.beta, schedule=config.beta_schedule,
                                 warmup_epochs=config.kl_warmup_epochs, max_epochs=config.max_epochs, n_cycles=config.kl_cycles)
                x = x_train[order[begin:begin + batch]]
                observed = x >= 0
                rate = torch.empty(x.shape[0], 1, device=device).uniform_(config.mask_rate_min, config.mask_rate_max)
                visible = observed & (torch.rand(x.shape, device=device) >= rate)
                recon, kl, _, mean = loss(x, visible, observed, beta, True)
                optimizer.zero_grad(set_to_none=True)
                (recon + beta * kl).backward()
                optimizer.step()
                if head is not None:  # as train_blocks: the VAE's schedule, on the decoder at the posterior mean
                    for group in head_optimizer.param_groups:
                        group["lr"] = config.local_lr * optimizer.param_groups[0]["lr"] / config.lr
                    with torch.no_grad():
                        offset = decoder(mean).view(-1, 3, n_snps)
                    picked = torch.gather(torch.log_softmax(offset + head(x, visible), dim=1), 1,
                                          x.clamp(min=0).unsqueeze(1)).squeeze(1)
                    head_loss = -torch.where(observed, picked, 0.0).sum() / observed.sum().clamp(min=1) \
                        + config.local_l2 * head_w.pow(2).sum() / n_train
                    head_optimizer.zero_grad(set_to_none=True)
                    head_loss.backward()
                    head_optimizer.step()
                step += 1
            with torch.no_grad():
                stop_recon, _, logits, _ = loss(x_val, val_visible, stop, config.beta, False)
                if head is not None:
                    logits = logits + head(x_val, val_visible)
                    picked = torch.gather(torch.log_softmax(logits, dim=1), 1, x_val.clamp(min=0).unsqueeze(1)).squeeze(1)
                    head_recon = -torch.where(stop, picked, 0.0).sum().item()
                    if head_recon < head_best:
                        head_best, head_state = head_recon, [head_w.detach().clone(), head_b.detach().clone()]
            _sync(device)
            trained += time.perf_counter() - started
            epochs = epoch + 1
            curve.append((trained, float((logits.argmax(1).cpu().numpy()[held_np] == truth).mean())))  # untimed
            if stop_recon.item() < best:
                best, best_state, stale = stop_recon.item(), [p.detach().clone() for p in params], 0
            else:
                stale += 1
                if stale >= config.patience:
                    break
        with torch.no_grad():
            for p, b in zip(params, best_state):
                p.copy_(b)
            _, _, logits, _ = loss(x_val, val_visible, stop, config.beta, False)
            if head is not None:
                for p, b in zip([head_w, head_b], head_state):
                    p.copy_(b)
                logits = logits + head(x_val, val_visible)
        baseline = np.broadcast_to(mode_baseline(genotypes[train_idx]), held_np.shape)[held_np]
        results.append({
            "block_id": block_id, "n_subjects": genotypes.shape[0], "n_snps": n_snps, "epochs_run": epochs,
            "heldout_accuracy": float((logits.argmax(1).cpu().numpy()[held_np] == truth).mean()),
            "mode_baseline_accuracy": float((baseline == truth).mean()), "n_heldout": int(held_np.sum()),
            "seconds_to_target": _time_to(curve, (targets or {}).get(block_id)),
        })
    return results


def train_loop(blocks, config, targets: dict | None = None, device: str = "cpu") -> list[dict]:
    """One model per block, trained with an ordinary DataLoader loop (the VAE alone: run with ``--no-head``)."""
    if config.local_partners:
        raise SystemExit("way 'loop' trains the VAE alone; compare it with --no-head")
    import torch
    from torch import nn
    from torch.nn import functional as F
    from torch.utils.data import DataLoader, TensorDataset

    from genoembed_assets.models import kl_weight, learning_rate, mode_baseline

    class PlainVAE(nn.Module):
        def __init__(self, n_snps: int) -> None:
            super().__init__()
            widths = [3 * n_snps, *config.hidden_widths]
            layers = []
            for a, b in zip(widths[:-1], widths[1:]):
                layers += [nn.Linear(a, b), nn.ReLU()]
            self.encoder = nn.Sequential(*layers)
            self.mean = nn.Linear(widths[-1], config.latent_size)
            self.log_var = nn.Linear(widths[-1], config.latent_size)
            back = [config.latent_size, *reversed(config.hidden_widths)]
            layers = []
            for a, b in zip(back[:-1], back[1:]):
                layers += [nn.Linear(a, b), nn.ReLU()]
            self.decoder = nn.Sequential(*layers, nn.Linear(back[-1], 3 * n_snps))

        def encode(self, x, visible):
            one_hot = F.one_hot(x.clamp(min=0), 3).float() * visible.unsqueeze(-1).float()
            h = self.encoder(one_hot.flatten(1))
            return self.mean(h), self.log_var(h).clamp(-12, 8)

        def decode(self, z):
            return self.decoder(z).view(z.shape[0], -1, 3)

    def losses(model, x, visible, target, beta, sample):
        mean, log_var = model.encode(x, visible)
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp() if sample else mean
        logits = model.decode(z)
        ce = F.cross_entropy(logits.reshape(-1, 3), x.clamp(min=0).reshape(-1), reduction="none").view(x.shape)
        recon = (ce * target.float()).sum(1).mean()
        kl = (0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var)).sum(1).mean()
        return recon + beta * kl, logits

    results = []
    for block_id, genotypes in blocks:
        torch.manual_seed(config.seed)
        train_idx, val_idx, held_np, stop_np = _protocol(genotypes, config, block_id)
        held, stop = torch.as_tensor(held_np, device=device), torch.as_tensor(stop_np, device=device)
        x_all = torch.as_tensor(genotypes.astype(np.int64))
        x_val = x_all[val_idx].to(device)
        val_visible = (x_val >= 0) & ~held & ~stop
        truth = genotypes[val_idx][held_np]
        trained, curve = 0.0, []
        model = PlainVAE(genotypes.shape[1]).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        loader = DataLoader(TensorDataset(x_all[train_idx]), batch_size=config.batch_size, shuffle=True)
        total = config.max_epochs * len(loader)
        best, best_state, stale, step, epochs = math.inf, None, 0, 0, 0
        for epoch in range(config.max_epochs):
            started = time.perf_counter()
            model.train()
            for i, (x,) in enumerate(loader):
                x = x.to(device)  # the DataLoader yields host batches
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(step, lr=config.lr, warmup_steps=config.lr_warmup_epochs * len(loader),
                                                total_steps=total)
                beta = kl_weight(epoch + i / len(loader), beta=config.beta, schedule=config.beta_schedule,
                                 warmup_epochs=config.kl_warmup_epochs, max_epochs=config.max_epochs,
                                 n_cycles=config.kl_cycles)
                observed = x >= 0
                rate = torch.empty(x.shape[0], 1, device=device).uniform_(config.mask_rate_min, config.mask_rate_max)
                visible = observed & (torch.rand(x.shape, device=device) >= rate)
                loss, _ = losses(model, x, visible, observed, beta, sample=True)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
            model.eval()
            with torch.no_grad():
                # the stop entries' reconstruction at beta 0: the criterion train_blocks stops on
                val_loss, logits = losses(model, x_val, val_visible, stop, 0.0, sample=False)
            _sync(device)
            trained += time.perf_counter() - started
            curve.append((trained, float((logits.argmax(-1).cpu().numpy()[held_np] == truth).mean())))  # untimed
            epochs = epoch + 1
            if val_loss.item() < best:
                best, best_state, stale = val_loss.item(), copy.deepcopy(model.state_dict()), 0
            else:
                stale += 1
                if stale >= config.patience:
                    break
        model.load_state_dict(best_state)
        model.eval()
        with torch.no_grad():
            _, logits = losses(model, x_val, val_visible, stop, config.beta, sample=False)
        predicted = logits.argmax(-1).cpu().numpy()
        baseline = np.broadcast_to(mode_baseline(genotypes[train_idx]), held_np.shape)[held_np]
        results.append({
            "block_id": block_id, "n_subjects": genotypes.shape[0], "n_snps": genotypes.shape[1], "epochs_run": epochs,
            "heldout_accuracy": float((predicted[held_np] == truth).mean()),
            "mode_baseline_accuracy": float((baseline == truth).mean()), "n_heldout": int(held_np.sum()),
            "seconds_to_target": _time_to(curve, (targets or {}).get(block_id)),
        })
    return results


# ---------------------------------------------------------------- (b), (d) genoembed


def train_single(blocks, config, targets: dict | None = None, device: str = "cpu") -> list[dict]:
    results: list[dict] = []
    for block in blocks:
        results += train_genoembed([block], config, targets, device)
    return results


def train_genoembed(blocks, config, targets: dict | None = None, device: str = "cpu") -> list[dict]:
    """``train_blocks`` over ``blocks``; time to target from each block's curve (``heldout_acc``, ``seconds``).

    Blocks of one group train together, so a group reaches its targets when its
    slowest block does; groups run one after another and their times add up.
    The target of a block is its entry in ``targets``, else its own final accuracy.
    """
    from genoembed_assets.models import train_blocks
    from genoembed_assets.models._block_training import _group_blocks

    results: list[dict] = []
    curves: dict[str, list[tuple[float, float]]] = {}

    def keep(fit) -> None:  # only metrics and the curve, as the Dagster asset writes each fit and drops it
        results.append({"block_id": fit.block_id, **fit.metrics})
        curves[fit.block_id] = list(zip(fit.curve["seconds"], fit.curve["heldout_acc"]))

    train_blocks(blocks, config, device=device, on_fit=keep)
    by_id = {r["block_id"]: r for r in results}
    groups = _group_blocks([g.shape[1] for _, g in blocks], [g.shape[0] for _, g in blocks])
    for members in groups:
        ids = [blocks[i][0] for i in members]
        group_time = max(_time_to(curves[b], (targets or {}).get(b, by_id[b]["heldout_accuracy"])) for b in ids)
        for b in ids:
            by_id[b]["seconds_to_target"] = group_time / len(ids)  # shared out so the sum over blocks adds up
    return results


# ---------------------------------------------------------------- driver


def _sync(device: str) -> None:
    """Wait for queued GPU work, so a timer read after it counts that work."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(args) -> None:
    import torch

    from genoembed_assets.models import PRESETS

    torch.set_num_threads(args.threads)
    data = np.load(args.data)
    blocks = [(key, data[key]) for key in data.files]
    config = PRESETS[args.preset].replace(**({"max_epochs": args.epochs} if args.epochs else {}),
                                          **({"local_partners": 0} if args.no_head else {}))
    if not args.with_baselines:
        # train_blocks scores PCA, kNN and the LD rule as each block finishes; the loops score none of them
        import genoembed_assets.models._block_protocol as protocol

        protocol.compare_with_baselines = lambda *a, **k: {}
    before = rss_mb()
    started = time.perf_counter()
    targets = json.loads(Path(args.targets).read_text()) if args.targets else None
    ways = {"loop": train_loop, "competent": train_competent, "single": train_single, "genoembed": train_genoembed,
            "competent_ce": lambda b, c, t, device: train_competent(b, c, t, fused_ce=True, device=device)}
    results = ways[args.worker](blocks, config, targets, device=args.device)
    seconds = time.perf_counter() - started
    genotype_epochs = sum(r["n_subjects"] * r["n_snps"] * r["epochs_run"] for r in results)
    weights = np.array([r["n_heldout"] for r in results], dtype=float)
    print(json.dumps({
        "way": args.worker, "seconds": seconds, "genotype_epochs": genotype_epochs,
        "genotype_epochs_per_s": genotype_epochs / seconds, "peak_rss_mb": rss_mb(), "rss_before_training_mb": before,
        "heldout_accuracy": float(np.average([r["heldout_accuracy"] for r in results], weights=weights)),
        "mode_baseline_accuracy": float(np.average([r["mode_baseline_accuracy"] for r in results], weights=weights)),
        "mean_epochs": float(np.mean([r["epochs_run"] for r in results])),
        "seconds_to_target": float(sum(r["seconds_to_target"] for r in results)) if "seconds_to_target" in results[0] else seconds,
        "per_block_accuracy": {r["block_id"]: r["heldout_accuracy"] for r in results},
        "device": args.device,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.device(args.device).type == "cuda" else 0.0,
    }))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cohort", default="demo", help="demo | synthetic | 1kg | a cohort folder (original layout)")
    parser.add_argument("--blocks", type=int, default=None, help="first N blocks only (default: all)")
    parser.add_argument("--subjects", type=int, default=1200, help="subjects for demo/synthetic cohorts")
    parser.add_argument("--preset", default="fast", choices=["fast", "balanced", "thorough", "impute"])
    parser.add_argument("--epochs", type=int, default=None, help="override max_epochs")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in each worker")
    parser.add_argument("--ways", default="genoembed,competent,single",
                        help="comma-separated: genoembed, competent, competent_ce, single, loop "
                        "(genoembed first sets the accuracy targets; loop needs --no-head)")
    parser.add_argument("--no-head", action="store_true",
                        help="train the VAE alone in every way (local_partners=0), as before the local head")
    parser.add_argument("--with-baselines", action="store_true",
                        help="time genoembed with the PCA/kNN/LD-rule scoring it does per block (the loops do none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="torch device for every way (cpu, cuda); default cpu")
    parser.add_argument("--save-blocks", type=Path, default=None,
                        help="save the cohort's blocks to this .npz (pass it as --cohort elsewhere) and stop")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--targets", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    blocks, label = load_blocks(args.cohort, args.blocks, args.subjects, args.seed)
    if args.save_blocks:
        np.savez_compressed(args.save_blocks, **dict(blocks))
        print(f"saved {len(blocks)} blocks to {args.save_blocks}")
        return 0
    widths = [g.shape[1] for _, g in blocks]
    print(f"cohort: {label}; {len(blocks)} blocks x {blocks[0][1].shape[0]} subjects, "
          f"{min(widths)}-{max(widths)} variants (median {int(np.median(widths))}); preset {args.preset}; "
          f"{args.threads} torch threads; {os.cpu_count()} CPUs; device {args.device}", flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(suffix=".npz", dir=CACHE) as handle:
        np.savez(handle, **dict(blocks))
        handle.flush()
        rows = []
        targets = Path(handle.name + ".targets.json")
        for way in args.ways.split(","):
            command = [sys.executable, __file__, "--worker", way, "--data", handle.name, "--preset", args.preset,
                       "--threads", str(args.threads), "--device", args.device] + (["--epochs", str(args.epochs)] if args.epochs else []) + \
                ["--no-head"] * args.no_head + ["--with-baselines"] * args.with_baselines
            if targets.exists():
                command += ["--targets", str(targets)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode:
                sys.stderr.write(done.stderr)
                return done.returncode
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            if way == "genoembed":
                targets.write_text(json.dumps(r["per_block_accuracy"]))
            print(f"{way:>9}: {r['genotype_epochs_per_s']:,.0f} genotype-epochs/s ({r['seconds']:.1f} s, "
                  f"{r['mean_epochs']:.1f} epochs/block), peak RSS {r['peak_rss_mb']:.0f} MB "
                  f"(before training {r['rss_before_training_mb']:.0f} MB{', GPU peak %.0f MB' % r['peak_gpu_mb'] if r['peak_gpu_mb'] else ''}), held-out acc {r['heldout_accuracy']:.4f} "
                  f"vs mode baseline {r['mode_baseline_accuracy']:.4f}; time to genoembed's accuracy "
                  f"{r['seconds_to_target']:.1f} s", flush=True)
        targets.unlink(missing_ok=True)
    by_way = {r["way"]: r for r in rows}
    if "genoembed" in by_way:
        g = by_way["genoembed"]
        for way, r in by_way.items():
            if way != "genoembed":
                print(f"genoembed vs {way}: {g['genotype_epochs_per_s'] / r['genotype_epochs_per_s']:.2f}x genotype-epochs/s, "
                      f"{r['seconds_to_target'] / g['seconds_to_target']:.2f}x in time to genoembed's accuracy; accuracy "
                      f"{100 * (g['heldout_accuracy'] - r['heldout_accuracy']):+.2f} points")
    if args.json:
        args.json.write_text(json.dumps({"cohort": label, "blocks": len(blocks), "preset": args.preset,
                                         "threads": args.threads, "device": args.device, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
