"""The side-by-side table (text) and the PNG plots of a kmas-bench result."""

from __future__ import annotations

import math
import re
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
    head = (f"{'sampler':46s} {'ms / call':>10s} {'extra peak MiB':>15s} {type_col:>16s} {'false-neg rate':>15s} "
            f"{'FN (all known)':>15s} {'model score':>12s} {'≥ positive':>11s} {'hub bias':>9s} {'n_eff(w)':>9s}")
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
                     f"{_fmt(hard.get('false_negative_rate'), '.4f'):>15s} {_fmt(hard.get('false_negative_rate_all'), '.4f'):>15s} "
                     f"{_fmt(hard.get('mean_score'), '.3f'):>12s} {_fmt(hard.get('share_scored_above_positive'), '.3f'):>11s} "
                     f"{_fmt(hard.get('hub_bias'), '.2f'):>9s} {_fmt(hard.get('effective_relations'), '.1f'):>9s}")
    p = result["parameters"]
    g = result["graph"]
    lines.append("")
    lines.append(f"graph: {g['name']}, {g['num_train']} training triples; B={p['batch']}, k={p['negatives']}, "
                 f"device {result['machine']['device']} ({result['machine']['device_name']}); "
                 f"time: median of {p['repeats']} calls, each sampler in its own process")
    lines.append("false-neg rate: share of negatives that are held-out true triples (valid + test); FN (all known): "
                 "also training triples; ≥ positive: share the model scores at least as high as the row's positive; "
                 "hub bias: mean tail-degree of the negatives / that of the true answers; n_eff(w): exp(entropy) of "
                 "KMAS's relation weights")
    lines.extend(f"note: {n}" for n in result["table"].get("notes", []) + notes)
    return "\n".join(lines)


def busy_warning(result: dict) -> str:
    """A warning line when the machine was busy while measuring (load >= cores), else ""."""
    busy = result.get("busy") or {}
    if not busy.get("any"):
        return ""
    where = ", ".join(busy.get("busy_measurements") or []) or "at the start or the end of the run"
    return (f"WARNING: the machine was busy while measuring (1-minute load average up to {busy['max_load_average_1min']:.1f} "
            f"on {busy['cpu_count']} cores; busy: {where}). Times are upper bounds and may be far off; compare ratios "
            f"measured side by side, or rerun on an idle machine. The result file marks this (\"busy\").")


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


KMAS_COLOR, BASELINE_COLOR = "tab:orange", "tab:blue"


def _short(text: str) -> str:
    """Absolute paths of the measuring machine reduced to their last component."""
    return re.sub(r"(?:/[^\s,/()]+)+/([^\s,/()]+)", r"\1", str(text))


def _device(result: dict) -> str:
    m = result.get("machine", {})
    device = result.get("parameters", {}).get("device") or m.get("device", "cpu")
    return f"{device} ({m.get('device_name') or m.get('cpu', '?')})"


def _busy(result: dict) -> str:
    """A title suffix marking results measured on a busy machine (load >= cores)."""
    m = result.get("machine", {})
    busy = result.get("busy") or {  # results written before the field existed: the load at the start
        "any": m.get("load_average_1min", 0) >= (m.get("cpu_count") or 1),
        "max_load_average_1min": m.get("load_average_1min", 0), "cpu_count": m.get("cpu_count")}
    if busy.get("any"):
        return f"\nBUSY machine (load {busy['max_load_average_1min']:.1f} ≥ {busy['cpu_count']} cores): times are upper bounds"
    return ""


