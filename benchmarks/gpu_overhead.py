"""Mining's share of a training step on the GPU, each mode in its own process, JSON after each mode.

    python benchmarks/gpu_overhead.py --out overhead.json [--entities 10000] [--batch 64] [--k 512] [--steps 10]

Runs ``kmas_bench.overhead.measure_step`` (ULTRA step: sampler, forward, self-adversarial BCE,
backward, AdamW) for ULTRA's strict random sampler and for the KMAS drop-in, at ULTRA's B = 64,
k = 512. Per mode: the median mining seconds, the median step seconds, the median of the per-step
mining shares and the share of the sums. The JSON is rewritten atomically after each mode.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "python")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--k", type=int, default=512)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from kmas_bench.measure import run_isolated
    from kmas_bench.overhead import MODES
    from kmas_kernels.core.files import atomic_write_json

    result = {"parameters": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "modes": {}}
    for mode in MODES:
        kwargs = dict(mode=mode, num_entities=args.entities, batch=args.batch, k=args.k, steps=args.steps, device=args.device)
        row = run_isolated("kmas_bench.overhead:measure_step", kwargs, args.timeout)
        result["modes"][mode] = row
        atomic_write_json(result, args.out, indent=1, default=str)
        brief = {k: row.get(k) for k in ("mining_seconds", "step_seconds", "mining_share_median", "mining_share", "error")}
        print(mode, brief, flush=True)
    return 0 if all("error" not in r for r in result["modes"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
