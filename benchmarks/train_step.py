"""Training-step benchmark: kmas_ultra with fused message passing vs ULTRA's own code, in one run.

    ULTRA_PATH=/path/to/ULTRA python benchmarks/train_step.py                      # CPU, (16, 64) and (64, 512)
    ULTRA_PATH=/path/to/ULTRA python benchmarks/train_step.py --device cuda \\
        --out benchmarks/results/train_step_cuda.json                                # GPU (Triton kernels)

GraIL fb237_v1 training graph, ultra_3g weights (paths under ../shared by default, or KMAS_SHARED).
Repetitions are interleaved across implementations (see kmas_bench.train_step); each implementation's
peak memory comes from its own fresh process. Writes the JSON (machine recorded) and a PNG.
Without ULTRA_PATH, only kmas_ultra's paths run (fused, and the plain-torch reference with --reference).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))  # kmas_bench / kmas_ultra from the checkout when not installed


def shared_dir() -> Path:
    env = os.environ.get("KMAS_SHARED")
    return Path(env) if env else ROOT.parent / "shared"


def write_json_atomic(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(payload, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = result["configs"]
    names = [n for n in ("kmas_fused", "kmas_reference", "ultra") if n in configs[0]["implementations"]]
    phases = ("forward", "loss", "backward", "optimizer")
    colors = {"forward": "#4c72b0", "loss": "#dd8452", "backward": "#55a868", "optimizer": "#c44e52"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    width = 0.8 / len(names)
    for c, cfg in enumerate(configs):
        for i, name in enumerate(names):
            med = cfg["implementations"][name]["median_seconds"]
            bottom = 0.0
            for p in phases:
                ax.bar(c + i * width, med[p], width, bottom=bottom, color=colors[p], edgecolor="black", linewidth=0.4,
                       label=p if (c == 0 and i == 0) else None)
                bottom += med[p]
            ax.text(c + i * width, bottom, name.replace("kmas_", ""), ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks([c + width * (len(names) - 1) / 2 for c in range(len(configs))])
    ax.set_xticklabels([f"B={cfg['batch']}, k={cfg['negatives']}" for cfg in configs])
    ax.set_ylabel("seconds per training step (median)")
    ax.legend(fontsize=8)
    ax.set_title("training step by phase")
    ax = axes[1]
    for c, cfg in enumerate(configs):
        for i, name in enumerate(names):
            mem = cfg.get("memory", {}).get(name, {}).get("extra_peak_bytes")
            if mem is not None:
                ax.bar(c + i * width, mem / 2**20, width, color=f"C{i}", label=name if c == 0 else None)
    ax.set_xticks([c + width * (len(names) - 1) / 2 for c in range(len(configs))])
    ax.set_xticklabels([f"B={cfg['batch']}, k={cfg['negatives']}" for cfg in configs])
    ax.set_ylabel("extra peak memory of two steps (MiB)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title("peak memory (own process each)")
    machine = result["machine"]
    fig.suptitle(f"ULTRA training step, {Path(result['graph']['data']).name}, {machine['device_name']}, "
                 f"{machine['torch_threads']} threads, load {machine['load_average_1min']:.1f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(shared_dir() / "data" / "grail" / "fb237_v1"))
    parser.add_argument("--checkpoint", default=str(shared_dir() / "checkpoints" / "ultra_3g.pth"))
    parser.add_argument("--configs", default="16,64;64,512", help="B,k pairs separated by ';'")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--reference", action="store_true", help="also time kmas_ultra's plain-torch message passing (slow)")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_step_cpu.json"))
    parser.add_argument("--replot", metavar="JSON", help="only redraw the PNG of an existing result file")
    args = parser.parse_args(argv)
    if args.replot:
        plot(json.loads(Path(args.replot).read_text()), Path(args.replot).with_suffix(".png"))
        return 0

    import torch

    from kmas_bench.measure import machine_info, run_isolated
    from kmas_bench.train_step import compare, import_ultra

    if args.threads:
        torch.set_num_threads(args.threads)
    ultra_path = os.environ.get("ULTRA_PATH")
    ultra = import_ultra(ultra_path)
    implementations = ["kmas_fused"] + (["kmas_reference"] if args.reference else [])
    if isinstance(ultra, str):
        print(f"train_step: ULTRA's own code not compared ({ultra})", file=sys.stderr)
    else:
        implementations.append("ultra")
    configs = [tuple(int(v) for v in pair.split(",")) for pair in args.configs.split(";") if pair.strip()]
    machine_before = machine_info(args.device)
    result = compare(data=args.data, checkpoint=args.checkpoint, configs=configs, implementations=implementations,
                     repeats=args.repeats, warmup=args.warmup, device=args.device, ultra_path=ultra_path,
                     seed=args.seed, profile=not args.no_profile)
    if not args.no_memory:
        for cfg in result["configs"]:
            cfg["memory"] = {}
            for name in implementations:
                kwargs = dict(implementation=name, data=os.path.abspath(args.data), checkpoint=os.path.abspath(args.checkpoint),
                              batch=cfg["batch"], k=cfg["negatives"], device=args.device, ultra_path=ultra_path,
                              seed=args.seed, threads=torch.get_num_threads())
                cfg["memory"][name] = run_isolated("kmas_bench.train_step:measure_memory", kwargs)
            mem = cfg["memory"]
            if "ultra" in mem and "error" not in mem["ultra"] and "error" not in mem["kmas_fused"]:
                cfg["memory_ratio_ultra_over_ours"] = mem["ultra"]["extra_peak_bytes"] / max(1, mem["kmas_fused"]["extra_peak_bytes"])
    result["machine"] = machine_info(args.device)
    result["machine"]["load_average_1min_at_start"] = machine_before["load_average_1min"]
    result["machine"]["load_average_1min_5min_15min_at_end"] = list(os.getloadavg())
    result["parameters"] = {"repeats": args.repeats, "warmup": args.warmup, "configs": configs, "seed": args.seed,
                            "checkpoint": args.checkpoint, "ultra_path": ultra_path, "implementations": implementations}
    out = Path(args.out)
    write_json_atomic(out, result)
    plot(result, out.with_suffix(".png"))
    for cfg in result["configs"]:
        rows = cfg["implementations"]
        line = {name: {p: round(v, 4) for p, v in rows[name]["median_seconds"].items()} for name in implementations}
        print(json.dumps({"batch": cfg["batch"], "k": cfg["negatives"], "median_seconds": line,
                          "speedup_vs_ultra": rows.get("speedup_vs_ultra"),
                          "memory_ratio_ultra_over_ours": cfg.get("memory_ratio_ultra_over_ours")}))
    print(f"wrote {out} and {out.with_suffix('.png')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
