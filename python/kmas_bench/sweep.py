"""Mining cost vs graph size: every sampler, time per call and extra peak memory vs N.

For each (sampler, N), in its own process (peak memory is per process): build a synthetic typed
KG with N entities (50 relations, 20 types, 5 triples per entity, 90 % of them the training
graph; :mod:`kmas_bench.graphs`) — or load a data folder —, index its training triples, draw B training triples and time calls that return k negatives per row. Reports the
median time per call and the extra peak memory of the calls, warm-up included (CPU: peak RSS
above the RSS before the first call; CUDA: peak allocated above allocated before).

``python -m kmas_bench.sweep --device cpu --sizes 10000 100000 1000000 10000000`` runs the sweep
alone (what ``benchmarks/sweep.py`` did); ``kmas-bench`` runs it as one part of the suite.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from kmas_kernels.core.files import atomic_write_json

from .graphs import EDGES_PER_ENTITY, NUM_RELATIONS, NUM_TYPES, load_graph

# bytes per (row, entity) the materialising reference needs, and per edge for ULTRA's strict
# sampler (it sorts every edge on every call); points beyond the available memory are skipped
REFERENCE_BYTES_PER_CELL = 110
ULTRA_STRICT_BYTES_PER_EDGE = 100
ULTRA_STRICT_BYTES_PER_CELL = 12
INDEX_BYTES_PER_TRIPLE = 150


def estimated_bytes(name: str, num_entities: int, batch: int) -> int:
    """A rough upper estimate of one point's memory, to skip what cannot fit."""
    triples = EDGES_PER_ENTITY * num_entities
    need = INDEX_BYTES_PER_TRIPLE * triples
    if name == "kmas-reference":
        need += REFERENCE_BYTES_PER_CELL * batch * num_entities
    if name in ("ultra-strict", "ultra-original"):
        need += ULTRA_STRICT_BYTES_PER_EDGE * 2 * triples + ULTRA_STRICT_BYTES_PER_CELL * batch * num_entities
    return need


def measure(name: str, num_entities: int | None, batch: int, k: int, repeats: int, device: str = "cpu",
            data: str | None = None, ultra_path: str | None = None, seed: int = 0, max_seconds: float = 60.0) -> dict:
    """One (sampler, N) point; meant to run in a fresh process (:func:`kmas_bench.measure.run_isolated`).

    ``repeats`` timed calls after one warm-up call, fewer (at least one) when they would take more
    than ``max_seconds`` by the warm-up's time.
    """
    import torch

    from .measure import PeakMemory, median, time_calls
    from .samplers import make_problem, make_sampler

    graph = load_graph(num_entities, data, seed)
    train, n = graph.train, graph.num_entities
    start = time.perf_counter()
    problem = make_problem(train, n, graph.num_base_relations, batch, device, seed)
    index_seconds = time.perf_counter() - start
    run = make_sampler(name, problem, k, seed, ultra_path)
    memory = PeakMemory(device)
    memory.start()
    warm = time.perf_counter()
    out = run()  # warm-up (compilation, autotuning, thread pools) counts toward peak memory
    warm = time.perf_counter() - warm
    if warm * repeats > max_seconds:  # slow points (the reference at large N): fewer calls, at least one
        repeats = max(1, int(max_seconds / warm))
    times, out = time_calls(run, repeats, device)
    extra = memory.extra()
    assert out.shape[0] == batch and out.shape[1] in (k, k + 1), tuple(out.shape)
    return {
        "sampler": name,
        "num_entities": n,
        "num_triples": int(train.shape[0]),
        "index_bytes": int(problem.index.nbytes),
        "index_seconds": index_seconds,
        "seconds_per_call": median(times),
        "seconds_all": times,
        "repeats": len(times),
        "extra_peak_bytes": extra,
        "memory_measure": memory.kind,
        "torch_threads": torch.get_num_threads(),
    }


def run_point(name: str, num_entities: int | None, *, batch: int, k: int, repeats: int, device: str,
              data: str | None = None, ultra_path: str | None = None, timeout: float | None = None,
              memory_budget: int | None = None) -> dict:
    """:func:`measure` in its own process, or a row saying why it was skipped."""
    from .measure import available_memory, run_isolated
    from .samplers import unavailable

    row = {"sampler": name, "num_entities": num_entities}
    reason = unavailable(name, device, ultra_path)
    if reason:
        return {**row, "skipped": reason}
    if data is None and device == "cpu":
        budget = memory_budget or int(0.8 * available_memory())
        need = estimated_bytes(name, num_entities, batch)
        if need > budget:
            return {**row, "skipped": f"needs about {need / 2**30:.1f} GiB, {budget / 2**30:.1f} GiB available"}
    kwargs = dict(name=name, num_entities=num_entities, batch=batch, k=k, repeats=repeats, device=device,
                  data=data, ultra_path=ultra_path)
    return {**row, **run_isolated("kmas_bench.sweep:measure", kwargs, timeout)}


def sweep(samplers: list[str], sizes: list[int], *, batch: int, k: int, repeats: int, device: str,
          ultra_path: str | None = None, timeout: float | None = None, progress: bool = True,
          log=print) -> list[dict]:
    """Every sampler at every N (synthetic typed KG); a failed or skipped point is recorded and the sweep goes on.

    A sampler that fails, times out or is skipped at some N is not tried at larger N.
    """
    from tqdm import tqdm

    rows, stopped = [], {}
    points = [(n, name) for n in sizes for name in samplers]
    for n, name in tqdm(points, desc="sweep", disable=not progress):
        if name in stopped:
            rows.append({"sampler": name, "num_entities": n, "skipped": f"stopped after N={stopped[name]}"})
            continue
        row = run_point(name, n, batch=batch, k=k, repeats=repeats, device=device, ultra_path=ultra_path, timeout=timeout)
        rows.append(row)
        if "error" in row or row.get("skipped", "").startswith("needs about"):
            stopped[name] = n  # larger graphs would fail the same way
        if "error" in row:
            log(f"{name} at N={n}: {row['error']}")
    return rows


def main(argv: list[str] | None = None) -> None:
    """The sweep alone: ``python -m kmas_bench.sweep`` (writes JSON and a log-log plot)."""
    from .measure import machine_info
    from .report import plot_sweep
    from .samplers import default_samplers

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000, 10_000_000])
    parser.add_argument("--samplers", nargs="+", default=None, help="default: every available backend + baselines")
    parser.add_argument("--ultra-path", default=None, help="a checkout of DeepGraphLearning/ULTRA (ultra-original row)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--negatives", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per (sampler, N) process")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results") if Path("benchmarks").is_dir() else Path("kmas-bench-results"))
    args = parser.parse_args(argv)
    samplers = args.samplers or default_samplers(args.device)
    rows = sweep(samplers, args.sizes, batch=args.batch, k=args.negatives, repeats=args.repeats, device=args.device,
                 ultra_path=args.ultra_path, timeout=args.timeout)
    result = {
        "machine": machine_info(args.device),
        "parameters": {"batch": args.batch, "negatives": args.negatives, "repeats": args.repeats, "device": args.device,
                       "edges_per_entity": EDGES_PER_ENTITY, "num_relations": NUM_RELATIONS, "num_types": NUM_TYPES},
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"sweep_{args.device}.json"
    atomic_write_json(result, path)
    plot_sweep(result, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
