"""ULTRA's training step and loop, with random / strict / KMAS negatives, resumable.

One step (ULTRA's ``script/run.py``): draw a batch of training triples, add k negatives per row
(first half of the rows corrupt tails, second half heads), score with the model, loss = BCE with
self-adversarial weights (temperature 1), AdamW step. DDP as ULTRA: ``init_process_group`` when
WORLD_SIZE > 1, a DistributedSampler over the training triples, the model wrapped in
DistributedDataParallel; rank 0 validates and writes checkpoints. :func:`train` drives the shared
:class:`kmas_ultra.loop.TrainingLoop` (the one ``kmas-pretrain`` drives too) with those batches.

Resuming (beyond ULTRA, which keeps per-epoch weights only): with ``out_dir``, ``last.pth`` holds
the whole training state (see :func:`training_state`), written atomically at the start, every
``save_every`` steps, at the end, and when SIGTERM / SIGINT arrives; ``train(..., resume=load_training_state(dir))``
continues from it and draws what the uninterrupted run would have drawn: same batches, same
negatives (the KMAS cache travels in the file), same torch RNG stream on every rank.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import distributed as dist
from torch import nn
from torch.utils import data as torch_data

from kmas_kernels.core.files import CheckpointError, load_torch_file, temp_name_prefix

from .data import Graph, triples_of
from .model import architecture_of
from .loop import NEGATIVE_MODES, EpochBatches, TrainingLoop, make_loss, make_negative_sampler, optimisation_step, save_state
from .tasks import evaluate

# the loss's weighting of KMAS hard negatives (kmas_kernels.loss), chosen on validation by the
# study's stage 3 (docs/pretraining.md); "adversarial", ULTRA's loss, until then
TRAIN_HARD_WEIGHTING = "share"
LAST_CHECKPOINT = "last.pth"
CHECKPOINT_FORMAT = "kmas_ultra.train/1"
TRAINING_STATE_KEYS = ("format", "model", "architecture", "optimizer", "step", "data_order", "world_size", "ranks",
                       "best", "history", "losses", "validated_at", "options")


class TrainingInterrupted(Exception):
    """Raised by :func:`train` after SIGTERM / SIGINT once the state is saved in ``path``."""

    def __init__(self, signum: int, step: int, path: Path | None) -> None:
        self.signum, self.step, self.path = signum, step, path
        where = f"state saved in {path}" if path else "nothing saved (no out_dir)"
        super().__init__(f"{signal.Signals(signum).name} at step {step}: {where}")


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


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, data: Graph, batch: torch.Tensor,
               sample: Callable, num_negative: int, adversarial_temperature: float = 1.0,
               hard_weighting: str = "adversarial", kmas_sampler=None) -> float:
    """One ULTRA step on a (B, 3) [h, t, r] batch; returns the loss.

    ``hard_weighting`` other than "adversarial" weighs the hard columns of ``kmas_sampler``'s
    latest batch as kmas_kernels.loss.link_prediction_loss says (ULTRA's loss otherwise).
    """
    loss = make_loss(None if hard_weighting == "adversarial" else hard_weighting, kmas_sampler, adversarial_temperature)
    return optimisation_step(model, optimizer, data, batch, sample, num_negative, loss)


def _rng_state(device: torch.device) -> dict:
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


def load_training_state(path: str | Path) -> dict:
    """Read a training checkpoint (``DIR/last.pth``, or DIR itself) safely and check its layout.

    Raises CheckpointError (a ValueError) naming the file when it is missing, unreadable, needs
    Python globals, or lacks any of :data:`TRAINING_STATE_KEYS`.
    """
    path = Path(path)
    if path.is_dir():
        path = path / LAST_CHECKPOINT
        if not path.exists():
            raise CheckpointError(f"checkpoint {path}: no such file, so nothing to resume in {path.parent} "
                                  f"(a run writes it when started with --out-dir)")
    state = load_torch_file(path)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"checkpoint {path}: not a kmas-train training state (format {got!r}, "
                              f"expected {CHECKPOINT_FORMAT!r}); model-only checkpoints go to --checkpoint")
    missing = [key for key in TRAINING_STATE_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path}: training state lacks {missing}")
    return state


def _remove_stale_temporaries(out: Path) -> None:
    """Temporary files that a killed write left behind (never loaded; see kmas_kernels.core.files)."""
    for stale in out.glob(temp_name_prefix("*.pth") + "*"):
        stale.unlink(missing_ok=True)


class _StopRequests:
    """SIGTERM / SIGINT set a flag that the loop reads between steps (a second signal acts as usual)."""

    def __init__(self, enabled: bool) -> None:
        self.signum = 0
        self.previous: dict[int, Any] = {}
        if enabled and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self.previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum, frame) -> None:
        self.signum = signum
        signal.signal(signum, self.previous.get(signum, signal.SIG_DFL))

    def close(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}


def train(model: nn.Module, split, *, steps: int, batch_size: int = 64, num_negative: int = 512, lr: float = 5e-4,
          negatives: str = "strict", adversarial_temperature: float = 1.0, valid_every: int = 0,
          valid_limit: int | None = None, eval_batch_size: int = 16, out_dir: str | Path | None = None,
          device: torch.device | str = "cpu", seed: int = 0, progress: bool = True, kmas_options: dict | None = None,
          log: Callable[[str], None] | None = None, save_every: int = 0, resume: dict | None = None,
          options: dict | None = None, negatives_log: str | Path | None = None,
          hard_weighting: str = TRAIN_HARD_WEIGHTING, stats_callback: Callable[[dict], None] | None = None) -> dict:
    """Train ``model`` on ``split.train`` for ``steps`` steps; returns a summary dict.

    Validation (rank 0) every ``valid_every`` steps (0: only at the end) on the first
    ``valid_limit`` validation triples; each validation writes ``model_step_<n>.pth`` in
    ``out_dir`` ({"model", "architecture", "optimizer", "step", "metrics"}) and the best by MRR is
    ``best.pth``. With ``out_dir``, ``last.pth`` (the full state, :data:`TRAINING_STATE_KEYS`) is
    written before the first step, every ``save_every`` steps (0: never mid-run), at the end, and on SIGTERM / SIGINT,
    after which :class:`TrainingInterrupted` is raised. ``resume``: a state from
    :func:`load_training_state` (the other arguments must be the ones it was started with; the CLI
    takes them from ``state["options"]``). ``options`` (plain data) is stored in the checkpoints.
    ``hard_weighting`` (KMAS negatives only): how the loss weighs the hard columns
    (kmas_kernels.loss; "adversarial" is ULTRA's loss unchanged; default :data:`TRAIN_HARD_WEIGHTING`); ``stats_callback`` gets the KMAS
    sampler's ``stats()`` after every step. ``negatives_log`` (debugging / tests): append each step's (B, 1 + k, 3) batch as a JSON line
    to this file (``<file>.rank<r>`` under DDP).
    """
    from kmas_kernels.loss import HARD_WEIGHTINGS

    if hard_weighting not in HARD_WEIGHTINGS:
        raise ValueError(f"hard_weighting must be one of {HARD_WEIGHTINGS}, got {hard_weighting!r}")
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
    if len(loader) == 0:
        raise ValueError(f"batch_size={batch_size}: no full batch in {len(triples)} training triples over {world_size} rank(s)")
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    sample = make_negative_sampler(negatives, model, train_data, steps, seed=seed, kmas_options=kmas_options)
    negative_sampler = getattr(sample, "sampler", None)
    out = Path(out_dir) if out_dir else None
    if out is not None and rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(out)

    if negatives_log is not None:
        log_path = Path(f"{negatives_log}.rank{rank}" if world_size > 1 else negatives_log)
        draw = sample

        def sample(data, batch, k):  # noqa: F811  (the same sampler, logging what it drew)
            drawn = draw(data, batch, k)
            with open(log_path, "a") as f:
                f.write(json.dumps({"step": loop.step, "rank": rank, "batch": drawn.tolist()}) + "\n")
            return drawn

    if resume is not None and resume["world_size"] != world_size:
        raise ValueError(f"resume: the run was saved with {resume['world_size']} process(es), this one has {world_size}; "
                         "resume with the same number")
    data_order = resume["data_order"] if resume is not None else {"epoch": 0, "batches_done": 0}
    # a resumed run's torch RNG is restored when its first batch is drawn, so that nothing before moves it
    batches = EpochBatches(loader, sampler, device, int(data_order["epoch"]), int(data_order["batches_done"]),
                           rng_state=resume["ranks"][rank]["rng"] if resume is not None else None,
                           restore_rng=lambda state: _set_rng_state(state, device))
    loop = TrainingLoop(model, optimizer, steps=steps, batches=batches, sample=sample, num_negative=num_negative,
                        graph=train_data, valid_every=valid_every, save_every=save_every,
                        loss=make_loss(None if hard_weighting == "adversarial" else hard_weighting, negative_sampler,
                                       adversarial_temperature),
                        after_step=(lambda tag, loss: stats_callback(negative_sampler.stats()))
                        if stats_callback is not None and negative_sampler is not None else None,
                        progress=progress and rank == 0, desc=f"train[{negatives}]")
    best = {"mrr": -math.inf, "step": None}
    if resume is not None:
        loop.load_state_dict(resume)
        loop.history, loop.validated_at, best = list(resume["history"]), resume["validated_at"], dict(resume["best"])
        if negative_sampler is not None:
            if resume["ranks"][rank]["negative_sampler"] is None:
                raise ValueError("resume: the saved run drew no KMAS negatives, this one does (--negatives differs?)")
            negative_sampler.load_state_dict(resume["ranks"][rank]["negative_sampler"])
        log(f"resuming at step {loop.step} of {steps} (epoch {data_order['epoch']}, batch {data_order['batches_done']})")
    loop.module = parallel = (nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
                              if world_size > 1 else model)

    start = time.perf_counter()
    parallel.train()

    def validate(step: int) -> dict | None:
        metrics = None
        if rank == 0:
            queries = triples_of(valid_data)
            if valid_limit:
                queries = queries[:valid_limit]
            metrics = evaluate(model, valid_data, queries, valid_filter, batch_size=eval_batch_size)
            metrics = {k: v for k, v in metrics.items() if k not in ("tail_ranks", "head_ranks")}
            log(f"step {step}: valid mrr {metrics['mrr']:.4f} hits@10 {metrics['hits@10']:.4f} ({metrics['num_ranks']} ranks)")
            if out is not None:
                state = {"model": model.state_dict(), "architecture": architecture_of(model),
                         "optimizer": optimizer.state_dict(), "step": step, "metrics": metrics}
                save_state(state, out / f"model_step_{step}.pth")
                if metrics["mrr"] > best["mrr"]:
                    save_state(state, out / "best.pth")
            if metrics["mrr"] > best["mrr"]:
                best.update(mrr=metrics["mrr"], step=step)
        if world_size > 1:
            dist.barrier()
        return metrics

    def save_last() -> None:
        """Every rank contributes its RNG and sampler state; rank 0 writes one file, so the ranks
        can never be restored from different steps."""
        mine = {"rng": _rng_state(device),
                "negative_sampler": negative_sampler.state_dict() if negative_sampler is not None else None}
        ranks = [mine]
        if world_size > 1:
            ranks = [None] * world_size if rank == 0 else None
            dist.gather_object(mine, ranks, dst=0)
        if rank == 0 and out is not None:
            save_state(training_state(loop, data_order=batches.state_dict(), world_size=world_size, ranks=ranks,
                                      best=best, options=options), out / LAST_CHECKPOINT)
        if world_size > 1:
            dist.barrier()

    def stop_requested() -> int | None:
        signum = stop.signum
        if world_size > 1 and out is not None:  # every rank stops at the same step
            flag = torch.tensor([signum], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            signum = int(flag)
        return signum or None

    loop.validate, loop.stop = validate, stop_requested
    loop.save = save_last if out is not None else None
    if out is not None and resume is None:
        save_last()  # a run killed before its first --save-every step can still be resumed (from step 0)
    stop = _StopRequests(enabled=out is not None)
    try:
        signum = loop.run()
        if signum:
            raise TrainingInterrupted(signum, loop.step, out / LAST_CHECKPOINT if out is not None else None)
        if out is not None:
            save_last()
    finally:
        stop.close()
        if negative_sampler is not None and hasattr(negative_sampler, "close"):
            negative_sampler.close()
    return {
        "steps": loop.step,
        "negatives": negatives,
        "resumed_from_step": int(resume["step"]) if resume is not None else None,
        **loop.loss_summary(),
        "losses": loop.losses,
        "valid": loop.history,
        "best_valid_mrr": best["mrr"],
        "best_step": best["step"],
        "seconds": time.perf_counter() - start,
    }


def training_state(loop: TrainingLoop, *, data_order: dict, world_size: int, ranks: list, best: dict,
                   options: dict | None) -> dict:
    """The content of ``last.pth``: tensors and plain containers only (loads with weights_only=True).

    From the loop (:meth:`TrainingLoop.state_dict`): ``model`` (ULTRA's key: ULTRA's code and
    kmas-eval read it as is), ``optimizer``, ``step``, ``losses``; and ``architecture``,
    ``data_order`` ({"epoch", "batches_done"}: the DistributedSampler's epoch and the batches of
    it already trained on), ``world_size``, ``ranks`` (per rank: torch RNG states and the KMAS
    sampler's state dict or None), ``best`` ({"mrr", "step"}), ``history`` (validation metrics),
    ``validated_at``, ``options`` (what the run was started with).
    """
    return {
        "format": CHECKPOINT_FORMAT,
        **loop.state_dict(),
        "architecture": architecture_of(loop.model),
        "data_order": {"epoch": int(data_order["epoch"]), "batches_done": int(data_order["batches_done"])},
        "world_size": int(world_size),
        "ranks": ranks,
        "best": {"mrr": float(best["mrr"]), "step": best["step"]},
        "history": loop.history,
        "validated_at": loop.validated_at,
        "options": dict(options or {}),
    }
