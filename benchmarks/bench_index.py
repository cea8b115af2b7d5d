"""Time to build a KGIndex from triples (goal, docs/semantics.md §10: seconds, not minutes, for 10^7 edges).

    python benchmarks/bench_index.py [--triples 10000000]

Writes benchmarks/results/index_build_cpu.json. The synthetic graph is generated first and not
timed; only ``KGIndex.from_triples`` (inverse edges added, so 2x directed edges) is.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def measure(num_triples: int, repeats: int) -> dict:
    import torch

    from kmas_kernels import KGIndex
    from kmas_kernels.data import synthetic_typed_kg

    kg = synthetic_typed_kg(num_triples // 10, num_relations=200, num_types=50, num_edges=num_triples, seed=0)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        index = KGIndex.from_triples(kg.triples, num_entities=kg.num_entities, num_relations=kg.num_relations)
        times.append(time.perf_counter() - start)
    return {
        "num_triples": int(kg.triples.shape[0]),
        "num_entities": kg.num_entities,
        "num_directed_edges": index.num_edges,
        "index_bytes": index.nbytes,
        "seconds": min(times),
        "seconds_all": times,
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triples", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "index_build_cpu.json")
    args = parser.parse_args()
    from kmas_bench.measure import machine_info
    from kmas_kernels.core.files import atomic_write_json

    result = {"machine": machine_info("cpu"), "index_build": measure(args.triples, args.repeats)}
    print(json.dumps(result["index_build"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(result, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
