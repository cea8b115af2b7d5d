"""PyKEEN: epoch time and MRR of a small model with PyKEEN's basic sampler (filtered or not) vs KMAS.

Trains one PyKEEN model (default DistMult on UMLS, which PyKEEN ships) with the sLCWA loop and
each negative sampler, for several seeds, in one run; samplers are interleaved within each seed so
that other load on the machine falls on all of them alike. Per run it records the wall time of
every epoch (sampling included: PyKEEN samples inside its data loader), the filtered MRR and
Hits@10 on validation (filtered by training) and on test (filtered by training and validation).
Nothing is tuned on test: every setting is fixed up front (--help shows the defaults).

    python benchmarks/pykeen_samplers.py --dataset UMLS --epochs 20 --seeds 0 1 2

Writes benchmarks/results/pykeen_samplers.json and .png (needs pip install ".[pykeen,bench]").
With --sampling-only it times single sampler calls instead (pykeen_samplers_sampling.json).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
SAMPLERS = ("basic", "basic-filtered-bloom", "basic-filtered-set", "kmas")


def write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file in the same folder, fsync'd, then renamed over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def sampler_options(name: str, args, dataset, total_steps: int, seed: int) -> dict:
    """pipeline() keyword arguments selecting the negative sampler ``name``."""
    k = args.negatives
    if name == "basic":
        return dict(negative_sampler="basic", negative_sampler_kwargs=dict(num_negs_per_pos=k))
    if name == "basic-filtered-bloom":
        return dict(negative_sampler="basic", negative_sampler_kwargs=dict(num_negs_per_pos=k, filtered=True, filterer="bloom"))
    if name == "basic-filtered-set":
        return dict(negative_sampler="basic", negative_sampler_kwargs=dict(num_negs_per_pos=k, filtered=True, filterer="pythonset"))
    if name == "kmas":
        from kmas_kernels.pykeen import KMASNegativeSampler

        sampler = KMASNegativeSampler(
            mapped_triples=dataset.training.mapped_triples,
            num_entities=dataset.training.num_entities,
            num_relations=dataset.training.num_relations,
            num_negs_per_pos=k,
            total_steps=total_steps,
            seed=seed,
        )
        return dict(negative_sampler=sampler, callbacks=[sampler.callback()])
    raise ValueError(f"unknown sampler {name!r}, choose from {SAMPLERS}")


def run_one(name: str, args, dataset, seed: int) -> dict:
    from pykeen.evaluation import RankBasedEvaluator
    from pykeen.pipeline import pipeline
    from pykeen.training.callbacks import TrainingCallback

    class EpochTimer(TrainingCallback):
        def __init__(self):
            super().__init__()
            self.times = []
            self.last = None

        def pre_batch(self, **kwargs):
            if self.last is None:  # the first batch of training starts the clock
                self.last = time.perf_counter()

        def post_epoch(self, epoch, epoch_loss, **kwargs):
            now = time.perf_counter()
            self.times.append(now - self.last)
            self.last = now

    steps = args.epochs * math.ceil(dataset.training.num_triples / args.batch)
    options = sampler_options(name, args, dataset, steps, seed)
    timer = EpochTimer()
    callbacks = [timer] + options.pop("callbacks", [])
    result = pipeline(
        dataset=dataset,
        model=args.model,
        model_kwargs=dict(embedding_dim=args.dim),
        optimizer="Adam",
        optimizer_kwargs=dict(lr=args.lr),
        training_loop="sLCWA",
        training_loop_kwargs=dict(automatic_memory_optimization=False),
        training_kwargs=dict(num_epochs=args.epochs, batch_size=args.batch, use_tqdm=False, callbacks=callbacks),
        evaluation_kwargs=dict(use_tqdm=False, batch_size=512),
        random_seed=seed,
        **options,
    )
    validation = RankBasedEvaluator().evaluate(
        result.model,
        dataset.validation.mapped_triples,
        additional_filter_triples=[dataset.training.mapped_triples],
        use_tqdm=False,
        batch_size=512,
    )
    return {
        "sampler": name,
        "seed": seed,
        "epoch_seconds": timer.times,
        "epoch_seconds_median": statistics.median(timer.times),
        "final_loss": result.losses[-1],
        "validation_mrr": validation.get_metric("both.realistic.inverse_harmonic_mean_rank"),
        "validation_hits10": validation.get_metric("both.realistic.hits_at_10"),
        "test_mrr": result.metric_results.get_metric("both.realistic.inverse_harmonic_mean_rank"),
        "test_hits10": result.metric_results.get_metric("both.realistic.hits_at_10"),
    }


def sampling_cost(args, dataset) -> list[dict]:
    """Time of one sampler call on a training batch, outside training: where an epoch's extra time goes.

    KMAS at hard shares 0, 0.5 and 1 separates its hard share (mining) from its strict uniform
    share; the basic sampler with and without PyKEEN's exact (Python set) filter for comparison.
    """
    from pykeen.models import model_resolver
    from pykeen.sampling import BasicNegativeSampler

    from kmas_kernels.pykeen import KMASNegativeSampler

    training, k = dataset.training, args.negatives
    model = model_resolver.make(args.model, triples_factory=training, embedding_dim=args.dim, random_seed=0)
    common = dict(mapped_triples=training.mapped_triples, num_entities=training.num_entities,
                  num_relations=training.num_relations, num_negs_per_pos=k)  # fmt: skip
    samplers = {
        "basic": BasicNegativeSampler(**common),
        "basic-filtered-set": BasicNegativeSampler(**common, filtered=True, filterer="pythonset"),
    }
    for ratio in (0.0, 0.5, 1.0):
        samplers[f"kmas hard share {ratio}"] = KMASNegativeSampler(**common, model=model, schedule=ratio, seed=0)
    generator = torch.Generator().manual_seed(0)
    batches = [training.mapped_triples[torch.randperm(training.num_triples, generator=generator)[: args.batch]] for _ in range(30)]
    rows = []
    for name, sampler in tqdm(samplers.items(), desc="sampling cost", unit="sampler"):
        for batch in batches[:3]:  # warm-up
            sampler.sample(batch)
        times = []
        for batch in batches:
            start = time.perf_counter()
            sampler.sample(batch)
            times.append(time.perf_counter() - start)
        rows.append({"sampler": name, "batch": args.batch, "k": k, "ms_per_batch_median": 1000 * statistics.median(times),
                     "ms_per_batch": [1000 * t for t in times]})  # fmt: skip
    return rows


def summarise(runs: list[dict]) -> dict:
    summary = {}
    for name in dict.fromkeys(run["sampler"] for run in runs):
        mine = [run for run in runs if run["sampler"] == name]
        entry = {"seeds": len(mine)}
        for key in ("epoch_seconds_median", "validation_mrr", "test_mrr", "test_hits10"):
            values = [run[key] for run in mine]
            entry[key] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
        summary[name] = entry
    basic = summary.get("basic")
    if basic:
        for entry in summary.values():
            entry["epoch_time_vs_basic"] = entry["epoch_seconds_median"]["mean"] / basic["epoch_seconds_median"]["mean"]
    return summary


def plot(runs: list[dict], summary: dict, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, key, label in (
        (axes[0], "epoch_seconds_median", "epoch time (s, median per run)"),
        (axes[1], "test_mrr", "test MRR (filtered)"),
    ):
        means = [summary[name][key]["mean"] for name in names]
        ax.bar(range(len(names)), means, color="#9ab", edgecolor="#345")
        for i, name in enumerate(names):
            values = [run[key] for run in runs if run["sampler"] == name]
            ax.scatter([i] * len(values), values, color="#234", s=12, zorder=3)
        ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".png")
    os.close(handle)
    try:
        fig.savefig(temporary, dpi=120)
        with open(temporary, "rb") as f:
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="UMLS", help="a dataset PyKEEN ships: UMLS, Kinships, Nations")
    parser.add_argument("--model", default="DistMult")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--negatives", type=int, default=8, help="num_negs_per_pos")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier timings on a shared machine)")
    parser.add_argument("--sampling-only", action="store_true",
                        help="only time sampler calls outside training (writes <out>_sampling.json)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=HERE / "results" / "pykeen_samplers.json")
    args = parser.parse_args()
    if len(args.seeds) < 1:
        sys.exit("--seeds needs at least one seed")

    torch.set_num_threads(args.threads)
    try:
        import pykeen  # noqa: F401
    except ImportError:
        sys.exit('needs PyKEEN: pip install ".[pykeen,bench]"')
    from pykeen.datasets import get_dataset

    sys.path.insert(0, str(HERE.parent / "python"))
    from kmas_bench.measure import machine_info

    dataset = get_dataset(dataset=args.dataset)
    machine = machine_info("cpu")
    if args.sampling_only:
        rows = sampling_cost(args, dataset)
        machine["load_average_1min_end"] = os.getloadavg()[0]
        params = {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()}
        out = args.out.with_name(args.out.stem + "_sampling.json")
        write_atomic(out, (json.dumps({"machine": machine, "parameters": params, "sampling": rows}, indent=2) + "\n").encode())
        for row in rows:
            print(f"{row['sampler']:24s} {row['ms_per_batch_median']:.2f} ms per batch of {row['batch']} x k={row['k']}")
        return
    runs = []
    jobs = [(seed, name) for seed in args.seeds for name in args.samplers]
    for seed, name in tqdm(jobs, desc=f"{args.model} on {args.dataset}", unit="run"):
        runs.append(run_one(name, args, dataset, seed))
    summary = summarise(runs)
    machine["load_average_1min_end"] = os.getloadavg()[0]
    from importlib.metadata import version

    result = {
        "machine": machine,
        "pykeen": version("pykeen"),
        "parameters": {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()},
        "dataset": {
            "name": args.dataset,
            "entities": dataset.training.num_entities,
            "relations": dataset.training.num_relations,
            "training": dataset.training.num_triples,
            "validation": dataset.validation.num_triples,
            "testing": dataset.testing.num_triples,
        },
        "summary": summary,
        "runs": runs,
    }
    write_atomic(args.out, (json.dumps(result, indent=2) + "\n").encode())
    title = f"{args.model} (d={args.dim}) on {args.dataset}, {args.epochs} epochs, k={args.negatives}, {len(args.seeds)} seeds"
    plot(runs, summary, title, args.out.with_suffix(".png"))
    for name, entry in summary.items():
        print(
            f"{name:22s} epoch {entry['epoch_seconds_median']['mean']:.3f}s (x{entry.get('epoch_time_vs_basic', float('nan')):.2f}) "
            f"val MRR {entry['validation_mrr']['mean']:.3f}  test MRR {entry['test_mrr']['mean']:.3f} ± {entry['test_mrr']['std']:.3f}"
        )


if __name__ == "__main__":
    main()
