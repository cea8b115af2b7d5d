"""The floor a hard-negative kernel is judged against (docs/semantics.md §10), derived from measured rates.

For one problem (B rows, N entities, an index with T (entity, relation) pairs and S entities with
P > 0), the fused kernels must at least
  (1) read the index once: ent_ptr (8 (N + 1) B) + ent_rels (4 T B) + the weights (4 B R B),
      at the device's measured copy bandwidth;
  (2) score every (row, candidate) pair: B * S Philox draws, the Gumbel mapping (2 logs) and
      log P, at the measured rate of a kernel that does only that arithmetic.
floor = max(1, 2). A backend is "within 2x of the floor" when its measured time <= 2 * floor.
(Skipping RNG for candidates that cannot win makes (2) an upper bound on the arithmetic actually
needed; we keep it, as the conservative, simple floor.)

    python benchmarks/floor.py --device cuda --sizes 1000000 10000000 --samplers kmas-triton kmas-cuda

Writes benchmarks/results/floor_<device>.json: bandwidth, arithmetic rate, per N the two floors
and each sampler's time (kmas_bench.sweep, run in its own process) over the floor.
Under TRITON_INTERPRET=1 the arithmetic kernel runs on CPU tensors (for testing only).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover
    triton = None


if triton is not None:

    @triton.jit
    def _arithmetic_kernel(out_ptr, seed, num_entities, BLOCK: tl.constexpr):
        """Per (row, entity): Philox draw, Gumbel mapping, log P, a running max. Nothing else.

        Grid (rows, splits): program (row, s) walks the s-th contiguous range of entities and
        writes its max to out[row * splits + s], so a grid that fills the GPU measures its rate."""
        row = tl.program_id(0)
        split = tl.program_id(1)
        splits = tl.num_programs(1)
        chunk = (num_entities + splits - 1) // splits
        stop = tl.minimum((split + 1) * chunk, num_entities)
        best = tl.full((BLOCK,), float("-inf"), tl.float32)
        start = split * chunk
        while start < stop:
            ent = (start + tl.arange(0, BLOCK)).to(tl.int64)
            x = tl.randint(seed, (row.to(tl.int64) << 32) | ent)
            v = tl.minimum(((x.to(tl.int64) & 0xFFFFFFFF).to(tl.float32) + 1.0) * 2.3283064365386963e-10, 0.99999994)
            u = 1.0 - v
            expo = tl.where(u == 1.0, v, v * tl.math.div_rn(tl.log(u), tl.where(u == 1.0, -1.0, u - 1.0)))
            p = (ent + 1).to(tl.float32)  # a stand-in P: one log like the real key
            key = tl.log(p) - tl.log(expo)
            best = tl.maximum(best, tl.where(ent < stop, key, float("-inf")))
            start += BLOCK
        tl.store(out_ptr + row * splits + split, tl.max(best, axis=0))


def _timed(fn, sync, repeats: int) -> float:
    fn()
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - start) / repeats


def copy_bandwidth(device: str, nbytes: int = 1 << 30, repeats: int = 5) -> float:
    """Bytes per second moved by a device-to-device copy (read + write counted)."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return 2 * nbytes / _timed(lambda: dst.copy_(src), sync, repeats)


def fill_splits(device: str, rows: int, programs_per_sm: int = 8) -> int:
    """Programs per row so that rows * splits >= programs_per_sm * SMs (1 off CUDA): a floor
    measured on a half-empty GPU (64 programs on 132 SMs) would be too lenient."""
    if device != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count
    return max(1, -(-programs_per_sm * sms // rows))


def arithmetic_rate(device: str, rows: int = 64, entities: int = 1 << 22, repeats: int = 5, splits: int | None = None) -> float:
    """(row, candidate) pairs per second of the draw + Gumbel + log P arithmetic alone, on a grid
    of rows x splits programs that fills the GPU (``fill_splits``)."""
    splits = fill_splits(device, rows) if splits is None else splits
    out = torch.empty(rows * splits, dtype=torch.float32, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    seconds = _timed(lambda: _arithmetic_kernel[(rows, splits)](out, 12345, entities, BLOCK=1024), sync, repeats)
    return rows * entities / seconds


def floors(index, batch: int, bandwidth: float, rate: float) -> dict:
    """The two floors (seconds) for a problem on ``index`` with ``batch`` rows."""
    support = int((index.ent_ptr[1:] > index.ent_ptr[:-1]).sum())
    index_bytes = 8 * (index.num_entities + 1) + 4 * index.ent_rels.numel() + 4 * batch * index.num_relations
    return {
        "index_bytes": index_bytes,
        "support": support,
        "bytes_floor_s": index_bytes / bandwidth,
        "arithmetic_floor_s": batch * support / rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--samplers", nargs="+", default=["kmas-triton", "kmas-cuda"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--negatives", type=int, default=512)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--rates-only", action="store_true",
                        help="measure bandwidth and arithmetic rate only (no graphs, no sampler runs); gpu_check uses this "
                             "and derives the floors next to its own kernel timings")
    args = parser.parse_args()
    from kmas_bench.graphs import load_graph
    from kmas_bench.measure import machine_info
    from kmas_bench.samplers import make_problem
    from kmas_bench.sweep import run_point
    from kmas_kernels.core.files import atomic_write_json

    bandwidth = copy_bandwidth(args.device)
    rate = arithmetic_rate(args.device)
    out = args.out or HERE / "results" / f"floor_{args.device}.json"
    rows = []
    if args.rates_only:
        grid = [64, fill_splits(args.device, 64)]
        atomic_write_json({"machine": machine_info(args.device), "copy_bandwidth_bytes_per_s": bandwidth,
                           "arithmetic_pairs_per_s": rate, "arithmetic_grid": grid}, out, default=str)
        print(f"bandwidth {bandwidth / 1e9:.1f} GB/s, arithmetic {rate / 1e9:.2f} G pairs/s on grid {grid}; wrote {out}")
        return

    def write() -> None:  # after every size, atomically: a run cut short keeps what it measured
        result = {"machine": machine_info(args.device), "copy_bandwidth_bytes_per_s": bandwidth,
                  "arithmetic_pairs_per_s": rate, "parameters": vars(args) | {"out": str(args.out)}, "rows": rows}
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(result, out, default=str)

    for n in args.sizes:
        graph = load_graph(n)  # the sweep's graph for this N
        index = make_problem(graph.train, graph.num_entities, graph.num_base_relations, args.batch, args.device).index
        row = {"num_entities": n, **floors(index, args.batch, bandwidth, rate)}
        row["floor_s"] = max(row["bytes_floor_s"], row["arithmetic_floor_s"])
        for name in args.samplers:
            measured = run_point(name, n, batch=args.batch, k=args.negatives, repeats=5, device=args.device)
            if "seconds_per_call" in measured:
                row[name] = {"seconds_per_call": measured["seconds_per_call"], "over_floor": measured["seconds_per_call"] / row["floor_s"]}
            else:
                row[name] = measured
        rows.append(row)
        print(json.dumps(row), flush=True)
        write()
        del index
    write()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
