"""int64 tl.topk and tl.bitonic_merge against torch: the two primitives the Triton top-k kernel's
streaming buffer rests on (kmas_kernels/backends/triton_topk.py), checked on the device at hand.

    python benchmarks/triton_sanity.py [--device cuda] [--out FILE.json]

Keys are random int64 over the whole range (negatives, int64 min/max, duplicates), as the packed
(key, id) values are. Per case: tl.topk(x, K) (values, descending) equals torch.topk; and with
an ascending buffer `buf` and a descending `t`, tl.bitonic_merge(max(buf, t), ascending) equals
the K largest of both, sorted ascending. On CPU tensors it needs TRITON_INTERPRET=1. Exit code 1
on any mismatch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import torch
import triton
import triton.language as tl

from kmas_kernels.core.files import atomic_write_json


@triton.jit
def _topk_merge_kernel(x_ptr, buf_ptr, topk_ptr, merged_ptr, N: tl.constexpr, K: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    x = tl.load(x_ptr + row * N + tl.arange(0, N))
    best = tl.topk(x, K)  # K largest, descending
    tl.store(topk_ptr + row * K + tl.arange(0, K), best)
    buf = tl.load(buf_ptr + row * K + tl.arange(0, K))  # ascending
    merged = tl.bitonic_merge(tl.maximum(buf, best), descending=False)
    tl.store(merged_ptr + row * K + tl.arange(0, K), merged)


def run(device: str, cases=((4, 64, 8), (3, 256, 64), (2, 1024, 512), (2, 1024, 1024), (1, 2048, 2)), seed: int = 0) -> list:
    g = torch.Generator().manual_seed(seed)
    info = torch.iinfo(torch.int64)
    results = []
    for rows, n, k in cases:
        x = torch.randint(info.min, info.max, (rows, n), generator=g, dtype=torch.int64)
        x[:, : n // 8] = x[:, n // 8 : n // 4]  # duplicates
        x[0, 0], x[0, 1] = info.min, info.max
        buf = torch.sort(torch.randint(info.min, info.max, (rows, k), generator=g, dtype=torch.int64), dim=1).values
        buf[:, :1] = info.min  # empty slots, as the kernel's
        x, buf = x.to(device), buf.to(device)
        topk = torch.empty(rows, k, dtype=torch.int64, device=device)
        merged = torch.empty_like(topk)
        _topk_merge_kernel[(rows,)](x, buf, topk, merged, N=n, K=k)
        expected_topk = torch.topk(x, k, dim=1).values
        expected_merged = torch.sort(torch.topk(torch.cat([x, buf], 1), k, dim=1).values, dim=1).values
        ok_topk = torch.equal(topk, expected_topk)
        ok_merge = torch.equal(merged, expected_merged)
        results.append({"rows": rows, "n": n, "k": k, "topk_equal": ok_topk, "bitonic_merge_equal": ok_merge})
        print(json.dumps(results[-1]), flush=True)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        sys.exit("CPU tensors need TRITON_INTERPRET=1")
    cases = None if args.device == "cuda" else ((2, 64, 8), (1, 256, 64), (1, 128, 128))
    results = run(args.device) if cases is None else run(args.device, cases)
    ok = all(r["topk_equal"] and r["bitonic_merge_equal"] for r in results)
    if args.out:
        payload = {"machine": platform.node(), "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu (interpreter)",
                   "triton": triton.__version__, "torch": torch.__version__, "ok": ok, "cases": results}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(payload, args.out, indent=1)
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
