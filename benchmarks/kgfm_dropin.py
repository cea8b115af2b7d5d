"""The drop-in inside each KGFM's own training code: swap, encoder output, stats(), mining's share.

For every checkout given by ULTRA_PATH, TRIX_PATH, MOTIF_PATH, SEMMA_PATH: build the model with
its own classes (published widths and depths), then run its own ``train_and_validate`` for
``--steps`` batches twice, side by side on the same model and graph (GraIL fb237_v1; MOTIF
WN18RR_v1, see kmas_bench.kgfm.GRAPH): once with
its original ``tasks.negative_sampling`` (strict random) and once with ``install``'s
KMASNegativeSampling (constant hard share ``--hard``). The sampler call is timed inside the loop;
a training step is the interval between two consecutive sampler calls (sampling, forward,
backward, optimizer, loader), the first step left out (warm-up). Writes
``results/kgfm_dropin_cpu.json``.

    ULTRA_PATH=... TRIX_PATH=... MOTIF_PATH=... SEMMA_PATH=... python benchmarks/kgfm_dropin.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


class Timed:
    """Wraps a negative sampler; records (start, duration) of every call."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        out = self.fn(*args, **kwargs)
        self.calls.append((start, time.perf_counter() - start))
        return out

    def share(self) -> dict:
        starts = [s for s, _ in self.calls]
        steps = [b - a for a, b in zip(starts, starts[1:])][1:]  # step i = call i to call i + 1; drop step 0
        mining = [d for _, d in self.calls[1:len(steps) + 1]]
        return {"steps_timed": len(steps), "step_s_mean": sum(steps) / len(steps), "sampler_s_mean": sum(mining) / len(mining),
                "sampler_share": sum(mining) / sum(steps)}


def write(args, results: dict) -> None:
    """Write (or with --merge, extend) the result file atomically; called after every model."""
    import torch_geometric

    from kmas_bench.measure import machine_info

    for result in results.values():
        result.setdefault("torch_geometric", torch_geometric.__version__)
    if args.merge and args.out.is_file():
        previous = json.loads(args.out.read_text())
        results = {**previous["models"], **results}
    out = {
        "machine": machine_info("cpu"),
        "parameters": {k: str(v) for k, v in vars(args).items()},
        "notes": ("SEMMA: deterministic stand-in text embeddings (the sentence model cannot be downloaded); "
                  "MOTIF: its torch path (its Triton kernels need a GPU). Both runs per model share the model "
                  "(trained on) and the machine, which other jobs shared: compare the two columns, not across files."),
        "models": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, args.out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared" / "data" / "grail",
                        help="folder of GraIL graphs (fb237_v1; MOTIF: WN18RR_v1)")
    parser.add_argument("--models", nargs="+", default=["ultra", "trix", "motif", "semma"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--negatives", type=int, default=64)
    parser.add_argument("--hard", type=float, default=0.5)
    parser.add_argument("--depth", type=int, default=None, help="layers per network (default: the published depth)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "kgfm_dropin_cpu.json")
    parser.add_argument("--merge", action="store_true",
                        help="add these models to an existing --out (e.g. TRIX run under torch-geometric 2.4)")
    args = parser.parse_args()

    from kmas_bench import kgfm
    from kmas_kernels.ultra import install

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    results = {}
    for name in args.models:
        path = os.environ.get(f"{name.upper()}_PATH")
        if not path:
            print(f"{name}: {name.upper()}_PATH not set, skipped", file=sys.stderr)
            continue
        print(f"{name}: building from {path}", file=sys.stderr)
        if name == "trix" and kgfm.trix_supported() is not None:
            print(f"trix: skipped: {kgfm.trix_supported()}", file=sys.stderr)
            continue
        data = args.data / kgfm.GRAPH[name]
        setup = kgfm.setup(name, path, data, depth=args.depth)
        original = setup.tasks.negative_sampling
        with tempfile.TemporaryDirectory() as workdir:
            load_before = os.getloadavg()[0]
            strict = Timed(original)
            setup.tasks.negative_sampling = strict
            kgfm.run_training(setup, args.steps, args.batch, args.negatives, workdir)
            setup.tasks.negative_sampling = original

            sampler = install(setup.tasks, setup.model, schedule=args.hard, relation_module=setup.relation_module, seed=0)
            shapes = []
            encoder = sampler._resolve_module(setup.model, setup.relation_module)
            handle = encoder.register_forward_hook(lambda m, a, out: shapes.append(list(out.shape)) if m.training else None)
            kmas = Timed(sampler)
            setup.tasks.negative_sampling = kmas
            kgfm.run_training(setup, args.steps, args.batch, args.negatives, workdir)
            handle.remove()
            sampler.close()
            setup.tasks.negative_sampling = original
        stats = sampler.stats()
        results[name] = {
            "graph": kgfm.GRAPH[name],
            "swap": f"kmas_kernels.ultra.install({name}.tasks, model, relation_module={setup.relation_module!r}, ...)",
            "encoder_output_shape": shapes[0],
            "stats_after_steps": stats,
            "strict_random": strict.share(),
            "kmas": kmas.share(),
            "loadavg_1min_before": load_before,
            "loadavg_1min_after": os.getloadavg()[0],
        }
        print(name, json.dumps(results[name], indent=1), file=sys.stderr)
        write(args, results)

    write(args, results)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
