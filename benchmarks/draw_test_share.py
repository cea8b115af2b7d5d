"""How many candidates still pay the two Gumbel logs with the log-free draw test (CPU emulation).

Emulates, on CPU tensors, the scan of one program of the Triton kernel per row (splits = 1, tiles
of BLOCK_N entities, the row's threshold = the K_PAD-th best packed key so far, updated per tile)
and of one CUDA select block (threads of 256 entities, threshold updated only when its buffer of
next_pow2(k + 256) keys compacts), with the same skip tests as the kernels
(kmas_core.h: score_probability; triton_topk.py):

  candidate : P > 0 and not the positive
  rng       : ... and log P + GUMBEL_BOUND >= threshold (else no Philox draw)
  logs      : ... and the raw draw v = (x + 1) 2^-32 <= P e^-T (1 + 1e-3)  (else no log)
  enter     : ... and the packed key beats the threshold (then the exclusion search)

"logs without the draw test" = rng (what both kernels paid before). The kernels skip the logs per
SIMD group (a Triton tile of BLOCK_N entities, a CUDA warp of 32), so the share of groups with a
draw that still contain a log-paying candidate is reported too (groups_logs / groups_rng). The emulation's selection is
checked against reference_top_k (the tests only skip, never change a key). Shares are of the
candidates. One-hot weights (ULTRA's default: the query relation's tails) and softmax weights over
relation embeddings (temperature 0.1), synthetic typed KG.

    python benchmarks/draw_test_share.py [--entities 200000] [--negatives 512] [--batch 16]

Writes benchmarks/results/draw_test_share.json (atomically).
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch

from kmas_kernels import KGIndex
from kmas_kernels.core.files import atomic_write_json
from kmas_kernels.core.philox import GUMBEL_MAX, random_uint32
from kmas_kernels.core.problem import prepare_problem
from kmas_kernels.core.reference import candidate_keys, candidate_probability, reference_top_k
from kmas_kernels.data.synthetic import synthetic_typed_kg

HERE = Path(__file__).resolve().parent
EMPTY = -(1 << 63)
GUMBEL_BOUND = GUMBEL_MAX + 1e-3


def _ordered(x: torch.Tensor) -> torch.Tensor:
    bits = x.to(torch.float32).view(torch.int32).to(torch.int64)
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # order-preserving, as int64


def _value(packed: int) -> float:
    o = packed >> 32
    bits = o ^ 0x7FFFFFFF if o < 0 else o
    return float(torch.tensor([bits], dtype=torch.int64).to(torch.int32).view(torch.float32)[0])


def _draw_scale(thr: int) -> float:
    if thr == EMPTY:
        return float("inf")
    value = _value(thr)
    if not value < 80.0:
        return float("inf")
    return float(torch.exp(torch.tensor(-value, dtype=torch.float32)) * torch.tensor(1.001, dtype=torch.float32))


def emulate_row(p, keys, x, positive, k: int, tile: int, scheme: str) -> tuple[dict, list]:
    """Counts of one row's scan and its selected ids (descending). p, keys: (N,) float32 (keys
    -inf where excluded), x: (N,) Philox words. scheme: "triton" (threshold per tile) or "cuda"
    (threshold at buffer compaction)."""
    n = p.numel()
    ent = torch.arange(n)
    packed_all = (_ordered(keys) << 32) | (4294967295 - ent)
    log_p = torch.log(torch.where(p > 0, p, torch.ones_like(p)))
    upper_all = _ordered(log_p + torch.tensor(GUMBEL_BOUND, dtype=torch.float32))
    v_all = (x.to(torch.float32) + 1.0) * 2.3283064365386963e-10
    k_pad = max(2, 1 << (k - 1).bit_length())
    keep = k_pad if scheme == "triton" else k
    cap = 1 << (k + 256 - 1).bit_length()
    buf = torch.empty(0, dtype=torch.int64)
    pending = 0  # cuda: keys appended since the last compaction
    thr = EMPTY
    counts = dict(candidates=0, rng=0, logs=0, enter=0, groups_rng=0, groups_logs=0)
    for lo in range(0, n, tile):
        sl = slice(lo, min(n, lo + tile))
        cand = (p[sl] > 0) & (ent[sl] != positive)
        need = cand & (upper_all[sl] >= (thr >> 32))
        counts["candidates"] += int(cand.sum())
        counts["rng"] += int(need.sum())
        logs = need & ~(v_all[sl] > p[sl] * _draw_scale(thr))
        counts["logs"] += int(logs.sum())
        # the kernels skip logs per SIMD group only: a Triton tile, a CUDA warp of 32 entities
        group = tile if scheme == "triton" else 32
        pad = (-logs.numel()) % group
        as_groups = lambda m: torch.cat([m, m.new_zeros(pad)]).view(-1, group).any(1)  # noqa: E731
        counts["groups_rng"] += int(as_groups(need).sum())
        counts["groups_logs"] += int(as_groups(logs).sum())
        packed = torch.where(logs, packed_all[sl], torch.full_like(packed_all[sl], EMPTY))
        enter = packed > thr
        counts["enter"] += int(enter.sum())
        packed = packed[enter & torch.isfinite(keys[sl])]  # the exclusion search drops known answers
        buf = torch.cat([buf, packed])
        if scheme == "triton":
            buf = torch.topk(buf, min(keep, buf.numel())).values
            if buf.numel() == keep:
                thr = max(thr, int(buf[-1]))
        else:
            pending = buf.numel()
            if pending + 256 > cap or lo + tile >= n:
                buf = torch.topk(buf, min(keep, buf.numel())).values
                if buf.numel() == keep:
                    thr = max(thr, int(buf[-1]))
    top = torch.sort(buf, descending=True).values[:k]
    return counts, (4294967295 - (top & 0xFFFFFFFF)).tolist()


def measure(index: KGIndex, q, r, a, *, k: int, weights: str, seed: int, tile: int, check: bool = True) -> dict:
    kwargs = {}
    if weights == "softmax":
        g = torch.Generator().manual_seed(seed)
        kwargs["relation_embeddings"] = torch.randn(index.num_relations, 32, generator=g)
    problem = prepare_problem(index, q, r, num_negatives=k, positive=a, seed=seed, **kwargs)
    p = candidate_probability(problem)
    keys = candidate_keys(problem)
    reference = reference_top_k(problem) if check else None
    ent = torch.arange(index.num_entities)
    totals = {s: dict(candidates=0, rng=0, logs=0, enter=0, groups_rng=0, groups_logs=0) for s in ("triton", "cuda")}
    for b in range(problem.batch_size):
        x = random_uint32(problem.seed, torch.tensor(b), ent)
        for scheme, t in (("triton", tile), ("cuda", 256)):
            counts, ids = emulate_row(p[b], keys[b], x, int(problem.positive[b]), k, t, scheme)
            for name, value in counts.items():
                totals[scheme][name] += value
            if check:
                expected = [i for i in reference[b].tolist() if i >= 0]
                assert ids == expected, f"row {b} ({scheme}): the emulated scan changed the selection"
    out = {}
    for scheme, c in totals.items():
        cand = max(1, c["candidates"])
        out[scheme] = dict(c, rng_share=c["rng"] / cand, logs_share=c["logs"] / cand, enter_share=c["enter"] / cand,
                           group_logs_share=c["groups_logs"] / max(1, c["groups_rng"]))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=200_000)
    parser.add_argument("--relations", type=int, default=20)
    parser.add_argument("--negatives", type=int, default=512)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--tile", type=int, default=512, help="Triton BLOCK_N (LAUNCH_CONFIGS for K_PAD 512)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "draw_test_share.json")
    args = parser.parse_args(argv)
    kg = synthetic_typed_kg(num_entities=args.entities, num_relations=args.relations, seed=args.seed)
    index = KGIndex.from_triples(kg.triples, num_entities=args.entities, num_relations=args.relations)
    g = torch.Generator().manual_seed(args.seed + 1)
    pick = torch.randint(kg.triples.shape[0], (args.batch,), generator=g)
    h, r, t = kg.triples[pick].unbind(1)
    result = {
        "what": "share of candidates (P > 0, not the positive) that pay a Philox draw (rng) and the two Gumbel logs (logs, with the draw test; without it every rng candidate pays them), emulated scans",
        "machine": platform.node(), "device": "cpu (emulation)", "python": platform.python_version(), "torch": torch.__version__,
        "entities": args.entities, "relations": args.relations, "edges": int(kg.triples.shape[0]), "negatives": args.negatives,
        "batch": args.batch, "triton_tile": args.tile, "seed": args.seed, "weights": {},
    }
    for weights in ("one_hot", "softmax"):
        result["weights"][weights] = measure(index, h, r, t, k=args.negatives, weights=weights, seed=args.seed, tile=args.tile)
        for scheme, c in result["weights"][weights].items():
            print(f"{weights:8s} {scheme:6s} candidates {c['candidates']:9d}  rng {100 * c['rng_share']:6.2f} %  "
                  f"logs {100 * c['logs_share']:6.2f} %  enter {100 * c['enter_share']:6.3f} %  "
                  f"groups paying logs {100 * c['group_logs_share']:6.2f} %", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(result, args.out, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
