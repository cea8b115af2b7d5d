"""``kmas-bench``: hard negatives vs random ones — cost, hardness, training overhead and effect.

    kmas-bench                       # synthetic typed KG (embedded, no data needed), full suite
    kmas-bench --quick               # a few minutes on 2 CPU cores
    kmas-bench --data DIR            # a head<TAB>relation<TAB>tail folder (train/valid/test.txt)
    kmas-bench --device cuda         # on a GPU: the triton and cuda backends join
    kmas-bench --training            # also: fine-tune with strict random vs KMAS negatives, several seeds

Prints one side-by-side table (a row per sampler: time per call, extra peak memory, hardness),
the training-step overhead, and writes JSON (machine, versions, parameters, every figure) and
PNG plots to --out (default ./kmas-bench-results in the current folder; git-ignored in the repository).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from kmas_kernels.core.files import atomic_write_json
from kmas_kernels.installation import warn_if_shadowed
from kmas_ultra.arguments import (OneLineParser, existing_dir, existing_file, non_negative_int, output_dir, positive_float,
                                  positive_int, seed_int, unit_interval, user_error)

QUICK = dict(entities=10_000, sizes=[1_000, 10_000, 100_000], repeats=3, hardness_batches=2,
             overhead_entities=2_000, overhead_batch=8, overhead_negatives=64, overhead_steps=5)
FULL = dict(entities=100_000, sizes=[1_000, 10_000, 100_000, 1_000_000, 10_000_000], repeats=5, hardness_batches=4,
            overhead_entities=10_000, overhead_batch=16, overhead_negatives=128, overhead_steps=5)
# ULTRA's B = 64, k = 512; N = 10^4: kmas_ultra's native-torch message passing keeps B x E x d messages per
# layer for backward (measured on CPU: 7.1 GB extra at B = 16, N = 10^4), so N = 10^5 would not fit in 80 GB
FULL_CUDA = dict(FULL, overhead_entities=10_000, overhead_batch=64, overhead_negatives=512, overhead_steps=10)


def shared_dir() -> Path | None:
    """The shared folder (checkpoints/ and data/): $KMAS_SHARED, else ../shared beside the current
    folder or the repository, when present. KMAS_SHARED is the one variable the project reads for it."""
    candidates = [os.environ.get("KMAS_SHARED"), Path.cwd().parent / "shared", Path(__file__).resolve().parents[3] / "shared"]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    return None


def default_out() -> Path:
    """./kmas-bench-results: never benchmarks/results/, whose files are the committed record
    (pass ``--out benchmarks/results`` to add to it on purpose)."""
    return Path.cwd() / "kmas-bench-results"


def bounded_entities(value: str) -> int:
    """A graph size N: an integer >= 10 (the synthetic typed KG needs a few entities per type)."""
    from kmas_ultra.arguments import bounded

    return bounded(int, 10)(value)


def parse_args(argv=None) -> argparse.Namespace:
    p = OneLineParser(prog="kmas-bench", description=__doc__.splitlines()[0].replace("``", ""),
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes: a few minutes on 2 CPU cores")
    p.add_argument("--data", type=existing_dir, default=None,
                   help="a folder with train/valid/test.txt (head<TAB>relation<TAB>tail); default: synthetic typed KG")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the samplers run")
    p.add_argument("--out", type=output_dir, default=None, help="results folder (default: ./kmas-bench-results)")
    p.add_argument("--name", default=None, help="file-name stem of the results (default kmas_bench_<device>[_quick])")
    p.add_argument("--ultra-path", type=existing_dir, default=None,
                   help="a checkout of DeepGraphLearning/ULTRA: adds ULTRA's own sampler (needs torch_scatter, torch_geometric)")
    p.add_argument("--checkpoint", type=existing_file, default=None,
                   help="ULTRA checkpoint for relation embeddings and model scores (default: $KMAS_SHARED/checkpoints/ultra_3g.pth if present)")
    p.add_argument("--no-checkpoint", action="store_true", help="use no checkpoint: KMAS gets one-hot relation weights, no model scores")
    p.add_argument("--samplers", nargs="+", default=None, help="default: every baseline and every available KMAS backend")
    p.add_argument("--entities", type=bounded_entities, default=None, help="N of the synthetic graph of the table (default 10^5; quick 10^4)")
    p.add_argument("--batch", type=positive_int, default=64, help="queries per call B")
    p.add_argument("--negatives", type=positive_int, default=512, help="negatives per query k")
    p.add_argument("--repeats", type=positive_int, default=None, help="timed calls per sampler (median reported; default 5, quick 3)")
    p.add_argument("--hardness-batches", type=positive_int, default=None, help="batches whose negatives the hardness metrics average (default 4, quick 2)")
    p.add_argument("--sizes", type=bounded_entities, nargs="*", default=None,
                   help="sweep sizes N (default 10^3..10^7 as memory allows; quick 10^3..10^5); none: no sweep")
    p.add_argument("--no-sweep", action="store_true", help="skip the sweep over N")
    p.add_argument("--timeout", type=positive_float, default=1800, help="seconds per measuring process")
    g = p.add_argument_group("training-step overhead (defaults: CPU N=10^4, B=16, k=128; GPU ULTRA's B=64, k=512, N=10^4)")
    g.add_argument("--no-overhead", action="store_true", help="skip the training-step overhead")
    g.add_argument("--overhead-entities", type=bounded_entities, default=None, help="N of the overhead graph")
    g.add_argument("--overhead-batch", type=positive_int, default=None, help="B of the overhead steps")
    g.add_argument("--overhead-negatives", type=positive_int, default=None, help="k of the overhead steps")
    g.add_argument("--overhead-steps", type=positive_int, default=None, help="timed steps per mode (after one warm-up step)")
    g.add_argument("--overhead-hard-ratio", type=unit_interval, default=0.5, help="KMAS hard share during the overhead steps, in [0, 1]")
    t = p.add_argument_group("training effect (--training)")
    t.add_argument("--training", action="store_true",
                   help="fine-tune with strict random vs KMAS negatives, several seeds (defaults: ~17 min on 2 CPU cores)")
    t.add_argument("--train-dir", type=existing_dir, default=None, help="default $KMAS_SHARED/data/grail/fb237_v1 (synthetic KG when absent)")
    t.add_argument("--test-dir", type=existing_dir, default=None, help="default $KMAS_SHARED/data/grail/fb237_v1_ind")
    t.add_argument("--seeds", type=seed_int, nargs="+", default=[0, 1, 2], help="one fine-tuning per seed and sampler")
    t.add_argument("--train-steps", type=positive_int, default=100, help="fine-tuning steps")
    t.add_argument("--train-batch", type=positive_int, default=16, help="fine-tuning batch")
    t.add_argument("--train-negatives", type=positive_int, default=64, help="fine-tuning negatives per triple")
    t.add_argument("--train-lr", type=positive_float, default=5e-4, help="AdamW learning rate (ULTRA's)")
    t.add_argument("--test-limit", type=non_negative_int, default=200, help="test queries evaluated (0: all)")
    t.add_argument("--valid-limit", type=positive_int, default=20, help="validation queries per validation")
    p.add_argument("--seed", type=seed_int, default=0, help="random seed")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--replot", type=existing_file, default=None, metavar="RESULT.json", help="only redraw the plots of a result file, next to it")
    args = p.parse_args(argv)
    if args.out is not None:
        args.out = Path(args.out)
    if args.replot is not None:
        args.replot = Path(args.replot)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            p.error(f"argument --device: 'cuda' requested but torch sees no CUDA device (torch {torch.__version__}); use --device cpu")
    defaults = QUICK if args.quick else (FULL_CUDA if args.device == "cuda" else FULL)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.no_sweep:
        args.sizes = []
    # measurements run in fresh processes started in a scratch folder: paths must be absolute
    for key in ("data", "ultra_path", "checkpoint", "train_dir", "test_dir"):
        if isinstance(getattr(args, key, None), str) and getattr(args, key):
            setattr(args, key, os.path.abspath(getattr(args, key)))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    warn_if_shadowed("kmas-bench")
    if args.replot:
        return replot(args.replot)
    started = time.perf_counter()
    progress = not args.no_progress
    from tqdm import tqdm

    def log(msg: str) -> None:
        tqdm.write(msg, file=sys.stderr)

    import torch

    from kmas_ultra import load_checkpoint

    from . import report
    from .graphs import load_graph
    from .hardness import evaluate_samplers
    from .measure import load_state, machine_info
    from .overhead import overhead
    from .samplers import default_samplers
    from .sweep import run_point, sweep

    shared = shared_dir()
    checkpoint = args.checkpoint
    if checkpoint is None and not args.no_checkpoint and shared and (shared / "checkpoints" / "ultra_3g.pth").is_file():
        checkpoint = str(shared / "checkpoints" / "ultra_3g.pth")
    if args.no_checkpoint:
        checkpoint = None
    notes = []
    samplers = args.samplers or default_samplers(args.device)
    out = args.out or default_out()
    stem = args.name or f"kmas_bench_{args.device}{'_quick' if args.quick else ''}"

    # 1. the table: cost (own process per sampler) and hardness (this process) on one graph
    try:
        graph = load_graph(args.entities, args.data, args.seed)
    except (OSError, ValueError) as error:
        user_error("kmas-bench", f"argument --data: {error}")
    if args.negatives > graph.num_entities - 1:
        user_error("kmas-bench", f"argument --negatives: expected an integer from 1 to {graph.num_entities - 1} (the "
                                 f"graph's {graph.num_entities} entities minus the answer), got {args.negatives}")
    g = graph.describe()
    log(f"graph: {g['name']}, N={g['num_entities']:,}, {g['num_relations']} relations, {g['num_train']:,} training triples")
    model = load_checkpoint(checkpoint) if checkpoint else None
    if model is None:
        notes.append("no ULTRA checkpoint: KMAS used one-hot relation weights (the query relation's own tail set); "
                     "no model scores")
    else:
        notes.append(f"KMAS relation embeddings (hardness): {Path(checkpoint).name}'s relation encoder, conditioned on each row's relation")
        if not args.data:
            notes.append("model score: measured on real data folders only (--data)")
    hardness = evaluate_samplers(graph, samplers, batch=args.batch, k=args.negatives, device=args.device,
                                 num_batches=args.hardness_batches, seed=args.seed, model=model,
                                 score_model=bool(args.data), ultra_path=args.ultra_path, progress=progress)
    notes.append("cost rows: KMAS timed with random (R, 64) relation embeddings, so every relation has positive weight "
                 "(the largest support, the slowest case)")
    costs = {}
    table_n = None if args.data else graph.num_entities
    for name in tqdm(samplers, desc="cost per sampler", disable=not progress):
        costs[name] = run_point(name, table_n, batch=args.batch, k=args.negatives, repeats=args.repeats, device=args.device,
                                data=args.data, ultra_path=args.ultra_path, timeout=args.timeout)
        if "error" in costs[name]:
            log(f"{name}: {costs[name]['error']}")
    rows = [{"sampler": name, "cost": costs[name], "hardness": hardness["per_sampler"].get(name, {})} for name in samplers]
    for name, row in hardness["per_sampler"].items():
        if "skipped" in row:
            notes.append(f"{name} skipped: {row['skipped']}")

    # 2. sweep over N (synthetic), reusing the table's points
    sweep_rows = [dict(c, sampler=n) for n, c in costs.items() if table_n is not None]
    sizes = [n for n in args.sizes if n != table_n]
    if sizes:
        sweep_rows += sweep(samplers, sizes, batch=args.batch, k=args.negatives, repeats=args.repeats, device=args.device,
                            ultra_path=args.ultra_path, timeout=args.timeout, progress=progress, log=log)
    sweep_rows.sort(key=lambda r: (r["sampler"], r["num_entities"] or 0))

    # 3. mining's share of a training step
    over = None
    if not args.no_overhead:
        over = overhead(num_entities=args.overhead_entities, batch=args.overhead_batch, k=args.overhead_negatives,
                        steps=args.overhead_steps, hard_ratio=args.overhead_hard_ratio, device=args.device,
                        checkpoint=checkpoint, seed=args.seed, timeout=args.timeout, progress=progress)

    # 4. training effect
    effect = None
    if args.training:
        grail = shared / "data" / "grail" if shared else None
        train_dir = args.train_dir or (str(grail / "fb237_v1") if grail and (grail / "fb237_v1").is_dir() else None)
        test_dir = args.test_dir or (str(grail / "fb237_v1_ind") if grail and (grail / "fb237_v1_ind").is_dir() else None)
        from .training import training_effect

        effect = training_effect(train_dir=train_dir, test_dir=test_dir, checkpoint=checkpoint, seeds=args.seeds,
                                 steps=args.train_steps, batch=args.train_batch, k=args.train_negatives,
                                 test_limit=args.test_limit or None, valid_limit=args.valid_limit, lr=args.train_lr, device=args.device,
                                 progress=progress, log=log)

    result = {
        "tool": "kmas-bench",
        "command": ["kmas-bench", *(sys.argv[1:] if argv is None else argv)],
        "machine": machine_info(args.device),
        "parameters": {"quick": args.quick, "device": args.device, "batch": args.batch, "negatives": args.negatives,
                       "repeats": args.repeats, "hardness_batches": args.hardness_batches, "seed": args.seed,
                       "data": args.data, "entities": table_n, "sizes": args.sizes, "samplers": samplers,
                       "checkpoint": checkpoint, "ultra_path": args.ultra_path},
        "graph": graph.describe(),
        "table": {"rows": rows, "notes": notes, "type_measure": hardness["type_measure"],
                  "relation_embeddings": hardness["relation_embeddings"]},
        "sweep": sweep_rows,
        "overhead": over,
        "training": effect,
    }
    result["seconds"] = time.perf_counter() - started
    result["busy"] = busy_summary(result, load_state())
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}.json"
    atomic_write_json(result, path)
    pngs = write_plots(result, out, stem, log)
    print(report.table(result))
    for text in (report.overhead_lines(over), report.training_lines(effect)):
        if text:
            print("\n" + text)
    warning = report.busy_warning(result)
    if warning:
        print("\n" + warning)
    print(f"\nwrote {path}{' and ' if pngs else ''}{', '.join(p.name for p in pngs)} ({result['seconds']:.0f} s)")
    return 0


def busy_summary(result: dict, end: dict) -> dict:
    """Whether the machine was busy (load >= cores) at the start, the end or any measuring process."""
    points = [row["sampler"] for row in result["table"]["rows"] if row.get("cost", {}).get("busy")]
    points += [f"{row['sampler']} at N={row['num_entities']}" for row in result["sweep"] if row.get("busy")]
    points += [f"overhead {mode}" for mode, row in ((result.get("overhead") or {}).get("modes") or {}).items() if row.get("busy")]
    start = result["machine"]
    loads = [start["load_average_1min"], end["load_average_1min"]]
    loads += [row["cost"]["load_average_1min"] for row in result["table"]["rows"] if "load_average_1min" in row.get("cost", {})]
    loads += [row["load_average_1min"] for row in result["sweep"] if "load_average_1min" in row]
    return {"any": bool(start.get("busy") or end["busy"] or points), "max_load_average_1min": round(max(loads), 2),
            "cpu_count": end["cpu_count"], "busy_measurements": sorted(set(points))}


def write_plots(result: dict, out: Path, stem: str, log=print) -> list[Path]:
    """The PNGs of a result (table, sweep, overhead, training); none without matplotlib."""
    from . import report

    plots = [(f"{stem}_table.png", report.plot_table)]
    if len({r["num_entities"] for r in result.get("sweep") or []}) > 1:
        plots.append((f"{stem}_sweep.png", report.plot_sweep))
    if result.get("overhead"):
        plots.append((f"{stem}_overhead.png", report.plot_overhead))
    if result.get("training"):
        plots.append((f"{stem}_training.png", report.plot_training))
    pngs = []
    try:
        for file_name, plot in plots:
            plot(result, out / file_name)
            pngs.append(out / file_name)
    except ImportError as error:  # matplotlib is the [bench] extra
        log(f"no plots: {error} (pip install matplotlib)")
    return pngs


def replot(path: Path) -> int:
    """Redraw the PNGs of a result file next to it (``kmas-bench --replot FILE.json``)."""
    result = json.loads(Path(path).read_text())
    stem = Path(path).stem
    pngs = write_plots(result, Path(path).parent, stem)
    print(f"wrote {', '.join(str(p) for p in pngs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
