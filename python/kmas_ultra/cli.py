"""Console scripts ``kmas-eval`` and ``kmas-train``.

Progress bars and logs go to stderr; the last stdout line is one JSON object.
Data: ``--inductive TRAIN_DIR INFERENCE_DIR`` (GraIL protocol), ``--transductive DIR``, or, with
neither, the embedded synthetic typed KG (``--synthetic-entities`` etc.).

``kmas-train --out-dir DIR`` keeps ``DIR/last.pth``, the whole training state, and
``kmas-train --resume DIR`` continues that run with the options stored in it. Checkpoints are
read with ``torch.load(weights_only=True)`` only; a bad one ends the command with exit status 2
and a message naming the file and the problem.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

import torch

from kmas_kernels.core.files import CheckpointError
from kmas_kernels.installation import warn_if_shadowed

from .arguments import (OneLineParser, device, existing_dir, existing_file, non_negative_int, output_dir, positive_float,
                        positive_int, seed_int, unit_interval)
from .data import load_inductive, load_transductive, synthetic_split, triples_of

from .model import DIM, NUM_LAYERS, Ultra, architecture_of, load_checkpoint, message_passing_path
from .tasks import evaluate

from kmas_kernels.core.relation_weights import DIRECTIONS
from kmas_kernels.loss import HARD_WEIGHTINGS
from kmas_kernels.relation_cache import FALLBACKS
from kmas_kernels.sampler import SAMPLER_DIRECTIONS, SAMPLER_FALLBACK

from .train import LAST_CHECKPOINT, NEGATIVE_MODES, TRAIN_HARD_WEIGHTING, TrainingInterrupted, load_training_state, setup_distributed, train, world


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--inductive", nargs=2, metavar=("TRAIN_DIR", "INFERENCE_DIR"), type=existing_dir,
                       help="GraIL pair: relation vocabulary and training graph from TRAIN_DIR; the test queries are "
                            "INFERENCE_DIR's valid.txt + test.txt together (ULTRA's protocol), on INFERENCE_DIR's graph")
    group.add_argument("--transductive", metavar="DIR", type=existing_dir, help="folder with train/valid/test.txt")
    parser.add_argument("--synthetic-entities", type=bounded_entities, default=60, help="synthetic default: entities (default 60, at least 4)")
    parser.add_argument("--synthetic-relations", type=positive_int, default=4, help="synthetic default: relations (default 4)")
    parser.add_argument("--synthetic-edges", type=positive_int, default=300, help="synthetic default: edges (default 300)")
    parser.add_argument("--seed", type=seed_int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", type=device, default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help=f"torch CPU threads (default: 1 on graphs under {SMALL_GRAPH:,} entities, where more threads "
                             "only add OpenMP overhead; torch's default otherwise)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def bounded_entities(value: str) -> int:
    from .arguments import bounded

    return bounded(int, 4, what="an integer")(value)


def _load_split(parser, args):
    """The data the options name; a folder that does not hold a usable graph is a user error (exit 2)."""
    try:
        if args.inductive:
            split = load_inductive(*args.inductive)
        elif args.transductive:
            split = load_transductive(args.transductive)
        else:
            return synthetic_split(args.synthetic_entities, args.synthetic_relations, min(4, args.synthetic_entities),
                                   args.synthetic_edges, seed=args.seed)
    except (OSError, ValueError) as error:
        flag = "--inductive" if args.inductive else "--transductive"
        parser.error(f"argument {flag}: {error}")
    if split.train.num_edges == 0:
        parser.error(f"argument {'--inductive' if args.inductive else '--transductive'}: the training graph has no "
                     "triples (empty train.txt?)")
    return split


def _metrics_only(m: dict) -> dict:
    return {k: v for k, v in m.items() if k not in ("tail_ranks", "head_ranks")}


NUM_NEGATIVE = 512  # ULTRA's negatives per triple
SMALL_GRAPH = 10_000  # entities; below this one intra-op thread is fastest on CPU


def _set_threads(args, device, num_entities: int) -> None:
    """--threads if given; else one thread for small graphs on CPU (2 threads made a 50-entity
    training step 40x slower on a busy 2-core machine: OpenMP overhead, no work to share)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    elif torch.device(device).type == "cpu" and num_entities < SMALL_GRAPH:
        torch.set_num_threads(1)


