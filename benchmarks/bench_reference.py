"""Baseline figures of the foundation, on this machine's CPU:

- the reference backend's time per call and extra peak memory at B = 64, k = 512, N = 10^5, 10^6,
  next to ULTRA-semantics strict random negatives (our O(B·k) rejection sampler) on the same graph;
- the time to build a KGIndex from 10^7 triples.

Every measurement runs in its own process (peak RSS is per process). Writes
benchmarks/results/reference_cpu.json.

    python benchmarks/bench_reference.py [--sizes 100000 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _graph(num_entities: int, edges_per_entity: int, seed: int = 0):
    from kmas_kernels import KGIndex
    from kmas_kernels.data import synthetic_typed_kg

    kg = synthetic_typed_kg(num_entities, num_relations=50, num_types=20, num_edges=edges_per_entity * num_entities, seed=seed)
    return kg, KGIndex.from_triples(kg.triples, num_entities=kg.num_entities, num_relations=kg.num_relations)


def measure_sampler(sampler: str, num_entities: int, batch: int, k: int, repeats: int) -> dict:
    import torch

    from _machine import peak_rss, reset_peak_rss
    from kmas_kernels import hard_negatives
    from kmas_kernels.core.philox import STREAM_UNIFORM
    from kmas_kernels.core.problem import prepare_problem
    from kmas_kernels.core.uniform import uniform_negatives

    kg, index = _graph(num_entities, edges_per_entity=10)
    g = torch.Generator().manual_seed(1)
    rows = kg.triples[torch.randint(kg.triples.shape[0], (batch,), generator=g)]
    head, rel, tail = rows.unbind(1)
    z = torch.randn(index.num_relations, 64, generator=g)

    if sampler == "reference":
        run = lambda seed: hard_negatives(  # noqa: E731
            index, head, rel, relation_embeddings=z, num_negatives=k, positive=tail, seed=seed, backend="reference"
        )
    else:  # ULTRA semantics: strict, with replacement, by rejection
        def run(seed):
            problem = prepare_problem(index, head, rel, num_negatives=1, positive=tail, seed=seed)
            return uniform_negatives(index, head, rel, problem.positive, k, seed=seed, strict=True, stream=STREAM_UNIFORM)

    run(0)  # warm-up
    rss_before = reset_peak_rss()
    times = []
    for seed in range(1, repeats + 1):
        start = time.perf_counter()
        out = run(seed)
        times.append(time.perf_counter() - start)
    assert out.shape == (batch, k)
    return {
        "sampler": sampler,
        "num_entities": num_entities,
        "num_triples": int(kg.triples.shape[0]),
        "batch": batch,
        "num_negatives": k,
        "seconds_per_call": sorted(times)[len(times) // 2],
        "seconds_all": times,
        "extra_peak_rss_bytes": peak_rss() - rss_before,
    }


def measure_index_build(num_triples: int) -> dict:
    import torch

    from kmas_kernels import KGIndex
    from kmas_kernels.data import synthetic_typed_kg

    num_entities = num_triples // 10
    kg = synthetic_typed_kg(num_entities, num_relations=200, num_types=50, num_edges=num_triples, seed=0)
    start = time.perf_counter()
    index = KGIndex.from_triples(kg.triples, num_entities=kg.num_entities, num_relations=kg.num_relations)
    seconds = time.perf_counter() - start
    return {
        "num_triples": int(kg.triples.shape[0]),
        "num_entities": num_entities,
        "num_directed_edges": index.num_edges,
        "index_nbytes": index.nbytes,
        "seconds": seconds,
        "torch_threads": torch.get_num_threads(),
    }


def _in_subprocess(call: str) -> dict:
    code = f"import sys, json; sys.path.insert(0, {str(HERE)!r}); import bench_reference as b; print(json.dumps(b.{call}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--negatives", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--index-triples", type=int, default=10_000_000)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "reference_cpu.json")
    args = parser.parse_args()

    from tqdm import tqdm

    from _machine import machine_info

    jobs = [(s, n) for n in args.sizes for s in ("reference", "strict_random")]
    rows = []
    for sampler, n in tqdm(jobs, desc="samplers x sizes"):
        rows.append(_in_subprocess(f"measure_sampler({sampler!r}, {n}, {args.batch}, {args.negatives}, {args.repeats})"))
        tqdm.write(json.dumps({k: v for k, v in rows[-1].items() if k != "seconds_all"}))
    build = _in_subprocess(f"measure_index_build({args.index_triples})")
    print(json.dumps(build))
    result = {"machine": machine_info("cpu"), "samplers": rows, "index_build": build}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
