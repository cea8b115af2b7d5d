"""``python -m kmas_kernels`` / ``kmas-demo``: hard vs random negatives on the synthetic typed KG.

A one-screen demo (the benchmark suite is ``kmas-bench``): it builds a typed KG, mines negatives for a batch of training queries with each available backend, and reports how
often the negatives are type-consistent with the query relation's range (a hard negative should
be) next to ULTRA-style strict random negatives, plus the time per call.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from tqdm import tqdm

from . import KGIndex, available_backends, hard_negatives
from .core.philox import STREAM_UNIFORM
from .core.problem import prepare_problem
from .core.uniform import uniform_negatives
from .data import synthetic_typed_kg
from .installation import warn_if_shadowed


def _time(fn, repeats: int) -> tuple[torch.Tensor, float]:
    out = fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return out, (time.perf_counter() - start) / repeats


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value!r}")
    return number


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="kmas-demo", description=__doc__.splitlines()[0].replace("``", ""))
    parser.add_argument("--entities", type=_positive, default=20_000, help="entities of the synthetic KG (default 20000)")
    parser.add_argument("--relations", type=_positive, default=40, help="relations (default 40)")
    parser.add_argument("--types", type=_positive, default=20, help="entity types (default 20)")
    parser.add_argument("--batch", type=_positive, default=64, help="queries per call (default 64)")
    parser.add_argument("--negatives", type=_positive, default=512, help="negatives per query (default 512)")
    parser.add_argument("--repeats", type=_positive, default=3, help="timed calls per sampler (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    warn_if_shadowed("kmas-demo")

    kg = synthetic_typed_kg(args.entities, args.relations, args.types, seed=args.seed)
    index = KGIndex.from_triples(kg.triples, num_entities=kg.num_entities, num_relations=kg.num_relations)
    print(f"synthetic typed KG: {kg.num_entities} entities, {kg.num_relations} relations, {kg.triples.shape[0]} triples")
    print(index)

    g = torch.Generator().manual_seed(args.seed)
    rows = kg.triples[torch.randint(kg.triples.shape[0], (args.batch,), generator=g)]
    head, rel, tail = rows.unbind(1)
    wanted_type = kg.relation_range[rel][:, None]
    # relation embeddings standing in for a relation encoder's output: relations with the same
    # range type get similar vectors, so their tail sets mix in the hard-negative distribution
    type_vectors = torch.randn(kg.num_types, 16, generator=g)
    z = type_vectors[kg.relation_range] + 0.3 * torch.randn(kg.num_relations, 16, generator=g)
    z = torch.cat([z, type_vectors[kg.relation_domain]])  # inverse relations: their range is the domain
    problem = prepare_problem(index, head, rel, num_negatives=1, positive=tail, seed=args.seed)

    samplers = {
        "strict random (ULTRA semantics)": lambda: uniform_negatives(
            index, head, rel, problem.positive, args.negatives, seed=args.seed, strict=True, stream=STREAM_UNIFORM
        )
    }
    for name, reason in available_backends().items():
        if reason is None:
            samplers[f"kmas hard, backend={name}"] = lambda name=name: hard_negatives(
                index, head, rel, relation_embeddings=z, num_negatives=args.negatives, positive=tail, seed=args.seed, backend=name
            )
    results = []
    for name, fn in tqdm(samplers.items(), desc="samplers"):
        negatives, seconds = _time(fn, args.repeats)
        typed = float((kg.entity_type[negatives] == wanted_type).float().mean())
        results.append({"sampler": name, "ms_per_call": 1e3 * seconds, "type_consistent": typed})
    print(f"\nB={args.batch}, k={args.negatives}, N={kg.num_entities}")
    print(f"{'sampler':36s} {'ms/call':>9s} {'type-consistent':>16s}")
    for r in results:
        print(f"{r['sampler']:36s} {r['ms_per_call']:9.2f} {r['type_consistent']:16.3f}")
    print(json.dumps({"entities": kg.num_entities, "batch": args.batch, "negatives": args.negatives, "results": results}))


if __name__ == "__main__":
    main()