def eval_main(argv=None) -> int:
    parser = OneLineParser(prog="kmas-eval", description="Filtered ranking (MRR, Hits@1/3/10) of an ULTRA checkpoint.")
    parser.add_argument("--checkpoint", type=existing_file, help="ULTRA checkpoint (.pth with a 'model' state dict); default: random init")
    _add_data_args(parser)
    parser.add_argument("--split", choices=("test", "valid"), default="test",
                        help="test (default) or valid; with --inductive, 'test' is INFERENCE_DIR's valid.txt + test.txt "
                             "together (ULTRA's GraIL protocol) and 'valid' is TRAIN_DIR's valid.txt on TRAIN_DIR's graph")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="queries per forward (default 16, ULTRA's)")
    parser.add_argument("--limit", type=positive_int, default=None, help="evaluate only the first N queries (N >= 1)")
    args = parser.parse_args(argv)
    warn_if_shadowed("kmas-eval")
    device = setup_distributed(args.device)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    split = _load_split(parser, args)
    _set_threads(args, device, split.test.num_nodes)
    try:
        model = load_checkpoint(args.checkpoint) if args.checkpoint else Ultra()
    except CheckpointError as error:
        parser.exit(2, f"kmas-eval: error: {error}\n")
    model = model.to(device)
    print(f"kmas-eval: message passing {message_passing_path(device)}", file=sys.stderr)
    data = (split.test if args.split == "test" else split.valid).to(device)
    filt = (split.test_filter if args.split == "test" else split.valid_filter).to(device)
    queries = triples_of(data)
    total = int(queries.shape[0])
    if total == 0:
        parser.error(f"argument --split: the {args.split} split has no queries (empty {args.split}.txt?)")
    if args.limit is not None:
        queries = queries[: args.limit]
    load_s = time.perf_counter() - start
    metrics = evaluate(model, data, queries, filt, batch_size=args.batch_size, progress=not args.no_progress,
                       desc=f"{split.name}:{args.split}")
    result = {
        **_metrics_only(metrics),
        "dataset": split.name,
        "split": args.split,
        "checkpoint": args.checkpoint,
        "num_queries": int(queries.shape[0]),
        "num_queries_total": total,
        "limit": args.limit,
        "num_entities": data.num_nodes,
        "num_relations": data.num_relations,
        "num_fact_edges": data.num_edges,
        "load_seconds": round(load_s, 3),
        "eval_seconds": round(time.perf_counter() - start - load_s, 3),
        "device": str(device),
        "message_passing": message_passing_path(device),
    }
    print(json.dumps(result), flush=True)
    return 0


# options that may differ on --resume: where and how verbosely it runs, not what it computes
RESUME_OVERRIDABLE = ("resume", "device", "threads", "no_progress", "log_negatives")
# not stored in the checkpoint's options
TRANSIENT_OPTIONS = ("resume", "log_negatives")
# what a run saved before --kmas-loss / --kmas-fallback / --kmas-directions existed was trained with
STARTED_BEFORE_STAGE3 = {"kmas_loss": "adversarial", "kmas_fallback": "one_hot", "kmas_directions": "mixed"}


