"""The side-by-side table (text) and the PNG plots of a kmas-bench result."""

from __future__ import annotations

import math
from pathlib import Path


def _fmt(value, spec: str, missing: str = "—") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return format(value, spec)


def _mib(value) -> str:
    if value is None:
        return "—"
    return f"{value / 2**20:.1f}" if value >= 2**20 / 10 else "< 0.1"


def table(result: dict) -> str:
    """ONE table: a row per sampler; time, extra peak memory, hardness metrics."""
    from .samplers import label

    rows = result["table"]["rows"]
    typed = result["graph"]["typed"]
    type_col = "type-consistent" if typed else "in obs. range"
    head = f"{'sampler':46s} {'ms / call':>10s} {'extra peak MiB':>15s} {type_col:>16s} {'false-neg rate':>15s} {'model score':>12s}"
    lines = [head, "-" * len(head)]
    notes = []
    for row in rows:
        cost, hard = row.get("cost", {}), row.get("hardness", {})
        if "skipped" in cost or "skipped" in hard:
            lines.append(f"{label(row['sampler']):46s} skipped: {cost.get('skipped') or hard.get('skipped')}")
            continue
        ms = _fmt(1e3 * cost["seconds_per_call"], ".2f") if "seconds_per_call" in cost else "error"
        mem = _mib(cost.get("extra_peak_bytes")) if "extra_peak_bytes" in cost else "error"
        if "error" in cost:
            notes.append(f"{row['sampler']}: {cost['error']}")
        lines.append(f"{label(row['sampler']):46s} {ms:>10s} {mem:>15s} {_fmt(hard.get('type_consistency'), '.3f'):>16s} "
                     f"{_fmt(hard.get('false_negative_rate'), '.4f'):>15s} {_fmt(hard.get('mean_score'), '.3f'):>12s}")
    p = result["parameters"]
    g = result["graph"]
    lines.append("")
    lines.append(f"graph: {g['name']}, {g['num_train']} training triples; B={p['batch']}, k={p['negatives']}, "
                 f"device {result['machine']['device']} ({result['machine']['device_name']}); "
                 f"time: median of {p['repeats']} calls, each sampler in its own process")
    lines.extend(f"note: {n}" for n in result["table"].get("notes", []) + notes)
    return "\n".join(lines)


def overhead_lines(over: dict) -> str:
    if not over:
        return ""
    modes, p = over["modes"], over["parameters"]
    lines = [f"training-step overhead (N={modes.get('strict', {}).get('num_entities', p['num_entities'])}, B={p['batch']}, "
             f"k={p['negatives']}, {p['steps']} timed steps, KMAS hard share {p['hard_ratio']}):"]
    lines.append(f"  {'negatives':10s} {'step s':>9s} {'mining s':>10s} {'mining share':>13s} {'mining extra MiB':>17s} "
                 f"{'step extra peak MiB':>20s} {'process peak MiB':>17s}")
    for mode, row in modes.items():
        if "error" in row:
            lines.append(f"  {mode:10s} error: {row['error']}")
            continue
        lines.append(f"  {mode:10s} {row['step_seconds']:9.3f} {row['mining_seconds']:10.4f} {100 * row['mining_share']:12.2f}% "
                     f"{_mib(row['mining_isolated_extra_peak_bytes']):>17s} {_mib(row['step_extra_peak_bytes']):>20s} "
                     f"{_mib(row['process_peak_bytes']):>17s}")
    c = over.get("comparison")
    if c:
        lines.append(f"  KMAS vs strict, step time: {100 * c['kmas_step_time_vs_strict']:+.2f}% measured (two processes), "
                     f"{100 * c['kmas_step_time_vs_strict_from_mining']:+.2f}% from the mining times alone; "
                     f"process peak memory: {100 * c['kmas_process_peak_vs_strict']:+.2f}% measured, "
                     f"{100 * c['kmas_process_peak_vs_strict_from_mining']:+.2f}% from mining's own extra peak (goal, docs/semantics.md §10: ≤ 1 % each)")
    return "\n".join(lines)


