"""How stale is the drop-in's per-query-relation cache? Cached vs fresh relation weights.

``KMASNegativeSampling`` takes relation embeddings from the forward pass that follows each
sampling call (a hook), so the weights it uses at step t come from the model as it was when the
query relation was last seen. This script fine-tunes ULTRA (the reference loop's model, from a
public checkpoint) with KMAS negatives and, before every sampling call, also runs the relation
encoder afresh on the current parameters (an extra pass done for this measurement only) to
compare, over the batch rows whose query relation is cached:

- total variation distance between cached and fresh relation weights, 0.5 * |w_c - w_f|_1;
- overlap of the hard negatives each gives with the same seed (|A ∩ B| / k);
- cache age: steps since the row's query relation was last refreshed.

    python benchmarks/staleness.py --train ../shared/data/grail/fb237_v1 --steps 40

Writes benchmarks/results/staleness.json and .png.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, default=HERE.parents[1] / "shared" / "data" / "grail" / "fb237_v1")
    parser.add_argument("--checkpoint", type=Path, default=HERE.parents[1] / "shared" / "checkpoints" / "ultra_3g.pth")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--negatives", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "staleness.json")
    args = parser.parse_args()

    from kmas_bench.measure import machine_info
    from kmas_kernels.core.files import atomic_write_json
    from kmas_kernels import hard_negatives
    from kmas_kernels.core.relation_weights import relation_weights_from_embeddings
    from kmas_kernels.ultra import KMASNegativeSampling
    from kmas_ultra import load_checkpoint, load_transductive, self_adversarial_bce, triples_of

    if not args.train.is_dir() or not args.checkpoint.is_file():
        sys.exit(f"needs {args.train} and {args.checkpoint} (../shared beside the repository)")
    torch.manual_seed(args.seed)
    split = load_transductive(args.train)
    data = split.train
    model = load_checkpoint(args.checkpoint)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    sampler = KMASNegativeSampling(model, data, total_steps=args.steps, schedule=0.5, seed=args.seed, backend="auto")
    state = sampler.graph(data)
    last_seen = torch.full((data.num_relations,), -1)
    triples = triples_of(data)
    g = torch.Generator().manual_seed(args.seed)
    rows = []
    for step in tqdm(range(args.steps), desc="fine-tuning with KMAS negatives"):
        batch = triples[torch.randint(len(triples), (args.batch,), generator=g)]
        h, t, r = batch.unbind(1)
        half = args.batch // 2
        tail_row = torch.arange(args.batch) < half
        query_relation = torch.where(tail_row, r, state.index.inverse(r))
        cached_ok = state.cache.seen[query_relation]
        if cached_ok.any():
            with torch.no_grad(), sampler.paused():  # the extra pass, measurement only: not cached
                fresh_z = model.relation_model(data.relation_graph, query=r)
            fresh = relation_weights_from_embeddings(fresh_z, query_relation, sampler.temperature, sampler.top_relations)
            cached = state.cache.weights(query_relation, sampler.temperature, sampler.top_relations)[0]
            tv = 0.5 * (cached - fresh).abs().sum(1)[cached_ok]
            query_entity, positive = torch.where(tail_row, h, t), torch.where(tail_row, t, h)
            common = dict(num_negatives=args.negatives, positive=positive, seed=step)
            a = hard_negatives(state.index, query_entity, query_relation, relation_weights=cached, **common)
            b = hard_negatives(state.index, query_entity, query_relation, relation_weights=fresh, **common)
            overlap = torch.tensor([len(set(x) & set(y)) / args.negatives for x, y in zip(a.tolist(), b.tolist())])[cached_ok]
            age = (step - last_seen[r][cached_ok]).float()
            rows.append({"step": step, "rows_cached": int(cached_ok.sum()), "tv_mean": float(tv.mean()), "tv_max": float(tv.max()),
                         "overlap_mean": float(overlap.mean()), "age_mean": float(age.mean())})
        sample = sampler(data, batch, args.negatives)
        loss = self_adversarial_bce(model(data, sample))  # the forward fires the cache hook
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        last_seen[r] = step
    sampler.close()
    cached_rows = [row for row in rows if row["rows_cached"]]
    summary = {
        "steps_measured": len(cached_rows),
        "tv_mean": sum(row["tv_mean"] for row in cached_rows) / max(1, len(cached_rows)),
        "tv_max": max((row["tv_max"] for row in cached_rows), default=None),
        "overlap_mean": sum(row["overlap_mean"] for row in cached_rows) / max(1, len(cached_rows)),
        "age_mean": sum(row["age_mean"] for row in cached_rows) / max(1, len(cached_rows)),
    }
    result = {"machine": machine_info("cpu"), "parameters": {k: str(v) for k, v in vars(args).items()},
              "summary": summary, "per_step": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(result, args.out)
    _plot(rows, args.out.with_suffix(".png"))
    print(json.dumps(summary))


def _plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["tv_mean"] for r in rows], marker=".", label="TV(cached, fresh) weights")
    ax.plot(steps, [r["overlap_mean"] for r in rows], marker=".", label="hard-negative overlap")
    ax.set_xlabel("training step")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
