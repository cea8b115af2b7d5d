"""``kmas-pretrain``: the pre-training study, strict random vs KMAS negatives (docs/pretraining.md).

    kmas-pretrain diagnose            # training-free: KMAS settings on the validation graphs (minutes)
    kmas-pretrain run --configs ...   # pre-train fresh ULTRA models; validation MRR over steps
    kmas-pretrain test --configs ...  # zero-shot test of finished runs (once, for the chosen setting)

The design (training / validation / test graphs, selection) ships with the package as
kmas_bench/study/pretrain_study.json (``--study FILE`` overrides it). Data: $KMAS_SHARED/data
(or ``--data-root``). Results: JSON + PNG under --out (default ./kmas-bench-results).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .locations import data_root, study_file  # noqa: F401  (also imported from here)


def _common(p: argparse.ArgumentParser) -> None:
    from kmas_ultra.arguments import existing_dir, output_dir, positive_int

    from .cli import default_out

    p.add_argument("--data-root", type=lambda value: Path(existing_dir(value)), default=None, help="shared data folder (default $KMAS_SHARED/data or ../shared/data)")
    p.add_argument("--out", type=lambda value: Path(output_dir(value)), default=None, help=f"results folder (default {default_out()})")
    p.add_argument("--name", default=None, help="file-name stem of the results")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def diagnose_main(args) -> int:
    import json

    from kmas_kernels.core.files import atomic_write_json

    from .diagnose import diagnose, plot
    from .measure import machine_info

    root = args.data_root or data_root()
    if root is None:
        sys.exit("kmas-pretrain diagnose: no data folder (set --data-root or KMAS_SHARED, the folder holding data/)")
    study = json.loads(study_file().read_text())
    graphs = [str(root / g) for g in (args.graphs or study["train_graphs"])]
    checkpoint = args.checkpoint or str(root.parent / "checkpoints" / "ultra_3g.pth")
    tops = [None if m in ("all", "none") else int(m) for m in args.top_relations]
    result = diagnose(graphs, checkpoint=checkpoint, temperatures=args.temperatures, top_relations=tops,
                      batch=args.batch, k=args.negatives, num_batches=args.batches, seed=args.seed,
                      progress=not args.no_progress, log=lambda m: print(m, file=sys.stderr))
    result["machine"] = machine_info("cpu")
    result["command"] = ["kmas-pretrain", *sys.argv[1:]]
    from .cli import default_out

    out = args.out or default_out()
    stem = args.name or "pretrain_diagnose"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}.json"
    atomic_write_json(result, path)
    plot(result, out / f"{stem}.png")
    print(f"wrote {path} and {stem}.png ({result['seconds']:.0f} s)")
    return 0


def _top(value: str) -> str:
    """--top-relations of diagnose: 'all', 'none' or a positive integer (kept as text)."""
    if value in ("all", "none") or (value.isdigit() and int(value) >= 1):
        return value
    raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {value!r}")


def main(argv=None) -> int:
    from kmas_ultra.arguments import OneLineParser, existing_file, positive_float, positive_int, seed_int

    p = OneLineParser(prog="kmas-pretrain", description=__doc__.splitlines()[0].replace("``", ""))
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("diagnose", help="training-free: KMAS settings on the validation graphs")
    _common(d)
    d.add_argument("--graphs", nargs="+", default=None, help="data folders relative to the data root (default: the study's training graphs)")
    d.add_argument("--checkpoint", type=existing_file, default=None, help="default <data root>/../checkpoints/ultra_3g.pth")
    d.add_argument("--temperatures", type=positive_float, nargs="+", default=[0.03, 0.1, 0.3, 1.0],
                   help="KMAS temperatures to try (default 0.03 0.1 0.3 1)")
    d.add_argument("--top-relations", type=_top, nargs="+", default=["all", "3", "10", "30"],
                   help="top_relations values to try: positive integers or all (default all 3 10 30)")
    d.add_argument("--batch", type=positive_int, default=64, help="queries per batch (default 64)")
    d.add_argument("--negatives", type=positive_int, default=128, help="negatives per query (default 128)")
    d.add_argument("--batches", type=positive_int, default=2, help="batches per graph and setting (default 2)")
    d.add_argument("--seed", type=seed_int, default=0, help="random seed (default 0)")
    from . import pretrain

    pretrain.add_parsers(sub, _common)
    args = p.parse_args(argv)
    from kmas_kernels.installation import warn_if_shadowed

    warn_if_shadowed("kmas-pretrain")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.command == "diagnose":
        return diagnose_main(args)
    return pretrain.main(args)


if __name__ == "__main__":
    sys.exit(main())