def training_lines(tr: dict) -> str:
    if not tr:
        return ""
    lines = [f"training effect ({tr['setting']}; {tr['parameters']['steps']} steps, B={tr['parameters']['batch']}, "
             f"k={tr['parameters']['negatives']}, seeds {tr['parameters']['seeds']}, "
             f"{tr['parameters']['num_test_queries']} test queries):"]
    if tr.get("zero_shot"):
        z = tr["zero_shot"]
        lines.append(f"  {'zero-shot':18s} MRR {z['mrr']:.4f}           Hits@10 {z['hits@10']:.4f}")
    for mode, s in tr["summary"].items():
        sign = "+" if mode == "kmas_minus_strict" else ""  # the paired per-seed difference
        lines.append(f"  {mode:18s} MRR {s['mrr']['mean']:{sign}.4f} ± {s['mrr']['std']:.4f}  "
                     f"Hits@10 {s['hits@10']['mean']:{sign}.4f} ± {s['hits@10']['std']:.4f}  (mean ± std over {s['mrr']['n']} seeds)")
    return "\n".join(lines)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_sweep(result: dict, path: Path) -> None:
    """Time and extra peak memory vs N, log-log, a line per sampler."""
    plt = _plt()
    rows = result.get("sweep") or result.get("rows") or []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in sorted({r["sampler"] for r in rows if "seconds_per_call" in r}):
        points = sorted((r["num_entities"], r["seconds_per_call"], r["extra_peak_bytes"]) for r in rows
                        if r.get("sampler") == name and "seconds_per_call" in r)
        n = [q[0] for q in points]
        axes[0].plot(n, [1e3 * q[1] for q in points], marker="o", label=name)
        axes[1].plot(n, [max(q[2], 2**10) / 2**20 for q in points], marker="o", label=name)
    for ax, text in zip(axes, ("time per call (ms)", "extra peak memory (MiB, floor 1 KiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("entities N")
        ax.set_ylabel(text)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    p, m = result["parameters"], result["machine"]
    fig.suptitle(f"B={p['batch']}, k={p['negatives']}, {p['device']}: {m.get('device_name', m['cpu'])}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_table(result: dict, path: Path) -> None:
    """Bars per sampler: time, extra peak memory, type consistency, false-negative rate."""
    plt = _plt()
    rows = [r for r in result["table"]["rows"] if "seconds_per_call" in r.get("cost", {}) and "type_consistency" in r.get("hardness", {})]
    names = [r["sampler"] for r in rows]
    panels = [
        ("time per call (ms)", [1e3 * r["cost"]["seconds_per_call"] for r in rows], True),
        ("extra peak memory (MiB)", [max(r["cost"]["extra_peak_bytes"], 2**10) / 2**20 for r in rows], True),
        ("type-consistent share" if result["graph"]["typed"] else "share in observed range", [r["hardness"]["type_consistency"] for r in rows], False),
        ("false-negative rate", [r["hardness"]["false_negative_rate"] for r in rows], False),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    for ax, (title, values, log) in zip(axes, panels):
        ax.barh(range(len(names)), values, color=["tab:orange" if n.startswith("kmas-") else "tab:blue" for n in names])
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(names if ax is axes[0] else [""] * len(names), fontsize=8)
        ax.set_title(title, fontsize=9)
        if log:
            ax.set_xscale("log")
        ax.grid(axis="x", alpha=0.3)
    p = result["parameters"]
    fig.suptitle(f"{result['graph']['name']}, B={p['batch']}, k={p['negatives']}, {result['machine']['device_name']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_overhead(over: dict, path: Path) -> None:
    """Stacked bars: mining vs the rest of the step, per kind of negatives."""
    plt = _plt()
    modes = {m: r for m, r in over["modes"].items() if "error" not in r}
    if not modes:
        return
    fig, ax = plt.subplots(figsize=(6, 3))
    names = list(modes)
    mining = [modes[m]["mining_seconds"] for m in names]
    rest = [modes[m]["step_seconds"] - modes[m]["mining_seconds"] for m in names]
    ax.barh(names, rest, label="forward + backward + AdamW", color="tab:gray")
    ax.barh(names, mining, left=rest, label="negative mining", color="tab:orange")
    for i, m in enumerate(names):
        ax.text(rest[i] + mining[i], i, f" {100 * modes[m]['mining_share']:.2f}%", va="center", fontsize=8)
    ax.set_xlabel("seconds per training step (median)")
    ax.legend(fontsize=8, loc="lower right")
    p = over["parameters"]
    ax.set_title(f"B={p['batch']}, k={p['negatives']}, hard share {p['hard_ratio']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_training(tr: dict, path: Path) -> None:
    """MRR and Hits@10 per seed and kind of negatives."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    modes = [m for m in tr["summary"] if m != "kmas_minus_strict"]
    for ax, metric in zip(axes, ("mrr", "hits@10")):
        for i, mode in enumerate(modes):
            values = [r["test"][metric] for r in tr["runs"] if r["mode"] == mode]
            ax.scatter([i] * len(values), values, alpha=0.7)
            ax.errorbar([i + 0.15], [tr["summary"][mode][metric]["mean"]], yerr=[tr["summary"][mode][metric]["std"]], fmt="o", color="k")
        if tr.get("zero_shot"):
            ax.axhline(tr["zero_shot"][metric], ls="--", color="tab:gray", label="zero-shot")
            ax.legend(fontsize=7)
        ax.set_xticks(range(len(modes)))
        ax.set_xticklabels(modes)
        ax.set_title(metric, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(tr["setting"], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
