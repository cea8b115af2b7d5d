"""Mining cost vs graph size: every KMAS backend beside the random-negative baselines.

For each N and each sampler, in its own process (peak memory is per process): build a synthetic
typed KG with N entities (50 relations, 5 triples per entity), draw B training triples, and time
one call that returns k negatives per row. Reports the median time per call and the extra peak
memory of the calls (CPU: peak RSS above the RSS before the first call; CUDA: peak allocated
above allocated before). Writes JSON (machine, device, parameters, every figure) and a log-log
plot under benchmarks/results/.

Samplers: kmas-<backend> for each available backend (reference, cpu, triton, cuda), plus
  strict-rejection  our O(B·k) strict uniform sampler (the KMASSampler's uniform share)
  ultra-strict      ULTRA's strict random sampler (sorts every edge, B × N masks), as the reference
                    loop implements it (kmas_ultra.tasks.negative_sampling), layout included

    python benchmarks/sweep.py --device cpu --sizes 10000 100000 1000000 10000000
    python benchmarks/sweep.py --device cuda --samplers kmas-triton kmas-cuda ultra-strict
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

EDGES_PER_ENTITY = 5
NUM_RELATIONS = 50
# the reference materialises about this many bytes per (row, entity); skip it beyond this budget
REFERENCE_BYTES_PER_CELL = 110
REFERENCE_BUDGET_BYTES = 16 * 2**30


def _setup(num_entities: int, batch: int, device: str, seed: int = 0):
    import torch

    from kmas_kernels import KGIndex
    from kmas_kernels.data import synthetic_typed_kg

    kg = synthetic_typed_kg(num_entities, num_relations=NUM_RELATIONS, num_types=20,
                            num_edges=EDGES_PER_ENTITY * num_entities, seed=seed)
    index = KGIndex.from_triples(kg.triples, num_entities=kg.num_entities, num_relations=kg.num_relations).to(device)
    g = torch.Generator().manual_seed(seed + 1)
    rows = kg.triples[torch.randint(kg.triples.shape[0], (batch,), generator=g)].to(device)
    z = torch.randn(index.num_relations, 64, generator=g).to(device)
    return kg, index, rows, z


def _sampler(name: str, kg, index, rows, z, k: int):
    """A zero-argument callable drawing k negatives for every row (seed varies per call)."""
    import torch

    from kmas_kernels import hard_negatives
    from kmas_kernels.core.philox import STREAM_UNIFORM
    from kmas_kernels.core.uniform import uniform_negatives

    head, rel, tail = rows.unbind(1)
    half = rows.shape[0] // 2
    # ULTRA's split: first half corrupts tails, second half heads (through the inverse relation)
    query = torch.cat([head[:half], tail[half:]])
    relation = torch.cat([rel[:half], index.inverse(rel[half:])])
    positive = torch.cat([tail[:half], head[half:]])
    calls = iter(range(1, 1 << 30))
    if name.startswith("kmas-"):
        backend = name.removeprefix("kmas-")
        return lambda: hard_negatives(index, query, relation, relation_embeddings=z, num_negatives=k,
                                      positive=positive, seed=next(calls), backend=backend)
    if name == "strict-rejection":
        return lambda: uniform_negatives(index, query, relation, positive, k, seed=next(calls), strict=True,
                                         stream=STREAM_UNIFORM)
    if name == "ultra-strict":  # the reference loop's copy of ULTRA's strict sampler (B x N masks)
        from kmas_ultra.tasks import negative_sampling

        h, r, t = kg.triples.to(rows.device).unbind(1)
        graph = types.SimpleNamespace(edge_index=torch.stack([torch.cat([h, t]), torch.cat([t, h])]),
                                      edge_type=torch.cat([r, r + kg.num_relations]), num_nodes=kg.num_entities)
        batch = torch.stack([head, tail, rel], dim=1)
        return lambda: negative_sampling(graph, batch, k, strict=True)  # (B, 1 + k, 3): ULTRA's layout
    raise ValueError(f"unknown sampler {name!r}")


def measure(name: str, num_entities: int, batch: int, k: int, repeats: int, device: str) -> dict:
    """One (sampler, N) point; run in a fresh process by main()."""
    import torch

    from _common import peak_rss, reset_peak_rss

    kg, index, rows, z = _setup(num_entities, batch, device)
    run = _sampler(name, kg, index, rows, z, k)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cuda":
        sync()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = reset_peak_rss()
    out = run()  # warm-up (compilation, autotuning, thread pools) counts toward peak memory
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = run()
        sync()
        times.append(time.perf_counter() - start)
    extra = (torch.cuda.max_memory_allocated() if device == "cuda" else peak_rss()) - before
    assert out.shape[0] == batch and out.shape[1] in (k, k + 1), out.shape
    return {
        "sampler": name,
        "num_entities": num_entities,
        "num_triples": int(kg.triples.shape[0]),
        "index_bytes": index.nbytes,
        "seconds_per_call": sorted(times)[len(times) // 2],
        "seconds_all": times,
        "extra_peak_bytes": int(extra),
        "memory_measure": "cuda max_memory_allocated" if device == "cuda" else "peak RSS (VmHWM)",
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    names = sorted({r["sampler"] for r in result["rows"] if "seconds_per_call" in r})
    for name in names:
        points = sorted((r["num_entities"], r["seconds_per_call"], r["extra_peak_bytes"]) for r in result["rows"]
                        if r.get("sampler") == name and "seconds_per_call" in r)
        n = [p[0] for p in points]
        axes[0].plot(n, [1e3 * p[1] for p in points], marker="o", label=name)
        axes[1].plot(n, [max(p[2], 1) / 2**20 for p in points], marker="o", label=name)
    device = result["machine"].get("device_name", result["machine"]["cpu"])
    p = result["parameters"]
    for ax, label in zip(axes, ("time per call (ms)", "extra peak memory (MiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("entities N")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"B={p['batch']}, k={p['negatives']}, {p['device']}: {device}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000, 10_000_000])
    parser.add_argument("--samplers", nargs="+", default=None, help="default: every available backend + baselines")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--negatives", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per (sampler, N) process")
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/sweep_<device>.json")
    args = parser.parse_args()

    from tqdm import tqdm

    from _common import machine_info, run_in_subprocess
    from kmas_kernels import available_backends

    samplers = args.samplers or [f"kmas-{name}" for name, why in available_backends().items()
                                 if why is None and (name != "cpu" or args.device == "cpu")] + ["strict-rejection", "ultra-strict"]
    out = args.out or HERE / "results" / f"sweep_{args.device}.json"
    rows = []
    for n in tqdm(args.sizes, desc="sizes"):
        for name in tqdm(samplers, desc=f"N={n}", leave=False):
            if name == "kmas-reference" and args.batch * n * REFERENCE_BYTES_PER_CELL > REFERENCE_BUDGET_BYTES:
                rows.append({"sampler": name, "num_entities": n, "skipped": "B x N keys exceed the memory budget"})
                continue
            call = f"measure({name!r}, {n}, {args.batch}, {args.negatives}, {args.repeats}, {args.device!r})"
            row = run_in_subprocess("sweep", call, args.timeout)
            rows.append({"sampler": name, "num_entities": n, **row})
            tqdm.write(json.dumps({k: v for k, v in rows[-1].items() if k != "seconds_all"}))
    result = {
        "machine": machine_info(args.device),
        "parameters": {"batch": args.batch, "negatives": args.negatives, "repeats": args.repeats, "device": args.device,
                       "edges_per_entity": EDGES_PER_ENTITY, "num_relations": NUM_RELATIONS},
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
