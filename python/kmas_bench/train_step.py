"""The training step of the reference loop (kmas_ultra, fused message passing) against ULTRA's own code.

One ULTRA training step: the model's forward on a (B, 1 + k) batch (strict negatives drawn once per
repetition, outside the timing, the same batch for every implementation), self-adversarial BCE
(temperature 1), backward, AdamW (lr 5e-4) step. Implementations, each its own model copy loaded
from the same checkpoint and its own optimizer:

    kmas_fused       kmas_ultra.Ultra(message_passing="auto"): kmas_kernels.graph_ops.relational_spmm
    kmas_reference   kmas_ultra.Ultra(message_passing="reference"): plain torch, (B, E, d) messages
    ultra            ULTRA's own models.Ultra (its rspmm extension, torch-scatter, torch-geometric),
                     when ULTRA_PATH points to a checkout of DeepGraphLearning/ULTRA

Timing: repetitions interleaved (implementation order rotated each repetition), so that load on a
shared machine hits all of them alike; medians per phase (forward, loss, backward, optimizer) and
of the whole step; the 1-minute load average is recorded per repetition. Peak memory: each
implementation in a fresh process, the peak RSS (CUDA: max allocated) above the memory after
setup, over two steps. Profile: one extra step per implementation under torch.profiler, the
share of the step spent in the message-passing op (forward + backward), the loss and the optimizer.
"""

from __future__ import annotations

import copy
import importlib
import os
import sys
import time

IMPLEMENTATIONS = ("kmas_fused", "kmas_reference", "ultra")
# autograd node / function names of each implementation's message passing (profiler events)
MESSAGE_PASSING_EVENTS = {
    "kmas_fused": ("_FusedRelationalSpmm", "_FusedRelationalSpmmBackward"),
    "kmas_reference": ("aten::index_add", "IndexAddBackward0", "aten::index", "IndexBackward0", "aten::mul", "MulBackward0"),
    "ultra": ("RSPMMAddMulFunction", "RSPMMAddMulFunctionBackward"),
}


def import_ultra(path: str | None):
    """ULTRA's (models, tasks) modules from a checkout, or the reason they cannot be imported."""
    if not path:
        return "ULTRA_PATH not set"
    for dependency in ("torch_scatter", "torch_geometric"):
        if importlib.util.find_spec(dependency) is None:
            return f"ULTRA needs {dependency} (pip install kmas_kernels[ultra])"
    if path not in sys.path:
        sys.path.insert(0, path)
    return importlib.import_module("ultra.models"), importlib.import_module("ultra.tasks")


def setup(data: str, checkpoint: str, implementations, device: str, ultra_path: str | None):
    """Graphs (ours and ULTRA's, the same edges in the same order) and one model per implementation."""
    import torch

    from kmas_kernels.data import load_kg_folder
    from kmas_ultra import Ultra, load_checkpoint, make_graph
    from kmas_ultra.data import hrt_to_htr

    kg = load_kg_folder(data)
    train = hrt_to_htr(kg.train)  # [h, t, r]
    ours = make_graph(train, kg.num_entities, kg.num_relations).to(device)
    state = load_checkpoint(checkpoint).state_dict()
    models, graphs = {}, {}
    for name in implementations:
        if name.startswith("kmas_"):
            model = Ultra(message_passing="auto" if name == "kmas_fused" else "reference")
            model.load_state_dict(state)
            models[name], graphs[name] = model.to(device), ours
        elif name == "ultra":
            ultra = import_ultra(ultra_path)
            if isinstance(ultra, str):
                raise RuntimeError(f"cannot run ULTRA's own code: {ultra}")
            u_models, u_tasks = ultra
            from torch_geometric.data import Data

            h, t, r = train.t()
            r0 = kg.num_relations
            theirs = Data(edge_index=torch.stack([torch.cat([h, t]), torch.cat([t, h])]), edge_type=torch.cat([r, r + r0]),
                          num_nodes=kg.num_entities, num_relations=2 * r0, target_edge_index=torch.stack([h, t]),
                          target_edge_type=r)
            theirs = u_tasks.build_relation_graph(theirs).to(device)
            layer = dict(input_dim=64, hidden_dims=[64] * 6, message_func="distmult", aggregate_func="sum",
                         short_cut=True, layer_norm=True)
            model = u_models.Ultra(dict(layer, **{"class": "RelNBFNet"}), dict(layer, **{"class": "EntityNBFNet"}))
            model.load_state_dict(state)
            models[name], graphs[name] = model.to(device), theirs
        else:
            raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {name!r}")
    return kg, train, models, graphs


def draw_batches(train, kg, batch: int, k: int, count: int, seed: int, device: str):
    """``count`` (B, 1 + k, 3) training batches with strict negatives (ULTRA's sampler), fixed by ``seed``."""
    import torch

    from kmas_ultra import make_graph, negative_sampling

    graph = make_graph(train, kg.num_entities, kg.num_relations)
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        rows = train[torch.randint(train.shape[0], (batch,), generator=g)]
        out.append(negative_sampling(graph, rows, k, strict=True, generator=g).to(device))
    return out


def one_step(model, optimizer, graph, batch, sync) -> dict:
    """Seconds of each phase of one training step."""
    from kmas_ultra import self_adversarial_bce

    sync()
    t0 = time.perf_counter()
    pred = model(graph, batch)
    sync()
    t1 = time.perf_counter()
    loss = self_adversarial_bce(pred, 1.0)
    sync()
    t2 = time.perf_counter()
    loss.backward()
    sync()
    t3 = time.perf_counter()
    optimizer.step()
    optimizer.zero_grad()
    sync()
    t4 = time.perf_counter()
    return {"forward": t1 - t0, "loss": t2 - t1, "backward": t3 - t2, "optimizer": t4 - t3, "step": t4 - t0}