def top_relations_arg(value: str) -> int | str:
    """--kmas-top-relations: a positive count, or "all" (every relation)."""
    if value == "all":
        return value
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {value!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {value!r}")
    return count


def _train_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="kmas-train", description="ULTRA training with random / strict / KMAS negatives.")
    parser.add_argument("--checkpoint", type=existing_file, help="start from this checkpoint's weights (default: from scratch)")
    parser.add_argument("--resume", metavar="DIR", type=existing_dir, help="continue the run saved in DIR/last.pth, with the "
                        "options it was started with (only --device, --threads, --no-progress, --log-negatives may be given again)")
    _add_data_args(parser)
    parser.add_argument("--dim", type=positive_int, help=f"hidden size of a model trained from scratch (default {DIM}, ULTRA's)")
    parser.add_argument("--num-layers", type=positive_int, help=f"layers per NBFNet of a model trained from scratch (default {NUM_LAYERS})")
    parser.add_argument("--negatives", choices=NEGATIVE_MODES, default="strict", help="random, strict (default, ULTRA's) or kmas")
    parser.add_argument("--steps", type=positive_int, default=100, help="training steps (default 100)")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="training triples per step (default 64, ULTRA's)")
    parser.add_argument("--num-negative", type=positive_int, default=None, help=f"negatives per triple, from 1 to the training "
                        f"graph's entities minus 1 (default {NUM_NEGATIVE}, ULTRA's, or N - 1 on a graph of N <= {NUM_NEGATIVE} entities)")
    parser.add_argument("--lr", type=positive_float, default=5e-4, help="AdamW learning rate (default 5e-4)")
    parser.add_argument("--adversarial-temperature", type=positive_float, default=1.0,
                        help="self-adversarial weighting temperature (default 1)")
    parser.add_argument("--valid-every", type=non_negative_int, default=0, help="validate every N steps (0: at the end only)")
    parser.add_argument("--valid-limit", type=positive_int, default=None, help="validate on the first N validation triples")
    parser.add_argument("--eval-batch-size", type=positive_int, default=16, help="queries per evaluation forward (default 16)")
    parser.add_argument("--out-dir", type=output_dir, default=None, help="write last.pth (at the start and every --save-every "
                        "steps), model_step_<n>.pth and best.pth here")
    parser.add_argument("--save-every", type=non_negative_int, default=100, help="with --out-dir: write last.pth (the full training "
                        "state) every N steps (default 100; 0: only at the start and the end); also written on SIGTERM / SIGINT")
    parser.add_argument("--test", action="store_true", help="after training, evaluate on the test split")
    parser.add_argument("--test-limit", type=positive_int, default=None, help="with --test: the first N test queries only")
    parser.add_argument("--kmas-temperature", type=positive_float, default=None,
                        help="KMAS relation-softmax temperature, > 0 (default: KMASSampler's)")
    parser.add_argument("--kmas-top-relations", type=top_relations_arg, default=None, metavar="M|all",
                        help="mix the M most similar relations, or all (default: KMASSampler's, 10)")
    parser.add_argument("--kmas-backend", choices=("auto", "reference", "cpu", "cuda", "triton"), default="auto",
                        help="mining backend (default auto)")
    parser.add_argument("--kmas-loss", choices=HARD_WEIGHTINGS, default=TRAIN_HARD_WEIGHTING,
                        help=f"how the loss weighs the hard negatives (kmas_kernels.loss; default {TRAIN_HARD_WEIGHTING}; "
                        "adversarial: ULTRA's loss unchanged)")
    parser.add_argument("--kmas-fallback", choices=FALLBACKS, default=SAMPLER_FALLBACK,
                        help=f"relations without a cached similarity row (default {SAMPLER_FALLBACK})")
    parser.add_argument("--kmas-directions", choices=DIRECTIONS, default=None,
                        help=f"mix relations of the query's direction only (separate) or all (mixed); default "
                        f"{SAMPLER_DIRECTIONS} where the graph has inverse relations")
    # the hard-negative schedule (kmas_kernels.HardRatioSchedule); unset values take its defaults
    parser.add_argument("--kmas-warmup-steps", type=non_negative_int, default=None, help="steps with no hard negatives (default 10%%)")
    parser.add_argument("--kmas-peak-step", type=non_negative_int, default=None, help="step of the largest hard share (default 40%%)")
    parser.add_argument("--kmas-max-ratio", type=unit_interval, default=None, help="hard share at the peak, in [0, 1] (default 0.5)")
    parser.add_argument("--kmas-final-ratio", type=unit_interval, default=None, help="hard share at the end, in [0, 1] (default 0.1)")
    parser.add_argument("--log-negatives", metavar="FILE", default=None, help="debugging / tests: append every step's "
                        "(B, 1 + k, 3) batch, negatives included, as a JSON line to FILE (FILE.rank<r> under DDP)")
    return parser


def _absolute_paths_in(options: dict) -> None:
    """Stored options must still name the same files when --resume runs from another folder."""
    if options.get("inductive"):
        options["inductive"] = [os.path.abspath(p) for p in options["inductive"]]
    for name in ("transductive", "checkpoint", "out_dir"):
        if options.get(name):
            options[name] = os.path.abspath(options[name])


def _resumed_args(parser: argparse.ArgumentParser, args: argparse.Namespace, argv) -> tuple[argparse.Namespace, dict]:
    """The stored options of ``args.resume``'s run, with the overridable ones given now."""
    state = load_training_state(args.resume)
    only_given = _train_parser()
    for action in only_given._actions:  # absent options stay absent (set_defaults would type-convert SUPPRESS)
        action.default = argparse.SUPPRESS
    given = vars(only_given.parse_args(argv))  # only the options on this command line
    _absolute_paths_in(given)
    stored = {**STARTED_BEFORE_STAGE3, **state["options"]}  # runs saved before these options existed
    conflicts = [f"--{k.replace('_', '-')} {v!r} (stored: {stored.get(k)!r})" for k, v in given.items()
                 if k not in RESUME_OVERRIDABLE and stored.get(k) != v]
    if conflicts:
        parser.error("--resume continues a run with the options it was started with; these differ: " + ", ".join(conflicts))
    unknown = sorted(set(stored) - set(vars(args)))
    if unknown:
        parser.error(f"--resume {args.resume}: stored options {unknown} are unknown to this kmas-train")
    resumed = argparse.Namespace(**{**vars(args), **stored, **{k: v for k, v in given.items() if k in RESUME_OVERRIDABLE}})
    resumed.out_dir = os.path.abspath(args.resume)  # the folder it is in now, even if it moved
    return resumed, state


def _check_against_graph(parser, args, split) -> None:
    """Options whose range depends on the loaded graph: --num-negative (a row has at most N - 1 other entities)."""
    entities = split.train.num_nodes
    if args.num_negative is None:  # left out: ULTRA's 512, or every other entity on a smaller graph
        args.num_negative = max(1, min(NUM_NEGATIVE, entities - 1))
    elif args.num_negative > entities - 1:
        parser.error(f"argument --num-negative: expected an integer from 1 to {entities - 1} (the training graph's "
                     f"{entities} entities minus the answer), got {args.num_negative}")


