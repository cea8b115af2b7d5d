"""Kernel timing on one GPU, in ONE process: both top-k kernels and the end-to-end call.

    python benchmarks/gpu_timing.py --out timing.json [--sizes 100000 1000000 10000000] [--batch 64] [--k 512]

Per N: the synthetic typed KG of kmas_bench (50 relations, 20 types, 5 N edges) built ON THE GPU
(``synthetic_typed_kg(device=)``: no 10-s CPU build per process), its index, B training triples as
queries (strict), random (R, 64) relation embeddings. Warm-up first with the seed class training
uses (per-step ``mix_seed`` seeds, t = 1; ``triton_topk.warm_up``), then CUDA-event timings, each
repetition with the next step's seed:

    triton_kernel   the Triton kernel launch alone (its (B,) threshold reset included: the kernel
                    keeps state there), on the arguments ``triton_top_k`` builds
    triton_call     ``triton_top_k`` (arguments, kernel, host-side merge of the splits)
    cuda_call       the CUDA extension (``native_cuda_top_k``: scratch, kernels, merge)
    e2e_<backend>   ``hard_negatives(...)`` (weights from embeddings, problem, kernel, fill)

At the largest N, the Triton kernel also over a sweep of splits (programs per row) around the
default rule. The JSON is rewritten (atomically) after every measurement: a run cut short keeps
what it measured. Times in milliseconds: median, min and all repetitions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cuda_events_ms(fn, repeats: int, before=None) -> list[float]:
    """Milliseconds of ``fn()`` per repetition, CUDA events on the current stream; ``before(i)``
    runs untimed before repetition i (e.g. the next seed)."""
    out = []
    for i in range(repeats):
        if before is not None:
            before(i)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        out.append(start.elapsed_time(end))
    return out


def summary(times: list[float]) -> dict:
    return {"median_ms": statistics.median(times), "min_ms": min(times), "all_ms": [round(t, 4) for t in times]}


def build(n: int, device: torch.device, batch: int, seed: int = 0):
    """(index, query_entity, query_relation, positive, embeddings, info) for N = n on ``device``."""
    from kmas_kernels import KGIndex
    from kmas_kernels.data import synthetic_typed_kg

    t0 = time.perf_counter()
    kg = synthetic_typed_kg(n, 50, min(20, n), max(5 * n, 50), seed=seed, device=device)
    ds = kg.split(seed=seed)
    torch.cuda.synchronize(device)
    t1 = time.perf_counter()
    try:
        index = KGIndex.from_triples(ds.train, num_entities=n, num_relations=50)
        where = "gpu"
    except Exception as exc:  # an index path that cannot run on the device: build on CPU, move
        index = KGIndex.from_triples(ds.train.cpu(), num_entities=n, num_relations=50).to(device)
        where = f"cpu ({type(exc).__name__}: {exc})"[:300]
    torch.cuda.synchronize(device)
    t2 = time.perf_counter()
    g = torch.Generator(device=device).manual_seed(seed + 1)
    rows = ds.train[torch.randint(ds.train.shape[0], (batch,), generator=g, device=device)]
    embeddings = torch.randn(index.num_relations, 64, generator=g, device=device)
    info = {"num_entities": n, "num_edges": int(kg.triples.shape[0]), "graph_build_s": round(t1 - t0, 3),
            "index_build_s": round(t2 - t1, 3), "index_built_on": where}
    return index, rows[:, 0], rows[:, 1], rows[:, 2], embeddings, info


def measure_size(n: int, args, device, record) -> None:
    from kmas_kernels import hard_negatives
    from kmas_kernels.backends import available_backends, triton_topk
    from kmas_kernels.backends.native import native_cuda_top_k
    from kmas_kernels.core.philox import mix_seed
    from kmas_kernels.core.problem import prepare_problem

    index, q, r, pos, z, info = build(n, device, args.batch)
    record(n, "graph", info)
    seeds = [mix_seed(args.seed, step) for step in range(args.repeats + 1)]
    state = {"problem": None}

    def problem_for(i: int):
        state["problem"] = prepare_problem(index, q, r, num_negatives=args.k, positive=pos, seed=seeds[i], relation_embeddings=z)
        return state["problem"]

    backends = available_backends()
    t0 = time.perf_counter()
    triton_topk.warm_up(device, k_values=[args.k])  # the variant training uses (per-step seed, t = 1)
    record(n, "warm_up_s", round(time.perf_counter() - t0, 3))
    problem_for(0)
    repeats = args.repeats if n < 10_000_000 else max(3, args.repeats // 2)

    def triton_kernel(splits=None):
        grid, kargs, meta = triton_topk.launch_arguments(state["problem"], splits=splits)
        thr = kargs[7]

        def run():
            thr.fill_(triton_topk._EMPTY_KEY)
            triton_topk._hard_negative_topk_kernel[grid](*kargs, **meta)
        return run, grid

    cases = {}
    if backends.get("triton") is None:
        cases["triton_kernel"] = None
        cases["triton_call"] = lambda: triton_topk.triton_top_k(state["problem"])
        cases["e2e_triton"] = lambda: hard_negatives(index, q, r, relation_embeddings=z, num_negatives=args.k, positive=pos,
                                                     seed=state["problem"].seed, backend="triton")
    if backends.get("cuda") is None:
        cases["cuda_call"] = lambda: native_cuda_top_k(state["problem"])
        cases["e2e_cuda"] = lambda: hard_negatives(index, q, r, relation_embeddings=z, num_negatives=args.k, positive=pos,
                                                   seed=state["problem"].seed, backend="cuda")
    cases["e2e_auto"] = lambda: hard_negatives(index, q, r, relation_embeddings=z, num_negatives=args.k, positive=pos,
                                               seed=state["problem"].seed, backend="auto")
    for name, fn in cases.items():
        try:
            if name == "triton_kernel":
                # the launch's arguments are built per seed, outside the timed region
                holder = {}

                def before(i):
                    problem_for(i + 1)
                    holder["run"], holder["grid"] = triton_kernel()
                before(-1)
                holder["run"]()  # warm (compiled by warm_up already)
                times = cuda_events_ms(lambda: holder["run"](), repeats, before)
                record(n, name, {**summary(times), "grid": list(holder["grid"])})
            else:
                fn()  # warm
                times = cuda_events_ms(fn, repeats, lambda i: problem_for(i + 1))
                record(n, name, summary(times))
        except Exception as exc:
            record(n, name, {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-1500:]})
    if n == max(args.sizes) and backends.get("triton") is None:
        sweep = {}
        for splits in args.splits:
            try:
                run, grid = triton_kernel(splits)
                run()  # same compiled variant: the split count is a grid size, not a specialisation
                sweep[str(splits)] = {**summary(cuda_events_ms(run, max(3, repeats // 2))), "grid": list(grid)}
            except Exception as exc:
                sweep[str(splits)] = {"error": f"{type(exc).__name__}: {exc}"}
            record(n, "triton_kernel_splits", sweep)
    del index


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--k", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--splits", type=int, nargs="+", default=[1, 2, 4, 5, 8, 16, 32, 64])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_timing: no CUDA device", file=sys.stderr)
        return 2
    from kmas_kernels.core.files import atomic_write_json

    device = torch.device("cuda", torch.cuda.current_device())
    props = torch.cuda.get_device_properties(device)
    result = {"device": props.name, "sms": props.multi_processor_count, "torch": torch.__version__,
              "parameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "sizes": {}}
    try:
        import triton

        result["triton"] = triton.__version__
    except ImportError:
        result["triton"] = None

    def record(n: int, name: str, value) -> None:
        result["sizes"].setdefault(str(n), {})[name] = value
        atomic_write_json(result, args.out, indent=1)
        print(f"N={n} {name}: {value if not isinstance(value, dict) else {k: v for k, v in value.items() if k != 'all_ms'}}", flush=True)

    failed = False
    with torch.cuda.device(device):
        for n in args.sizes:
            try:
                measure_size(n, args, device, record)
            except Exception as exc:
                failed = True
                record(n, "error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}")
            torch.cuda.empty_cache()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