def profile_step(name: str, model, optimizer, graph, batch, sync) -> dict:
    """Shares of one step (profiled) in message passing, loss and optimizer; CPU time of the profiler events."""
    from torch.profiler import ProfilerActivity, profile, record_function

    from kmas_ultra import self_adversarial_bce

    activities = [ProfilerActivity.CPU]
    if str(next(model.parameters()).device).startswith("cuda"):
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        with record_function("step::forward"):
            pred = model(graph, batch)
        with record_function("step::loss"):
            loss = self_adversarial_bce(pred, 1.0)
        with record_function("step::backward"):
            loss.backward()
        with record_function("step::optimizer"):
            optimizer.step()
            optimizer.zero_grad()
        sync()
    totals = {e.key: e for e in prof.key_averages()}

    def seconds(key: str) -> float:
        event = totals.get(key)
        return event.cpu_time_total / 1e6 if event is not None else 0.0

    phases = {p: seconds(f"step::{p}") for p in ("forward", "loss", "backward", "optimizer")}
    total = sum(phases.values())
    # the backward pass runs in autograd's engine, outside the step::backward range on some versions:
    # message passing = the op's own forward and backward events
    mp = sum(seconds(key) for key in MESSAGE_PASSING_EVENTS[name])
    return {
        "phase_seconds": phases,
        "message_passing_seconds": mp,
        "events": list(MESSAGE_PASSING_EVENTS[name]),
        "share": {
            "message_passing": mp / total if total else None,
            "loss": phases["loss"] / total if total else None,
            "optimizer": phases["optimizer"] / total if total else None,
            "rest (dense layers, gathers, edge dropout)": 1 - (mp + phases["loss"] + phases["optimizer"]) / total if total else None,
        },
        "note": "CPU time of profiler events (inclusive); the profiler adds overhead, shares only",
    }


def compare(*, data: str, checkpoint: str, configs, implementations, repeats: int, warmup: int = 1, device: str = "cpu",
            ultra_path: str | None = None, seed: int = 0, profile: bool = True, progress: bool = True) -> dict:
    """Interleaved timing of every implementation at each (B, k); see the module doc."""
    import torch
    from tqdm import tqdm

    from kmas_ultra.model import message_passing_path

    from .measure import median, synchronizer

    sync = synchronizer(device)
    kg, train, models, graphs = setup(data, checkpoint, implementations, device, ultra_path)
    result = {"configs": []}
    for batch, k in configs:
        batches = draw_batches(train, kg, batch, k, warmup + repeats + 1, seed, device)
        state = {name: copy.deepcopy(m.state_dict()) for name, m in models.items()}
        optimizers = {name: torch.optim.AdamW(m.parameters(), lr=5e-4) for name, m in models.items()}
        for m in models.values():
            m.train()
        times = {name: [] for name in implementations}
        loads = []
        bar = tqdm(total=(warmup + repeats) * len(implementations), desc=f"train step B={batch} k={k}", disable=not progress,
                   file=sys.stderr)
        for rep in range(warmup + repeats):
            order = list(implementations[rep % len(implementations):]) + list(implementations[:rep % len(implementations)])
            loads.append(os.getloadavg()[0])
            for name in order:
                phases = one_step(models[name], optimizers[name], graphs[name], batches[rep], sync)
                if rep >= warmup:
                    times[name].append(phases)
                bar.update(1)
                bar.set_postfix(impl=name, step=f"{phases['step']:.2f}s")
        bar.close()
        rows = {}
        for name in implementations:
            rows[name] = {
                "median_seconds": {p: median([t[p] for t in times[name]]) for p in ("forward", "loss", "backward", "optimizer", "step")},
                "seconds_all": times[name],
            }
            if profile:
                rows[name]["profile"] = profile_step(name, models[name], optimizers[name], graphs[name], batches[-1], sync)
        if "kmas_fused" in rows and "ultra" in rows:
            ours, theirs = rows["kmas_fused"]["median_seconds"], rows["ultra"]["median_seconds"]
            rows["speedup_vs_ultra"] = {p: theirs[p] / ours[p] for p in ("forward", "backward", "step")}
        result["configs"].append({"batch": batch, "negatives": k, "load_average_1min": loads, "implementations": rows})
        for name, m in models.items():  # every config starts from the checkpoint
            m.load_state_dict(state[name])
    result["message_passing"] = {"kmas_fused": message_passing_path(device)}
    result["graph"] = {"data": data, "num_entities": kg.num_entities, "num_relations": 2 * kg.num_relations,
                       "num_edges": int(graphs[implementations[0]].edge_index.shape[1]),
                       "relation_graph_edges": int(graphs[implementations[0]].relation_graph.edge_index.shape[1])}
    return result


def measure_memory(*, implementation: str, data: str, checkpoint: str, batch: int, k: int, device: str = "cpu",
                   ultra_path: str | None = None, seed: int = 0, threads: int | None = None) -> dict:
    """Extra peak memory of two training steps above the memory after setup; meant for a fresh process."""
    import torch

    from .measure import PeakMemory, synchronizer

    if threads:
        torch.set_num_threads(threads)
    sync = synchronizer(device)
    kg, train, models, graphs = setup(data, checkpoint, [implementation], device, ultra_path)
    batches = draw_batches(train, kg, batch, k, 2, seed, device)
    model = models[implementation]
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    memory = PeakMemory(device)
    memory.start()
    for b in batches:
        one_step(model, optimizer, graphs[implementation], b, sync)
    return {"implementation": implementation, "batch": batch, "negatives": k, "extra_peak_bytes": memory.extra(),
            "measure": memory.kind}
