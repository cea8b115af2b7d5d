"""Mining's share of a training step: the KMAS drop-in vs ULTRA's strict random sampler.

One ULTRA training step as the reference loop runs it (``kmas_ultra``): negatives for a batch of
B training triples (first half tails, second half heads), the model's forward on (B, 1 + k),
self-adversarial BCE, backward, AdamW. Each mode runs in its own process on the same graph,
model, batches and seed:

    strict   ULTRA's strict random sampler (``kmas_ultra.tasks.negative_sampling``, B x N masks)
    kmas     ``kmas_kernels.ultra.KMASNegativeSampling`` (the one-line drop-in) at a fixed hard
             share (default 0.5, the default schedule's peak), relation weights from its hook

Per timed step: mining seconds (the sampler call), step seconds (mining + forward + backward +
optimizer), the extra peak memory of mining and of the whole step above the memory at the
step's start, and the process's peak during the steps; before the steps, mining's extra peak in
isolation (two calls). Measured step-time and process-peak ratios between the two processes are
noisy (on CPU the peak RSS varies by ~10 % between identical runs), so the comparison also gives
the same ratios computed from the mining figures alone, the model part being identical work. Goal (docs/semantics.md §10): KMAS adds ≤ 1 % to the
step's time and peak memory against strict random.
"""

from __future__ import annotations

import time

MODES = ("strict", "kmas")


def measure_step(mode: str, num_entities: int | None, batch: int, k: int, steps: int, warmup: int = 1,
                 hard_ratio: float = 0.5, device: str = "cpu", data: str | None = None, checkpoint: str | None = None,
                 seed: int = 0) -> dict:
    """Time and memory of ``steps`` training steps with ``mode`` negatives; meant for a fresh process."""
    import torch

    from kmas_ultra import Ultra, load_checkpoint, negative_sampling, self_adversarial_bce

    from .graphs import load_graph
    from .hardness import ultra_data
    from .measure import PeakMemory, median, synchronizer

    torch.manual_seed(seed)
    graph = load_graph(num_entities, data, seed)
    train_data = ultra_data(graph).to(device)
    model = (load_checkpoint(checkpoint) if checkpoint else Ultra()).to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    total = warmup + steps
    if mode == "strict":
        sample = lambda d, b: negative_sampling(d, b, k, strict=True)  # noqa: E731
    elif mode == "kmas":
        from kmas_kernels.ultra import KMASNegativeSampling

        dropin = KMASNegativeSampling(model, train_data, total, schedule=float(hard_ratio), seed=seed, backend="auto")
        sample = lambda d, b: dropin(d, b, k, strict=True)  # noqa: E731
    else:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    g = torch.Generator().manual_seed(seed + 1)
    train = graph.train[:, [0, 2, 1]]  # [h, t, r], ULTRA's batch columns
    batches = [train[torch.randint(train.shape[0], (batch,), generator=g)].to(device) for _ in range(total)]
    sync = synchronizer(device)
    memory = PeakMemory(device)
    # mining alone, before any model step has grown the heap: its extra peak memory in isolation
    # (within the steps, mining reuses memory the model freed, so its in-step extra reads ~0 on CPU)
    memory.start()
    for _ in range(2):
        sample(train_data, batches[0])
    mining_isolated_peak = memory.extra()
    mining, step_times, mining_peak, step_peak, process_peak = [], [], [], [], 0
    for i, b in enumerate(batches):
        memory.start()
        sync()
        t0 = time.perf_counter()
        layout = sample(train_data, b)
        sync()
        t1 = time.perf_counter()
        mine_extra = memory.extra()
        loss = self_adversarial_bce(model(train_data, layout))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        sync()
        t2 = time.perf_counter()
        extra = memory.extra()
        if i >= warmup:
            mining.append(t1 - t0)
            step_times.append(t2 - t0)
            mining_peak.append(mine_extra)
            step_peak.append(extra)
            process_peak = max(process_peak, memory.before + extra)
    return {
        "mode": mode,
        "num_entities": graph.num_entities,
        "num_train_triples": int(graph.train.shape[0]),
        "batch": batch,
        "negatives": k,
        "steps": steps,
        "hard_ratio": hard_ratio if mode == "kmas" else 0.0,
        "checkpoint": checkpoint,
        "mining_seconds": median(mining),
        "step_seconds": median(step_times),
        "mining_share": sum(mining) / sum(step_times),
        # per-step shares, then their median: one slow step (a compile, a GC) does not decide it
        "mining_share_median": median([m / s for m, s in zip(mining, step_times)]),
        "mining_seconds_all": mining,
        "step_seconds_all": step_times,
        "mining_extra_peak_bytes": max(mining_peak),
        "mining_isolated_extra_peak_bytes": mining_isolated_peak,
        "step_extra_peak_bytes": max(step_peak),
        "process_peak_bytes": process_peak,
        "memory_measure": memory.kind,
        "torch_threads": torch.get_num_threads(),
    }


