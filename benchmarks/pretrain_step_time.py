"""Seconds per pre-training step of the study's model on each training graph (budgeting kmas-pretrain).

One fresh ULTRA (ultra_3g's shape, 64 dims x 6 layers unless told; the fused message passing that
kmas_ultra uses by default), strict random negatives, B = 16, k = 64; per training graph, one
warm-up step then ``--steps`` timed steps at each torch thread count of ``--threads`` (side by side,
same graph, fresh model each). Writes benchmarks/results/pretrain_step_time.json atomically, with
the machine's load average before and after: on a shared machine the figures are upper bounds.

    KMAS_SHARED=../shared python benchmarks/pretrain_step_time.py [--dim 64] [--steps 3] [--threads 1 2]
"""

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from kmas_bench.measure import machine_info
from kmas_bench.locations import data_root, study_file
from kmas_kernels.core.files import atomic_write_json
from kmas_ultra import Ultra, load_transductive, triples_of
from kmas_ultra.tasks import negative_sampling, self_adversarial_bce


def time_steps(data, triples, args, threads: int) -> list[float]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = Ultra(dim=args.dim, num_layers=args.layers)
    optimizer = torch.optim.AdamW(model.parameters(), 5e-4)
    seconds = []
    for _ in range(1 + args.steps):  # the first step (CSR caches, allocator) is not counted
        start = time.perf_counter()
        batch = negative_sampling(data, triples[torch.randperm(len(triples))[: args.batch]], args.negatives)
        self_adversarial_bce(model(data, batch)).backward()
        optimizer.step()
        optimizer.zero_grad()
        seconds.append(time.perf_counter() - start)
    return seconds[1:]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--negatives", type=int, default=64)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pretrain_step_time.json")
    args = p.parse_args()
    root = data_root()
    study = json.loads(study_file().read_text())
    graphs = study["train_graphs"]
    load_start = os.getloadavg()[0]
    result = {"parameters": {k: v for k, v in vars(args).items() if k != "out"} | {"sampler": "strict", "message_passing": "fused (rspmm)"},
              "per_graph": {}}
    for name in graphs:
        data = load_transductive(root / name).train
        triples = triples_of(data)
        row = {"training_triples": int(triples.shape[0]), "edges_with_inverses": int(data.num_edges)}
        for threads in args.threads:
            seconds = time_steps(data, triples, args, threads)
            row[f"threads_{threads}"] = {"seconds_per_step": seconds, "median": statistics.median(seconds)}
        result["per_graph"][name] = row
        print(name, json.dumps(row), flush=True)
    # the expected step: graphs chosen with probability proportional to their training triples (as the runner)
    total = sum(r["training_triples"] for r in result["per_graph"].values())
    result["expected_seconds_per_step"] = {
        f"threads_{t}": sum(r["training_triples"] / total * r[f"threads_{t}"]["median"] for r in result["per_graph"].values())
        for t in args.threads}
    result["machine"] = machine_info("cpu") | {"load_average_1min_start": load_start, "load_average_1min_end": os.getloadavg()[0]}
    atomic_write_json(result, args.out)
    print(json.dumps(result["expected_seconds_per_step"]))


if __name__ == "__main__":
    main()
