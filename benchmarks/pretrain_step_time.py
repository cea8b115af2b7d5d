"""Seconds per pre-training step of the study's model on each training graph (budgeting kmas-pretrain).

One fresh ULTRA (ultra_3g's shape, 64 dims x 6 layers unless told), strict random negatives,
B = 16, k = 64, 3 steps per graph, one torch thread; writes benchmarks/results/pretrain_step_time.json.
The machine's load is recorded: on a shared machine the figures are upper bounds.

    KMAS_SHARED=../shared python benchmarks/pretrain_step_time.py [--dim 64] [--steps 3]
"""

import argparse
import json
import os
import time
from pathlib import Path

import torch

from kmas_bench.measure import machine_info
from kmas_bench.pretrain_cli import data_root, study_file
from kmas_ultra import Ultra, load_transductive, triples_of
from kmas_ultra.tasks import negative_sampling, self_adversarial_bce


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--negatives", type=int, default=64)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pretrain_step_time.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    root = data_root()
    graphs = json.loads(study_file().read_text())["train_graphs"]
    result = {"parameters": vars(args) | {"out": str(args.out)}, "per_graph": {}}
    for name in graphs:
        data = load_transductive(root / name).train
        triples = triples_of(data)
        model = Ultra(dim=args.dim, num_layers=args.layers)
        optimizer = torch.optim.AdamW(model.parameters(), 5e-4)
        seconds = []
        for _ in range(args.steps):
            start = time.perf_counter()
            batch = negative_sampling(data, triples[torch.randperm(len(triples))[: args.batch]], args.negatives)
            self_adversarial_bce(model(data, batch)).backward()
            optimizer.step()
            optimizer.zero_grad()
            seconds.append(time.perf_counter() - start)
        result["per_graph"][name] = {"edges_with_inverses": data.num_edges, "seconds_per_step": seconds}
        print(name, result["per_graph"][name], flush=True)
    result["machine"] = machine_info("cpu") | {"load_average_1min_end": os.getloadavg()[0]}
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