def train_main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _train_parser()
    args = parser.parse_args(argv)
    warn_if_shadowed("kmas-train")
    state = None
    try:
        if args.resume:
            args, state = _resumed_args(parser, args, argv)
        else:
            _absolute_paths_in(vars(args))
            if args.out_dir and os.path.exists(os.path.join(args.out_dir, LAST_CHECKPOINT)):
                parser.error(f"--out-dir {args.out_dir} already holds a run ({LAST_CHECKPOINT}); continue it with "
                             f"--resume {args.out_dir}, or choose another folder (starting over would overwrite it)")
        device = setup_distributed(args.device)
        split = _load_split(parser, args)
        _check_against_graph(parser, args, split)
        _set_threads(args, device, split.train.num_nodes)
        torch.manual_seed(args.seed)  # the initial weights follow --seed
        if state is not None:
            model = Ultra(**state["architecture"])  # weights: from the state, inside train()
        elif args.checkpoint:
            model = load_checkpoint(args.checkpoint)
            arch = architecture_of(model)
            for name in ("dim", "num_layers"):
                if getattr(args, name) is not None and getattr(args, name) != arch[name]:
                    parser.error(f"--{name.replace('_', '-')} {getattr(args, name)} differs from --checkpoint's {arch[name]}")
        else:
            model = Ultra(dim=args.dim or DIM, num_layers=args.num_layers or NUM_LAYERS)
    except CheckpointError as error:
        parser.exit(2, f"kmas-train: error: {error}\n")
    kmas_options = {"backend": args.kmas_backend, "fallback": args.kmas_fallback, "directions": args.kmas_directions}
    if args.kmas_temperature is not None:
        kmas_options["temperature"] = args.kmas_temperature
    if args.kmas_top_relations is not None:
        kmas_options["top_relations"] = None if args.kmas_top_relations == "all" else args.kmas_top_relations
    schedule = {name: getattr(args, f"kmas_{name}") for name in ("warmup_steps", "peak_step", "max_ratio", "final_ratio")}
    if any(value is not None for value in schedule.values()):
        from kmas_kernels import HardRatioSchedule

        try:
            kmas_options["schedule"] = HardRatioSchedule(args.steps, **{k: v for k, v in schedule.items() if v is not None})
        except ValueError as error:  # the options' order (warm-up <= peak <= steps): name the flags
            parser.error(f"arguments --kmas-warmup-steps / --kmas-peak-step / --kmas-max-ratio / --kmas-final-ratio "
                         f"with --steps {args.steps}: {error}")
    print(f"kmas-train: message passing {message_passing_path(device)}", file=sys.stderr)
    options = {k: v for k, v in vars(args).items() if k not in TRANSIENT_OPTIONS}
    _, rank = world()
    try:
        summary = train(model, split, steps=args.steps, batch_size=args.batch_size, num_negative=args.num_negative, lr=args.lr,
                        negatives=args.negatives, adversarial_temperature=args.adversarial_temperature,
                        valid_every=args.valid_every, valid_limit=args.valid_limit, eval_batch_size=args.eval_batch_size,
                        out_dir=args.out_dir, device=device, seed=args.seed, progress=not args.no_progress,
                        kmas_options=kmas_options, save_every=args.save_every, resume=state, options=options,
                        negatives_log=args.log_negatives, hard_weighting=args.kmas_loss)
    except TrainingInterrupted as stopped:
        if rank == 0:
            print(f"kmas-train: {stopped}; continue with: kmas-train --resume {args.out_dir}", file=sys.stderr)
            print(json.dumps({"interrupted": signal.Signals(stopped.signum).name, "steps": stopped.step,
                              "checkpoint": str(stopped.path) if stopped.path else None}), flush=True)
        return 128 + stopped.signum
    result = {k: v for k, v in summary.items() if k != "losses"}
    result["dataset"] = split.name
    if args.test and rank == 0:
        queries = triples_of(split.test)
        if args.test_limit:
            queries = queries[: args.test_limit]
        test = evaluate(model, split.test.to(device), queries.to(device), split.test_filter.to(device),
                        batch_size=args.eval_batch_size, progress=not args.no_progress, desc="test")
        result["test"] = _metrics_only(test)
    if rank == 0:
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":  # python -m kmas_ultra.cli eval|train ...
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command not in ("eval", "train"):
        sys.exit("usage: python -m kmas_ultra.cli eval|train [options]")
    sys.exit(eval_main(sys.argv[2:]) if command == "eval" else train_main(sys.argv[2:]))
