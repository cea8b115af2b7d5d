"""ULTRA's training step and loop, with random / strict / KMAS negatives.

One step (ULTRA's ``script/run.py``): draw a batch of training triples, add k negatives per row
(first half of the rows corrupt tails, second half heads), score with the model, loss = BCE with
self-adversarial weights (temperature 1), AdamW step. DDP as ULTRA: ``init_process_group`` when
WORLD_SIZE > 1, a DistributedSampler over the training triples, the model wrapped in
DistributedDataParallel; rank 0 validates and writes checkpoints.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import distributed as dist
from torch import nn
from torch.utils import data as torch_data

from .data import Graph, triples_of
from .tasks import evaluate, negative_sampling, self_adversarial_bce

NEGATIVE_MODES = ("random", "strict", "kmas")


def world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def setup_distributed(device: str | None) -> torch.device:
    """init_process_group when launched by torchrun with WORLD_SIZE > 1; returns this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and (device is None or device.startswith("cuda")) else "gloo"
        dist.init_process_group(backend)
        if backend == "nccl":
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local_rank)
            return torch.device("cuda", local_rank)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def make_negative_sampler(mode: str, model: nn.Module, train_data: Graph, total_steps: int,
                          seed: int | None = None, kmas_options: dict | None = None) -> Callable:
    """A callable ``(data, batch, num_negative) -> (B, 1 + k, 3)`` for the given mode."""
    if mode == "random":
        return lambda data, batch, k: negative_sampling(data, batch, k, strict=False)
    if mode == "strict":
        return lambda data, batch, k: negative_sampling(data, batch, k, strict=True)
    if mode == "kmas":
        from kmas_kernels.ultra import KMASNegativeSampling

        sampler = KMASNegativeSampling(model, train_data, total_steps, seed=seed, **dict(kmas_options or {}))
        fn = lambda data, batch, k: sampler(data, batch, k, strict=True)  # noqa: E731
        fn.sampler = sampler
        return fn
    raise ValueError(f"negatives must be one of {NEGATIVE_MODES}, got {mode!r}")


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, data: Graph, batch: torch.Tensor,
               sample: Callable, num_negative: int, adversarial_temperature: float = 1.0) -> float:
    """One ULTRA step on a (B, 3) [h, t, r] batch; returns the loss."""
    batch = sample(data, batch, num_negative)
    pred = model(data, batch)
    loss = self_adversarial_bce(pred, adversarial_temperature)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return float(loss.detach())


def train(model: nn.Module, split, *, steps: int, batch_size: int = 64, num_negative: int = 512, lr: float = 5e-4,
          negatives: str = "strict", adversarial_temperature: float = 1.0, valid_every: int = 0,
          valid_limit: int | None = None, eval_batch_size: int = 16, out_dir: str | Path | None = None,
          device: torch.device | str = "cpu", seed: int = 0, progress: bool = True, kmas_options: dict | None = None,
          log: Callable[[str], None] | None = None) -> dict:
    """Train ``model`` on ``split.train`` for ``steps`` steps; returns a summary dict.

    Validation (rank 0) every ``valid_every`` steps (0: only at the end) on the first
    ``valid_limit`` validation triples; each validation writes ``model_step_<n>.pth`` in
    ``out_dir`` ({"model", "optimizer", "step", "metrics"}) and the best by MRR is ``best.pth``.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    world_size, rank = world()
    device = torch.device(device)
    torch.manual_seed(seed + rank)
    model = model.to(device)
    train_data = split.train.to(device)
    valid_data = split.valid.to(device)
    valid_filter = split.valid_filter.to(device)
    triples = triples_of(train_data)
    sampler = torch_data.DistributedSampler(triples, num_replicas=world_size, rank=rank, seed=seed, drop_last=False)
    loader = torch_data.DataLoader(triples, batch_size=batch_size, sampler=sampler, drop_last=len(triples) > batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    sample = make_negative_sampler(negatives, model, train_data, steps, seed=seed, kmas_options=kmas_options)
    parallel = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) if world_size > 1 else model
    out = Path(out_dir) if out_dir else None
    if out is not None and rank == 0:
        out.mkdir(parents=True, exist_ok=True)

    bar = None
    if progress and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc=f"train[{negatives}]", unit="step", file=sys.stderr)
    losses, history = [], []
    best = {"mrr": -math.inf, "step": None}
    step, epoch = 0, 0
    start = time.perf_counter()
    parallel.train()

    def validate() -> None:
        if rank == 0:
            queries = triples_of(valid_data)
            if valid_limit:
                queries = queries[:valid_limit]
            metrics = evaluate(model, valid_data, queries, valid_filter, batch_size=eval_batch_size)
            metrics = {k: v for k, v in metrics.items() if k not in ("tail_ranks", "head_ranks")}
            history.append({"step": step, **metrics})
            log(f"step {step}: valid mrr {metrics['mrr']:.4f} hits@10 {metrics['hits@10']:.4f} ({metrics['num_ranks']} ranks)")
            if out is not None:
                state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "metrics": metrics}
                torch.save(state, out / f"model_step_{step}.pth")
                if metrics["mrr"] > best["mrr"]:
                    torch.save(state, out / "best.pth")
            if metrics["mrr"] > best["mrr"]:
                best.update(mrr=metrics["mrr"], step=step)
            parallel.train()
        if world_size > 1:
            dist.barrier()

    while step < steps:
        sampler.set_epoch(epoch)
        for batch in loader:
            if step >= steps:
                break
            loss = train_step(parallel, optimizer, train_data, batch.to(device), sample, num_negative, adversarial_temperature)
            losses.append(loss)
            step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
            if valid_every and step % valid_every == 0 and step < steps:
                validate()
        epoch += 1
    if bar is not None:
        bar.close()
    validate()
    if hasattr(sample, "sampler") and hasattr(sample.sampler, "close"):
        sample.sampler.close()
    return {
        "steps": step,
        "negatives": negatives,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "mean_loss_first_10pct": sum(losses[: max(1, len(losses) // 10)]) / max(1, len(losses[: max(1, len(losses) // 10)])) if losses else None,
        "mean_loss_last_10pct": sum(losses[-max(1, len(losses) // 10):]) / max(1, len(losses[-max(1, len(losses) // 10):])) if losses else None,
        "losses": losses,
        "valid": history,
        "best_valid_mrr": best["mrr"],
        "best_step": best["step"],
        "seconds": time.perf_counter() - start,
    }
