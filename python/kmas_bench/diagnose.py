"""A training-free check of KMAS settings, on validation graphs only: the trade-off each
(temperature, top_relations) makes between hardness, hub bias, false negatives and n_eff(w).

For every graph (the pre-training study's training graphs, never its zero-shot test graphs) and
every grid point, :func:`kmas_bench.hardness.evaluate_samplers` draws KMAS negatives for the same
batches of training triples with relation embeddings from a checkpoint's own relation encoder
(ultra_3g's by default), beside strict random negatives, and measures:

- hardness to the model: share of negatives the checkpoint scores at least as high as the positive,
  and their mean score (first batch);
- hub bias: mean tail-degree of the negatives / that of the true answers;
- false-negative rate against every known triple (train + valid + test);
- n_eff(w): exp of the entropy of the relation weights.

No training, so it costs minutes on 2 CPU cores; it narrows the grid the pre-training sweep spends
its budget on (benchmarks/study/pretrain_study.json, stage 0).
"""

from __future__ import annotations

import time
from pathlib import Path

DEFAULT_TEMPERATURES = (0.03, 0.1, 0.3, 1.0)
DEFAULT_TOP_RELATIONS = (None, 3, 10, 30)
BASELINES = ("strict-rejection", "uniform-random")
KEPT = ("share_scored_above_positive", "mean_score", "mean_positive_score", "hub_bias", "negative_tail_degree",
        "positive_tail_degree", "false_negative_rate_all", "false_negative_rate", "effective_relations",
        "mean_max_weight", "type_consistency")


def config_name(temperature: float, top_relations: int | None) -> str:
    return f"T={temperature:g}, top={'all' if top_relations is None else top_relations}"


def kmas_backend() -> str:
    """The C++ backend when built (fast on CPU), else the reference."""
    from kmas_kernels import available_backends

    return "kmas-cpu" if available_backends().get("cpu") is None else "kmas-reference"


def diagnose(graph_dirs: list[str], *, checkpoint: str, temperatures=DEFAULT_TEMPERATURES,
             top_relations=DEFAULT_TOP_RELATIONS, batch: int = 64, k: int = 128, num_batches: int = 2, seed: int = 0,
             progress: bool = True, log=print) -> dict:
    """Rows per graph: the baselines and every (temperature, top_relations), with the metrics in KEPT."""
    from tqdm import tqdm

    from kmas_ultra import load_checkpoint

    from .graphs import folder_graph
    from .hardness import evaluate_samplers

    model = load_checkpoint(checkpoint)
    kmas = kmas_backend()
    grid = [(t, m) for t in temperatures for m in top_relations]
    per_graph = {}
    start = time.perf_counter()
    bar = tqdm(total=len(graph_dirs) * (1 + len(grid)), desc="diagnose", disable=not progress)
    for path in graph_dirs:
        graph = folder_graph(path)
        name = Path(path).name
        common = dict(batch=batch, k=k, num_batches=num_batches, seed=seed, model=model, score_model=True, progress=False)
        rows = []
        base = evaluate_samplers(graph, list(BASELINES), **common)["per_sampler"]
        for sampler in BASELINES:
            rows.append({"config": sampler, "temperature": None, "top_relations": None,
                         **{key: base[sampler].get(key) for key in KEPT}})
        bar.update(1)
        for t, m in grid:
            out = evaluate_samplers(graph, [kmas], kmas_options={"temperature": t, "top_relations": m}, **common)["per_sampler"][kmas]
            rows.append({"config": config_name(t, m), "temperature": t, "top_relations": m, **{key: out.get(key) for key in KEPT}})
            bar.update(1)
            log(f"{name} {rows[-1]['config']}: >=pos {rows[-1]['share_scored_above_positive']:.3f} "
                f"hub {rows[-1]['hub_bias']:.2f} FN {rows[-1]['false_negative_rate_all']:.4f} n_eff {rows[-1]['effective_relations']:.1f}")
        per_graph[name] = {"graph": graph.describe(), "rows": rows}
    bar.close()
    return {
        "tool": "kmas-pretrain diagnose",
        "what": "training-free trade-off of KMAS settings on the study's training graphs (validation use only)",
        "parameters": {"graphs": list(graph_dirs), "checkpoint": checkpoint, "temperatures": list(temperatures),
                       "top_relations": list(top_relations), "batch": batch, "negatives": k, "num_batches": num_batches,
                       "seed": seed, "kmas_backend": kmas, "hard_share": 1.0,
                       "model_scores": "first batch only (B rows x k negatives)",
                       "relation_embeddings": "checkpoint's relation encoder, conditioned on each row's relation"},
        "per_graph": per_graph,
        "seconds": time.perf_counter() - start,
    }


def plot(result: dict, path: Path) -> None:
    """Per graph: hardness vs false-negative rate and hardness vs hub bias, a point per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    graphs = list(result["per_graph"])
    fig, axes = plt.subplots(len(graphs), 2, figsize=(11, 3.6 * len(graphs)), squeeze=False)
    temps = result["parameters"]["temperatures"]
    tops = result["parameters"]["top_relations"]
    colors = plt.get_cmap("viridis")
    markers = ["o", "s", "^", "D", "v", "P"]
    for row_axes, name in zip(axes, graphs):
        rows = result["per_graph"][name]["rows"]
        for ax, (key, text) in zip(row_axes, (("false_negative_rate_all", "false-negative rate (train + valid + test)"),
                                              ("hub_bias", "hub bias (tail-degree negatives / answers)"))):
            for r in rows:
                x, y = r["share_scored_above_positive"], r[key]
                if r["temperature"] is None:
                    ax.scatter([x], [y], marker="x", color="k", s=60)
                    ax.annotate(r["config"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
                    continue
                c = colors(temps.index(r["temperature"]) / max(1, len(temps) - 1))
                ax.scatter([x], [y], color=c, marker=markers[tops.index(r["top_relations"]) % len(markers)], s=40)
            ax.set_xlabel("share of negatives scored ≥ the positive by the checkpoint")
            ax.set_ylabel(text, fontsize=8)
            ax.set_title(name, fontsize=9)
            ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=colors(i / max(1, len(temps) - 1)), marker="o", ls="", label=f"T={t:g}") for i, t in enumerate(temps)]
    handles += [plt.Line2D([], [], color="gray", marker=markers[i % len(markers)], ls="", label=f"top={'all' if m is None else m}")
                for i, m in enumerate(tops)]
    axes[0][1].legend(handles=handles, fontsize=7, loc="best")
    p = result["parameters"]
    fig.suptitle(f"KMAS settings on validation graphs, {Path(p['checkpoint']).name}'s relation encoder; B={p['batch']}, k={p['negatives']}, "
                 f"{p['num_batches']} batches (model scores: first batch)", fontsize=9)
    fig.tight_layout()
    from kmas_kernels.core.files import atomic_output

    with atomic_output(path) as temp:
        fig.savefig(temp, dpi=110, format="png")
    plt.close(fig)
