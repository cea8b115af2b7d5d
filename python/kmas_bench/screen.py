"""Stage 3(a) of the pre-training study: a fine-tuning screen of KMAS settings against strict random.

Fine-tune ultra_3g on a GraIL training graph (default ``fb237_v1``) for ``steps`` steps with each
configuration and seed, exactly as ``kmas-bench --training`` does (kmas_ultra.train.train, B = 16,
k = 64, AdamW 5e-4, one thread), then:

- validation: filtered MRR on the first ``valid_queries`` valid triples of the training graph
  (heads and tails) — the only figure any choice is made on;
- test: the first ``test_queries`` queries of the inductive graph (``fb237_v1_ind``), recorded
  for the README's fine-tuning comparison, never used to choose.

Configurations use kmas-pretrain's syntax (``strict``, ``kmas:loss=share,fallback=shared,dir=separate,max=0.25``).
Resumable: each finished run writes ``<out>/<name>/<run>.json`` atomically and a relaunch skips it;
``<out>/<name>.json`` and ``.png`` summarise every finished run (rewritten after each run).

    python -m kmas_bench.screen --configs strict kmas kmas:loss=share ... --seeds 0 1 2 --name pretrain_stage3_screen
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path


def run_one(config, split, checkpoint: Path, *, valid_queries: int, test_queries: int, log=print) -> dict:
    import torch

    from kmas_ultra import evaluate, load_checkpoint, triples_of
    from kmas_ultra.train import train

    torch.manual_seed(config.seed)
    model = load_checkpoint(checkpoint)
    kmas_options = config.kmas_options() if config.sampler == "kmas" else None
    stats: list[dict] = []
    started = time.perf_counter()
    summary = train(model, split, steps=config.steps, batch_size=config.batch, num_negative=config.negatives, lr=config.lr,
                    negatives=config.sampler, seed=config.seed, valid_limit=valid_queries, progress=False,
                    kmas_options=kmas_options, hard_weighting=config.loss or "adversarial", log=lambda message: None,
                    stats_callback=stats.append)
    seconds = time.perf_counter() - started
    queries = triples_of(split.test)[:test_queries]
    test = evaluate(model, split.test, queries, split.test_filter)
    test = {k: v for k, v in test.items() if k not in ("tail_ranks", "head_ranks")}
    fallback_rows = sum(s["fallback_rows"] for s in stats)
    borrowed_rows = sum(s["borrowed_rows"] for s in stats)
    hard_rows = sum(s["rows"] for s in stats if s["num_hard"] > 0)
    fallback_hard = sum(s["fallback_rows"] for s in stats if s["num_hard"] > 0)
    return {
        "run": config.name, "label": config.label, "config": asdict(config), "digest": config.digest(),
        "valid": summary["valid"][-1], "test": test, "train_seconds": seconds,
        "first_loss": summary["first_loss"], "last_loss": summary["last_loss"],
        "sampler_stats": None if config.sampler != "kmas" else {
            "fallback_rows": fallback_rows, "borrowed_rows": borrowed_rows,
            "fallback_rows_with_hard_negatives_due": fallback_hard, "rows_with_hard_negatives_due": hard_rows,
            "last": stats[-1] if stats else None,
        },
    }


def summarise(results: list[dict]) -> dict:
    from .pretrain import spread

    labels = list(dict.fromkeys(r["label"] for r in results))
    strict = {r["config"]["seed"]: r for r in results if r["label"] == "strict"}
    summary = {}
    for label in labels:
        mine = [r for r in results if r["label"] == label]
        entry = {"seeds": [r["config"]["seed"] for r in mine],
                 "valid_mrr": spread([r["valid"]["mrr"] for r in mine]),
                 "test_mrr": spread([r["test"]["mrr"] for r in mine])}
        paired = [(r["valid"]["mrr"] - strict[r["config"]["seed"]]["valid"]["mrr"],
                   r["test"]["mrr"] - strict[r["config"]["seed"]]["test"]["mrr"]) for r in mine if r["config"]["seed"] in strict]
        if label != "strict" and paired:
            entry["valid_minus_strict"] = spread([v for v, _ in paired])
            entry["test_minus_strict"] = spread([t for _, t in paired])
        summary[label] = entry
    return summary


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kmas_kernels.core.files import atomic_output

    entries = [(label, s) for label, s in result["summary"].items() if "valid_minus_strict" in s]
    entries.sort(key=lambda e: e[1]["valid_minus_strict"]["mean"])
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(entries) + 1.5))
    ys = range(len(entries))
    ax.barh([y + 0.2 for y in ys], [s["valid_minus_strict"]["mean"] for _, s in entries], 0.4,
            xerr=[s["valid_minus_strict"]["std"] for _, s in entries], label="validation (chooses)", color="tab:blue", capsize=2)
    ax.barh([y - 0.2 for y in ys], [s["test_minus_strict"]["mean"] for _, s in entries], 0.4,
            xerr=[s["test_minus_strict"]["std"] for _, s in entries], label="test (reported only)", color="tab:gray", capsize=2)
    ax.set_yticks(list(ys))
    ax.set_yticklabels([label for label, _ in entries], fontsize=7)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("MRR, KMAS minus strict random (paired by seed, mean ± std)")
    ax.legend(fontsize=7)
    ax.grid(axis="x", alpha=0.3)
    p = result["parameters"]
    ax.set_title(f"fine-tuning screen: ultra_3g on {Path(p['train_dir']).name}, {p['steps']} steps, B={p['batch']}, k={p['negatives']}",
                 fontsize=9)
    fig.tight_layout()
    with atomic_output(path) as temp:
        fig.savefig(temp, dpi=110, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from kmas_kernels.core.files import atomic_write_json

    from .measure import machine_info
    from .pretrain import RunConfig, parse_config

    from kmas_ultra.arguments import (OneLineParser, existing_dir, existing_file, file_stem, non_negative_int, output_dir,
                                      positive_float, positive_int, seed_int)

    from .pretrain import config_spec

    p = OneLineParser(prog="python -m kmas_bench.screen", description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", type=config_spec, nargs="+", required=True,
                   help="'strict', 'kmas' or 'kmas:T=0.3,top=10,max=0.5,final=0.1,warm=0.1,peak=0.4,loss=share,fallback=shared,dir=separate'")
    p.add_argument("--seeds", type=seed_int, nargs="+", default=[0, 1, 2], help="one run per configuration and seed (default 0 1 2)")
    p.add_argument("--steps", type=positive_int, default=100, help="fine-tuning steps per run (default 100)")
    p.add_argument("--batch", type=positive_int, default=16, help="training triples per step (default 16)")
    p.add_argument("--negatives", type=positive_int, default=64,
                   help="negatives per triple, at most the training graph's entities - 1 (default 64)")
    p.add_argument("--lr", type=positive_float, default=5e-4, help="AdamW learning rate (default 5e-4)")
    p.add_argument("--train-dir", type=lambda value: Path(existing_dir(value)), required=True, help="training graph folder")
    p.add_argument("--test-dir", type=lambda value: Path(existing_dir(value)), required=True, help="inductive test graph folder")
    p.add_argument("--checkpoint", type=lambda value: Path(existing_file(value)), required=True, help="ULTRA checkpoint to fine-tune")
    p.add_argument("--valid-queries", type=non_negative_int, default=0, help="valid triples (default 0: all)")
    p.add_argument("--test-queries", type=positive_int, default=200, help="test queries (default 200)")
    p.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--out", type=lambda value: Path(output_dir(value)), required=True, help="results folder")
    p.add_argument("--name", type=file_stem, default="pretrain_stage3_screen", help="file-name stem of the results")
    args = p.parse_args(argv)

    import torch
    from tqdm import tqdm

    from kmas_ultra import load_inductive

    torch.set_num_threads(args.threads)
    budget = dict(steps=args.steps, batch=args.batch, negatives=args.negatives, lr=args.lr)
    configs = [RunConfig(**parse_config(spec, seed=seed, **budget)) for seed in args.seeds for spec in args.configs]
    split = load_inductive(args.train_dir, args.test_dir)
    entities = split.train.num_nodes
    if args.negatives > entities - 1:  # a row has at most N - 1 other entities
        p.error(f"argument --negatives: expected an integer from 1 to {entities - 1} (the training graph's "
                f"{entities} entities - 1), got {args.negatives}")
    run_dir = args.out / args.name
    run_dir.mkdir(parents=True, exist_ok=True)
    results = []
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    for config in tqdm(configs, desc="screen runs", file=sys.stderr):
        path = run_dir / f"{config.name}.json"
        if path.is_file():
            previous = json.loads(path.read_text())
            if previous["digest"] != config.digest():
                sys.exit(f"{path} holds another configuration: use another --name or remove it")
            results.append(previous)
            continue
        result = run_one(config, split, args.checkpoint, valid_queries=args.valid_queries, test_queries=args.test_queries, log=log)
        atomic_write_json(result, path)
        results.append(result)
        log(f"{config.name}: valid mrr {result['valid']['mrr']:.4f} test mrr {result['test']['mrr']:.4f} "
            f"({result['train_seconds']:.0f} s)")
        out = {"tool": "kmas_bench.screen", "command": ["python", "-m", "kmas_bench.screen", *(argv or sys.argv[1:])],
               "machine": machine_info("cpu"),
               "parameters": {"train_dir": str(args.train_dir), "test_dir": str(args.test_dir),
                              "checkpoint": args.checkpoint.name, "configs": args.configs, "seeds": args.seeds,
                              "valid_queries": args.valid_queries, "test_queries": args.test_queries,
                              "threads": args.threads, **budget},
               "runs": results, "summary": summarise(results)}
        atomic_write_json(out, args.out / f"{args.name}.json")
        try:
            plot(out, args.out / f"{args.name}.png")
        except Exception as error:  # noqa: BLE001 - a plot must not stop the screen
            log(f"no plot: {error}")
    for label, s in summarise(results).items():
        extra = f"  valid - strict {s['valid_minus_strict']['mean']:+.4f} ± {s['valid_minus_strict']['std']:.4f}" if "valid_minus_strict" in s else ""
        print(f"{label:50s} valid {s['valid_mrr']['mean']:.4f} ± {s['valid_mrr']['std']:.4f}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