def _plain_log_axis(axis, low: float | None = None, high: float | None = None) -> None:
    """Log axis with ticks written as plain numbers (0.5, 1, 20, 500, ...): at 1, 2, 5 x 10^n when
    the data span at most 3 decades, at powers of ten otherwise (so that labels never collide)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    wide = low is not None and high is not None and high > 1000 * low
    axis.set_major_locator(LogLocator(base=10, subs=(1.0,) if wide else (1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def plot_sweep(result: dict, path: Path) -> None:
    """Time and extra peak memory vs N, log-log, a line per sampler (KMAS solid, baselines dashed)."""
    from .samplers import label

    plt = _plt()
    rows = result.get("sweep") or result.get("rows") or []
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    sizes = sorted({r["num_entities"] for r in rows if r.get("num_entities")})
    for name in sorted({r["sampler"] for r in rows if "seconds_per_call" in r}, key=lambda n: (not n.startswith("kmas-"), n)):
        points = sorted((r["num_entities"], r["seconds_per_call"], r["extra_peak_bytes"]) for r in rows
                        if r.get("sampler") == name and "seconds_per_call" in r)
        n = [q[0] for q in points]
        style = dict(marker="o", ls="-" if name.startswith("kmas-") else "--", label=label(name))
        axes[0].plot(n, [1e3 * q[1] for q in points], **style)
        axes[1].plot(n, [max(q[2], 2**10) / 2**20 for q in points], **style)
    for ax, text in zip(axes, ("time per call (ms)", "extra peak memory (MiB, floor 1 KiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_axis(ax.yaxis, *ax.get_ylim())
        ax.set_xlabel("entities N")
        ax.set_ylabel(text)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, title="solid: KMAS hard negatives; dashed: baselines", title_fontsize=7)
    p = result["parameters"]
    span = f"N={sizes[0]:,}..{sizes[-1]:,}" if sizes else "N=?"
    fig.suptitle(f"sweep over N ({span}), B={p['batch']}, k={p['negatives']}, {_device(result)}{_busy(result)}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _bar_values(ax, values, fmt) -> None:
    for i, v in enumerate(values):
        ax.text(v, i, " " + fmt(v), va="center", fontsize=7)


def plot_table(result: dict, path: Path) -> None:
    """Bars per sampler: time, extra peak memory, type consistency, false-negative rate; values on the bars."""
    from .samplers import label

    plt = _plt()
    rows = [r for r in result["table"]["rows"] if "seconds_per_call" in r.get("cost", {}) and "type_consistency" in r.get("hardness", {})]
    names = [r["sampler"] for r in rows]
    panels = [
        ("time per call (ms)", [1e3 * r["cost"]["seconds_per_call"] for r in rows], True, lambda v: f"{v:.3g}"),
        ("extra peak memory (MiB)", [max(r["cost"]["extra_peak_bytes"], 2**10) / 2**20 for r in rows], True, lambda v: f"{v:.3g}"),
        ("type-consistent share" if result["graph"]["typed"] else "share in observed range",
         [r["hardness"]["type_consistency"] for r in rows], False, lambda v: f"{v:.3f}"),
        ("false-negative rate", [r["hardness"]["false_negative_rate"] for r in rows], False, lambda v: f"{v:.2g}"),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(18, 1.6 + 0.55 * len(names)))
    colors = [KMAS_COLOR if n.startswith("kmas-") else BASELINE_COLOR for n in names]
    for ax, (title, values, log, fmt) in zip(axes, panels):
        ax.barh(range(len(names)), values, color=colors)
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels([label(n) for n in names] if ax is axes[0] else [""] * len(names), fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9)
        if log:
            ax.set_xscale("log")
            ax.set_xlim(min(values) / 1.5, max(values) * 6)  # room for the values
            _plain_log_axis(ax.xaxis, *ax.get_xlim())
        else:
            from matplotlib.ticker import FuncFormatter, MaxNLocator

            ax.set_xlim(0, max(values + [1e-9]) * 1.35)
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        _bar_values(ax, values, fmt)
        ax.grid(axis="x", alpha=0.3)
    p, g = result["parameters"], result["graph"]
    name = _short(g["name"]).split(" (N=")[0]
    fig.suptitle(f"{name}: N={g['num_entities']:,}, B={p['batch']}, k={p['negatives']}, {_device(result)}{_busy(result)}",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    from matplotlib.patches import Patch

    fig.legend(handles=[Patch(color=KMAS_COLOR, label="KMAS hard negatives"), Patch(color=BASELINE_COLOR, label="baselines (random negatives)")],
               loc="upper right", fontsize=8, ncol=2)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_overhead(result: dict, path: Path) -> None:
    """Stacked bars: mining vs the rest of the step, per kind of negatives."""
    plt = _plt()
    over = result["overhead"]
    modes = {m: r for m, r in over["modes"].items() if "error" not in r}
    if not modes:
        return
    fig, ax = plt.subplots(figsize=(8, 3))
    names = list(modes)
    display = {"strict": "strict random (baseline)", "kmas": "KMAS (hard + uniform)", "random": "uniform random (baseline)"}
    mining = [modes[m]["mining_seconds"] for m in names]
    rest = [modes[m]["step_seconds"] - modes[m]["mining_seconds"] for m in names]
    ax.barh([display.get(m, m) for m in names], rest, label="forward + backward + AdamW", color="tab:gray")
    ax.barh([display.get(m, m) for m in names], mining, left=rest, label="negative mining", color=KMAS_COLOR)
    for i, m in enumerate(names):
        ax.text(rest[i] + mining[i], i, f" {modes[m]['step_seconds']:.3g} s, mining {100 * modes[m]['mining_share']:.2f}%", va="center", fontsize=8)
    ax.set_xlim(0, max(r + m for r, m in zip(rest, mining)) * 1.6)
    ax.set_xlabel("seconds per training step (median)")
    ax.legend(fontsize=8, loc="lower right")
    p = over["parameters"]
    n = next(iter(modes.values())).get("num_entities", p.get("num_entities"))
    ax.set_title(f"training step: N={n:,}, B={p['batch']}, k={p['negatives']}, hard share {p['hard_ratio']}, "
                 f"{_device(result)}{_busy(result)}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_training(result: dict, path: Path) -> None:
    """MRR and Hits@10 per seed and kind of negatives."""
    plt = _plt()
    tr = result["training"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    modes = [m for m in tr["summary"] if m != "kmas_minus_strict"]
    display = {"strict": "strict random\n(baseline)", "kmas": "KMAS", "random": "uniform random\n(baseline)"}
    for ax, metric in zip(axes, ("mrr", "hits@10")):
        for i, mode in enumerate(modes):
            values = [r["test"][metric] for r in tr["runs"] if r["mode"] == mode]
            color = KMAS_COLOR if mode == "kmas" else BASELINE_COLOR
            ax.scatter([i] * len(values), values, alpha=0.7, color=color, label="one seed" if i == 0 else None)
            mean, std = tr["summary"][mode][metric]["mean"], tr["summary"][mode][metric]["std"]
            ax.errorbar([i + 0.15], [mean], yerr=[std], fmt="o", color="k", label="mean ± std" if i == 0 else None)
            ax.text(i + 0.22, mean, f"{mean:.3f}", va="center", fontsize=8)
        if tr.get("zero_shot"):
            ax.axhline(tr["zero_shot"][metric], ls="--", color="tab:gray", label="zero-shot")
        ax.legend(fontsize=7)
        ax.set_xticks(range(len(modes)))
        ax.set_xticklabels([display.get(m, m) for m in modes], fontsize=8)
        ax.set_xlim(-0.5, len(modes) - 0.3)
        ax.set_title(f"test {metric}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    p = tr["parameters"]
    n = p.get("num_entities_test")
    fig.suptitle(f"{_short(tr['setting'])}\nN={n:,} (test graph), {p['steps']} steps, B={p['batch']}, k={p['negatives']}, "
                 f"{len(p['seeds'])} seeds, {_device(result)}{_busy(result)}" if n else
                 f"{_short(tr['setting'])}\n{p['steps']} steps, B={p['batch']}, k={p['negatives']}, {_device(result)}{_busy(result)}",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