def overhead(*, num_entities: int | None, batch: int, k: int, steps: int, hard_ratio: float = 0.5, device: str = "cpu",
             data: str | None = None, checkpoint: str | None = None, seed: int = 0, timeout: float | None = None,
             progress: bool = True) -> dict:
    """Both modes, each in its own process, and the side-by-side ratios."""
    from tqdm import tqdm

    from .measure import run_isolated

    rows = {}
    for mode in tqdm(MODES, desc="training-step overhead", disable=not progress):
        kwargs = dict(mode=mode, num_entities=num_entities, batch=batch, k=k, steps=steps, hard_ratio=hard_ratio,
                      device=device, data=data, checkpoint=checkpoint, seed=seed)
        rows[mode] = run_isolated("kmas_bench.overhead:measure_step", kwargs, timeout)
    result = {"modes": rows, "parameters": {"num_entities": num_entities, "data": data, "batch": batch, "negatives": k,
                                            "steps": steps, "hard_ratio": hard_ratio, "checkpoint": checkpoint, "seed": seed}}
    s, m = rows["strict"], rows["kmas"]
    if "error" not in s and "error" not in m:
        result["comparison"] = {
            # what KMAS mining costs on top of the step without any mining, vs what strict random costs
            "kmas_mining_share_of_step": m["mining_share"],
            "strict_mining_share_of_step": s["mining_share"],
            # measured directly, two processes: noisy on a shared machine (the model part is identical work)
            "kmas_step_time_vs_strict": m["step_seconds"] / s["step_seconds"] - 1.0,
            # the same from the mining times alone: (KMAS mining - strict mining) / strict step
            "kmas_step_time_vs_strict_from_mining": (m["mining_seconds"] - s["mining_seconds"]) / s["step_seconds"],
            "kmas_mining_time_vs_strict_mining": m["mining_seconds"] / s["mining_seconds"],
            # mining's own time relative to the rest of the strict step (forward + backward + AdamW)
            "kmas_mining_vs_model_step": m["mining_seconds"] / (s["step_seconds"] - s["mining_seconds"]),
            # measured directly, two processes: on CPU the peak RSS of a process varies by ~10 % run to run
            "kmas_process_peak_vs_strict": m["process_peak_bytes"] / s["process_peak_bytes"] - 1.0,
            # the same from mining's own extra peak (in isolation): (KMAS - strict) / strict process peak
            "kmas_process_peak_vs_strict_from_mining": (m["mining_isolated_extra_peak_bytes"] - s["mining_isolated_extra_peak_bytes"])
            / s["process_peak_bytes"],
            "kmas_mining_extra_peak_vs_strict_process_peak": m["mining_isolated_extra_peak_bytes"] / s["process_peak_bytes"],
            "kmas_step_extra_peak_vs_strict": m["step_extra_peak_bytes"] / max(1, s["step_extra_peak_bytes"]) - 1.0,
        }
    return result
