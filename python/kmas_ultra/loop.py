"""The one resumable training loop, driven by ``kmas-train`` and ``kmas-pretrain``.

:class:`TrainingLoop` owns what the two drivers share: the step (draw a batch, add negatives,
score, loss, AdamW step), the loss history, the periodic validation and saving, the stop check
between steps and the progress bar. The drivers plug in what differs:

- ``kmas_ultra.train.train`` (``kmas-train``): batches from a DistributedSampler epoch by epoch
  (:class:`EpochBatches`), DDP, SIGTERM / SIGINT, ``last.pth`` in its own format
  (``kmas_ultra.train.CHECKPOINT_FORMAT``);
- ``kmas_bench.pretrain.run_one`` (``kmas-pretrain run``): a graph drawn per step in proportion to
  its edges, a seeded generator for the strict negatives, ``<run>.partial.pth``.

A checkpoint is ``{**loop.state_dict(), **the driver's keys}``: ``model``, ``optimizer``, ``step``
and ``losses`` come from the loop, the rest (random states, sampler state, validation history, the
data order, options) from the driver, whose file layouts are unchanged. Writes are atomic (temporary
file, fsync, rename: :func:`save_state`) and reads take tensors and plain containers only
(``torch.load(..., weights_only=True)``: :func:`load_state`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from kmas_kernels.core.files import atomic_save, load_torch_file

from . import tasks

NEGATIVE_MODES = ("random", "strict", "kmas")

Sample = Callable[[Any, torch.Tensor, int], torch.Tensor]  # (data, (B, 3) batch, k) -> (B, 1 + k, 3)


def make_negative_sampler(mode: str, model: nn.Module, train_data, total_steps: int, seed: int | None = None,
                          kmas_options: dict | None = None, generator: torch.Generator | None = None) -> Sample:
    """A callable ``(data, batch, num_negative) -> (B, 1 + k, 3)`` for the given mode.

    ``train_data``: the training graph, or a list of them (KMAS keeps one cache per graph).
    ``generator``: of the random / strict draws (None: torch's global one). With "kmas" the
    callable's ``.sampler`` is the :class:`kmas_kernels.ultra.KMASNegativeSampling`.
    """
    if mode in ("random", "strict"):
        strict = mode == "strict"
        # looked up per call (tasks.negative_sampling), so a test can watch the draws
        return lambda data, batch, k: tasks.negative_sampling(data, batch, k, strict=strict, generator=generator)
    if mode == "kmas":
        from kmas_kernels.ultra import KMASNegativeSampling

        sampler = KMASNegativeSampling(model, train_data, total_steps, seed=seed, **dict(kmas_options or {}))
        fn = lambda data, batch, k: sampler(data, batch, k, strict=True)  # noqa: E731
        fn.sampler = sampler
        return fn
    raise ValueError(f"negatives must be one of {NEGATIVE_MODES}, got {mode!r}")


def make_loss(hard_weighting: str | None = None, kmas_sampler=None,
              adversarial_temperature: float = 1.0) -> Callable[[torch.Tensor], torch.Tensor]:
    """``scores (B, 1 + k) -> loss``: ULTRA's self-adversarial BCE when ``hard_weighting`` is None
    or there is no KMAS sampler; otherwise kmas_kernels.loss.link_prediction_loss weighing the hard
    columns of ``kmas_sampler``'s latest batch (read at each call)."""
    if hard_weighting is None or kmas_sampler is None:
        return lambda pred: tasks.self_adversarial_bce(pred, adversarial_temperature)
    from kmas_kernels.loss import HARD_WEIGHTINGS, link_prediction_loss

    if hard_weighting not in HARD_WEIGHTINGS:
        raise ValueError(f"hard_weighting must be one of {HARD_WEIGHTINGS}, got {hard_weighting!r}")
    return lambda pred: link_prediction_loss(pred, kmas_sampler.hard_counts, adversarial_temperature=adversarial_temperature,
                                             hard_weighting=hard_weighting)


def optimisation_step(model: nn.Module, optimizer: torch.optim.Optimizer, data, batch: torch.Tensor, sample: Sample,
                      num_negative: int, loss_fn: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """One step on a (B, 3) [h, t, r] batch: negatives, scores, loss, backward, optimizer step; returns the loss."""
    batch = sample(data, batch, num_negative)
    loss = loss_fn(model(data, batch))
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return float(loss.detach())


def save_state(state: dict, path: str | Path) -> None:
    """Write a checkpoint atomically (tensors and plain containers only)."""
    atomic_save(state, path)


def load_state(path: str | Path, map_location=None) -> Any:
    """Read a checkpoint with ``weights_only=True``; a bad file is a CheckpointError naming it."""
    return load_torch_file(path, map_location=map_location)


class EpochBatches:
    """Batches of a DataLoader over a DistributedSampler, epoch after epoch, resumable.

    ``epoch`` / ``batches_done``: where to start (a saved ``data_order``). ``rng_state``: torch's
    random states to restore once resuming (None: a fresh run). Starting an epoch (``iter(loader)``)
    draws one number from the global RNG: a state saved at an epoch's end is restored before that
    draw, one saved inside an epoch after it (and after skipping the batches already trained on).
    """

    def __init__(self, loader, sampler, device: torch.device, epoch: int = 0, batches_done: int = 0,
                 rng_state: dict | None = None, restore_rng: Callable[[dict], None] | None = None) -> None:
        self.loader, self.sampler, self.device = loader, sampler, device
        self.num_batches = len(loader)
        self.epoch, self.batches_done = epoch, batches_done
        self._rng_state, self._restore_rng = rng_state, restore_rng
        self._batches = None

    def _restore(self) -> None:
        if self._rng_state is not None:
            self._restore_rng(self._rng_state)
            self._rng_state = None

    def __call__(self) -> tuple[None, torch.Tensor, None]:
        """``(None, (B, 3) batch, None)``: the graph is the driver's one training graph."""
        if self._batches is None:
            self.sampler.set_epoch(self.epoch)
            if self.batches_done == 0:
                self._restore()
            self._batches = iter(self.loader)
            for _ in range(self.batches_done):  # resuming inside an epoch: the batches already trained on
                next(self._batches)
            self._restore()
        batch = next(self._batches)
        self.batches_done += 1
        if self.batches_done == self.num_batches:
            self.epoch, self.batches_done, self._batches = self.epoch + 1, 0, None
        return None, batch.to(self.device), None

    def state_dict(self) -> dict:
        return {"epoch": int(self.epoch), "batches_done": int(self.batches_done)}


class TrainingLoop:
    """``steps`` optimisation steps of ``model``, resumable, with periodic validation and saving.

    Plugged in:

    - ``batches()`` -> ``(data, (B, 3) batch, tag)``: the next training batch, on the model's
      device, and its graph (None: ``graph``); ``tag`` goes to ``after_step`` and ``postfix``;
    - ``sample(data, batch, k)`` -> (B, 1 + k, 3): the negatives (:func:`make_negative_sampler`);
    - ``loss(scores)`` -> scalar (:func:`make_loss`);
    - ``validate(step)`` -> metrics dict or None (a rank that does not validate): every
      ``valid_every`` steps before the last (0: never mid-run), before the first step when
      ``validate_first`` and nothing was validated yet, and after the last step unless that step
      was validated; metrics are appended to ``history`` as ``{"step": step, **metrics}``;
    - ``save()``: every ``save_every`` steps before the last (0: never mid-run) and when stopping;
    - ``stop()`` -> None or a reason, checked after every step (after the validation); a reason
      saves and ends :meth:`run`, which returns it;
    - ``after_step(tag, loss)``; ``postfix(tag)`` -> extra progress-bar fields.

    ``module``: what the step calls (a DDP wrapper of ``model``; default ``model``). ``model`` is
    what :meth:`state_dict` saves.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, steps: int,
                 batches: Callable[[], tuple[Any, torch.Tensor, Any]], sample: Sample, num_negative: int,
                 loss: Callable[[torch.Tensor], torch.Tensor], graph=None, module: nn.Module | None = None,
                 validate: Callable[[int], dict | None] | None = None, valid_every: int = 0, validate_first: bool = False,
                 save: Callable[[], None] | None = None, save_every: int = 0, stop: Callable[[], Any] | None = None,
                 after_step: Callable[[Any, float], None] | None = None, postfix: Callable[[Any], dict] | None = None,
                 progress: bool = True, desc: str = "train") -> None:
        for name, value in (("steps", steps), ("num_negative", num_negative)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name, value in (("valid_every", valid_every), ("save_every", save_every)):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer (0: never mid-run), got {value!r}")
        self.model, self.optimizer, self.steps = model, optimizer, steps
        self.module = module if module is not None else model
        self.batches, self.sample, self.num_negative, self.loss, self.graph = batches, sample, num_negative, loss, graph
        self.validate, self.valid_every, self.validate_first = validate, valid_every, validate_first
        self.save, self.save_every, self.stop = save, save_every, stop
        self.after_step, self.postfix = after_step, postfix
        self.progress, self.desc = progress, desc
        self.step = 0
        self.losses: list[float] = []
        self.history: list[dict] = []
        self.validated_at: int | None = None
        self.seconds = 0.0  # inside steps (validation and saving excluded)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """The loop's part of a checkpoint: ``model``, ``optimizer``, ``step``, ``losses``."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "step": int(self.step),
                "losses": [float(loss) for loss in self.losses]}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` saved (the driver restores its own keys)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.losses = int(state["step"]), [float(loss) for loss in state["losses"]]

    # ------------------------------------------------------------------ running
    def validate_now(self) -> None:
        metrics = self.validate(self.step) if self.validate is not None else None
        if metrics is not None:
            self.history.append({"step": self.step, **metrics})
        self.validated_at = self.step
        self.module.train()

    def run(self) -> Any:
        """Train up to ``steps``; returns None when done (last validation included), or the reason
        that ``stop()`` gave (after saving)."""
        from tqdm import tqdm

        if self.validate_first and self.step == 0 and self.validated_at is None:
            self.validate_now()  # the untrained point of the curve
        bar = tqdm(total=self.steps, initial=self.step, desc=self.desc, unit="step", file=sys.stderr,
                   disable=not self.progress)
        self.module.train()
        try:
            while self.step < self.steps:
                started = time.perf_counter()
                data, batch, tag = self.batches()
                loss = optimisation_step(self.module, self.optimizer, self.graph if data is None else data, batch,
                                         self.sample, self.num_negative, self.loss)
                self.losses.append(loss)
                self.step += 1
                if self.after_step is not None:
                    self.after_step(tag, loss)
                self.seconds += time.perf_counter() - started
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", **(self.postfix(tag) if self.postfix is not None else {}))
                if self.valid_every and self.step % self.valid_every == 0 and self.step < self.steps:
                    self.validate_now()
                reason = self.stop() if self.stop is not None else None
                periodic = self.save_every and self.step % self.save_every == 0 and self.step < self.steps
                if self.save is not None and (periodic or reason):
                    self.save()
                if reason:
                    return reason
        finally:
            bar.close()
        if self.validated_at != self.step:
            self.validate_now()
        return None

    # ------------------------------------------------------------------ summaries
    def loss_summary(self) -> dict:
        """First / last loss and the means over the first and the last 10 % of the steps."""
        losses = self.losses
        if not losses:
            return {"first_loss": None, "last_loss": None, "mean_loss_first_10pct": None, "mean_loss_last_10pct": None}
        tenth = max(1, len(losses) // 10)
        return {"first_loss": losses[0], "last_loss": losses[-1], "mean_loss_first_10pct": sum(losses[:tenth]) / tenth,
                "mean_loss_last_10pct": sum(losses[-tenth:]) / tenth}
