"""The pre-training study: fresh ULTRA models on a mix of graphs, strict random vs KMAS negatives.

ULTRA's multi-graph pre-training (script/pretrain.py), in kmas_ultra's plain-torch model: each
step picks one training graph with probability proportional to its number of edges, takes B of its
triples (without replacement), adds k negatives per row (rows [0, B/2) corrupt tails, the rest
heads), and takes an AdamW step on ULTRA's self-adversarial BCE. The negatives are either ULTRA's
strict random ones (``kmas_ultra.tasks.negative_sampling``) or KMAS's through the drop-in
(``kmas_kernels.ultra.KMASNegativeSampling``, relation embeddings from the model's own relation
encoder as it learns, one cache per training graph).

A *run* is one configuration (sampler and its settings) with one seed. Every run:

- validates every ``valid_every`` steps on the study's named validation splits (a fixed subset of
  each training graph's valid triples; mean of per-graph MRR);
- writes ``<stem>/<run>.partial.pth`` every ``save_every`` steps (model, optimizer, sampler and
  random-generator states, the KMAS drop-in's ``state_dict()`` with its per-graph similarity
  cache, history) and resumes from it when relaunched, drawing what the uninterrupted run would
  (the file is read with ``weights_only=True``);
- when finished, writes its final checkpoint ``<stem>_<run>.pth`` ({"model", "architecture", ...},
  loadable by ``kmas-eval --checkpoint``) and its result ``<stem>/<run>.json``, both atomically;
  a relaunch skips runs whose result exists.

The zero-shot test (:func:`zero_shot`) evaluates finished runs' final checkpoints on the study's
test graphs; the study declares it is done once, for the chosen setting.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

VALID_SUBSET_SEED = 20260601
TEST_SUBSET_SEED = 20260602
SAMPLERS = ("strict", "kmas")


# ---------------------------------------------------------------- configurations

@dataclass(frozen=True)
class RunConfig:
    """One run: a sampler with its settings, a seed, and the training budget."""

    sampler: str
    seed: int = 0
    steps: int = 1000
    batch: int = 16
    negatives: int = 64
    lr: float = 5e-4
    dim: int = 64
    num_layers: int = 6
    temperature: float | None = None  # KMAS only; None: the package default
    top_relations: int | str | None = None  # "all": every relation (None: the package default)
    max_ratio: float | None = None
    final_ratio: float | None = None
    warmup_fraction: float | None = None
    peak_fraction: float | None = None
    loss: str | None = None  # hard_weighting of kmas_kernels.loss (None: ULTRA's loss, "adversarial")
    fallback: str | None = None  # the drop-in's fallback (None: "one_hot", what stages 1-2 ran)
    directions: str | None = None  # the drop-in's directions (None: "mixed", what stages 1-2 ran)

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        from kmas_kernels.core.relation_weights import DIRECTIONS
        from kmas_kernels.loss import HARD_WEIGHTINGS
        from kmas_kernels.relation_cache import FALLBACKS

        for key, choices in (("loss", HARD_WEIGHTINGS), ("fallback", FALLBACKS), ("directions", DIRECTIONS)):
            if getattr(self, key) is not None and getattr(self, key) not in choices:
                raise ValueError(f"{key} must be one of {choices}, got {getattr(self, key)!r}")
        kmas_only = ("temperature", "top_relations", "max_ratio", "final_ratio", "warmup_fraction", "peak_fraction",
                     "loss", "fallback", "directions")
        if self.sampler != "kmas" and any(getattr(self, k) is not None for k in kmas_only):
            raise ValueError(f"{', '.join(kmas_only)} apply to the kmas sampler only")

    @property
    def label(self) -> str:
        """The configuration without the seed, e.g. 'kmas_T0.1_top3_max0.5'."""
        if self.sampler == "strict":
            return "strict"
        parts = ["kmas"]
        for key, short in (("temperature", "T"), ("top_relations", "top"), ("max_ratio", "max"), ("final_ratio", "final"),
                           ("warmup_fraction", "warm"), ("peak_fraction", "peak"), ("loss", "loss"),
                           ("fallback", "fb"), ("directions", "dir")):
            value = getattr(self, key)
            if value is not None:
                parts.append(f"{short}{value}" if isinstance(value, str) else f"{short}{value:g}")
        return "_".join(parts)

    @property
    def name(self) -> str:
        """File-name stem of the run: configuration and seed."""
        return f"{self.label}_seed{self.seed}"

    def digest(self) -> str:
        """Of the configuration; the fields added in stage 3 count only when set, so runs of
        earlier stages keep their digests (and resume / skip as before)."""
        fields = {k: v for k, v in asdict(self).items() if not (k in _STAGE3_FIELDS and v is None)}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]

    def kmas_options(self) -> dict:
        from kmas_kernels import HardRatioSchedule

        options = {}
        if self.temperature is not None:
            options["temperature"] = self.temperature
        if self.top_relations is not None:
            options["top_relations"] = None if self.top_relations == "all" else self.top_relations
        # unset stage-3 factors mean what stages 1-2 ran, not the package's later defaults, so that
        # every earlier configuration (and its digest) still names the same runs
        options["fallback"] = self.fallback or STUDY_BASELINE["fallback"]
        options["directions"] = self.directions or STUDY_BASELINE["directions"]
        schedule = {}
        if self.max_ratio is not None:
            schedule["max_ratio"] = self.max_ratio
        if self.final_ratio is not None:
            schedule["final_ratio"] = self.final_ratio
        if self.warmup_fraction is not None:
            schedule["warmup_steps"] = round(self.warmup_fraction * self.steps)
        if self.peak_fraction is not None:
            schedule["peak_step"] = round(self.peak_fraction * self.steps)
        if schedule:
            options["schedule"] = HardRatioSchedule(self.steps, **schedule)
        return options


_STAGE3_FIELDS = ("loss", "fallback", "directions")
# the drop-in options of stages 1-2 (the package defaults before stage 3 changed them)
STUDY_BASELINE = {"loss": "adversarial", "fallback": "one_hot", "directions": "mixed"}

CONFIG_KEYS = {"T": ("temperature", float), "top": ("top_relations", int), "max": ("max_ratio", float),
               "final": ("final_ratio", float), "warm": ("warmup_fraction", float), "peak": ("peak_fraction", float),
               "loss": ("loss", str), "fallback": ("fallback", str), "dir": ("directions", str)}


def parse_config(spec: str, **budget) -> dict:
    """'strict' or 'kmas' or 'kmas:T=0.1,top=3,max=0.5,final=0.1,warm=0.1,peak=0.4,loss=share,fallback=shared,dir=separate'
    -> RunConfig fields.

    A key left out takes the package default when the run starts (``top=all``: every relation).
    """
    sampler, _, rest = spec.partition(":")
    fields = {"sampler": sampler, **budget}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or key not in CONFIG_KEYS:
            raise ValueError(f"--configs {spec!r}: expected key=value with key in {sorted(CONFIG_KEYS)}, got {item!r}")
        name, kind = CONFIG_KEYS[key]
        if key == "top" and value == "all":  # every relation; leaving top out takes the package default
            fields[name] = "all"
        else:
            try:
                fields[name] = kind(value)
            except ValueError:
                raise ValueError(f"--configs {spec!r}: {key} must be {'an integer' if kind is int else 'a number'}"
                                 f"{' or all' if key == 'top' else ''}, got {value!r}") from None
    return fields


def config_spec(value: str) -> str:
    """argparse type of ``--configs``: a spec that parses and names a valid configuration (sampler,
    keys, choices and ranges: T > 0, top >= 1 or all, max / final / warm / peak in [0, 1],
    warm <= peak), so that a bad entry ends the command at parse time, not hours into a run."""
    import argparse
    import math

    try:
        config = RunConfig(**parse_config(value))
    except ValueError as error:
        message = str(error).removeprefix(f"--configs {value!r}: ")  # argparse names the flag itself
        raise argparse.ArgumentTypeError(f"{value!r}: {message}") from None
    problems = []
    if config.temperature is not None and not (math.isfinite(config.temperature) and config.temperature > 0):
        problems.append(f"T must be a number > 0, got {config.temperature:g}")
    if isinstance(config.top_relations, int) and config.top_relations < 1:
        problems.append(f"top must be an integer >= 1 or all, got {config.top_relations}")
    for key, name in (("max", "max_ratio"), ("final", "final_ratio"), ("warm", "warmup_fraction"), ("peak", "peak_fraction")):
        number = getattr(config, name)
        if number is not None and not 0 <= number <= 1:  # NaN fails too
            problems.append(f"{key} must be a number in [0, 1], got {number:g}")
    if not problems and config.warmup_fraction is not None and config.peak_fraction is not None \
            and config.warmup_fraction > config.peak_fraction:
        problems.append(f"warm must be <= peak, got warm={config.warmup_fraction:g} > peak={config.peak_fraction:g}")
    if problems:
        raise argparse.ArgumentTypeError(f"{value!r}: {'; '.join(problems)}")
    return value


# ---------------------------------------------------------------- graphs

@dataclass
class StudyGraphs:
    """The training graphs (ULTRA data objects) and the fixed validation query subsets."""

    names: list[str]
    train: list  # kmas_ultra Graph per training graph (facts = targets = train triples)
    valid: list  # (valid Graph, filter Graph, (M, 3) queries) per training graph
    edges: list[int] = field(default_factory=list)


def _subset(triples: torch.Tensor, limit: int | None, seed: int) -> torch.Tensor:
    if not limit or limit >= triples.shape[0]:
        return triples
    g = torch.Generator().manual_seed(seed)
    return triples[torch.randperm(triples.shape[0], generator=g)[:limit]]


def load_study_graphs(root: Path, graphs: list[str], valid_queries: int | None, device: str = "cpu") -> StudyGraphs:
    from kmas_ultra import load_transductive, triples_of

    out = StudyGraphs([], [], [], [])
    for rel in graphs:
        split = load_transductive(Path(root) / rel)
        out.names.append(rel)
        out.train.append(split.train.to(device))
        queries = _subset(triples_of(split.valid), valid_queries, VALID_SUBSET_SEED).to(device)
        out.valid.append((split.valid.to(device), split.valid_filter.to(device), queries))
        out.edges.append(split.train.num_edges)
    return out


def graph_probabilities(edges: list[int]) -> torch.Tensor:
    """ULTRA's multigraph_collator: a graph is chosen with probability proportional to its edges."""
    p = torch.tensor(edges, dtype=torch.float64)
    return p / p.sum()


# ---------------------------------------------------------------- one run

def validate(model, graphs: StudyGraphs, batch_size: int = 16) -> dict:
    from kmas_ultra import evaluate

    per_graph = {}
    for name, (data, filt, queries) in zip(graphs.names, graphs.valid):
        m = evaluate(model, data, queries, filt, batch_size=batch_size)
        per_graph[name] = {k: m[k] for k in ("mrr", "hits@1", "hits@3", "hits@10", "num_ranks")}
    mean = {k: sum(v[k] for v in per_graph.values()) / len(per_graph) for k in ("mrr", "hits@10")}
    return {**mean, "per_graph": per_graph}


def make_model(config: RunConfig):
    from kmas_ultra import Ultra

    torch.manual_seed(config.seed)
    return Ultra(dim=config.dim, num_layers=config.num_layers)


def architecture(config: RunConfig) -> dict:
    """The checkpoint's ``"architecture"``: ``Ultra(**architecture(config))`` (kmas_ultra.model.ARCHITECTURE_KEYS)."""
    return {"dim": config.dim, "num_layers": config.num_layers, "flow": "rspmm"}


def sampler_options(kmas) -> dict | None:
    """The KMAS options a run actually used, package defaults resolved (None for strict random),
    so a result stays readable after the package's defaults change."""
    if kmas is None:
        return None
    schedule = kmas.schedule
    fields = ("total_steps", "warmup_steps", "peak_step", "max_ratio", "final_ratio")
    return {"temperature": kmas.temperature, "top_relations": kmas.top_relations, "fallback": kmas.fallback,
            "directions": kmas.directions,
            "schedule": {f: getattr(schedule, f) for f in fields if hasattr(schedule, f)} or repr(schedule)}


def run_one(config: RunConfig, graphs: StudyGraphs, run_dir: Path, checkpoint_path: Path, *, valid_every: int,
            save_every: int = 0, eval_batch_size: int = 16, progress: bool = True, log=print,
            stop_after: int | None = None) -> dict | None:
    """Train one run (resuming from ``<run>.partial.pth`` when present); returns its result dict.

    Drives kmas_ultra.loop.TrainingLoop with this study's batches (a graph drawn per step in
    proportion to its edges, then B of its triples) and negatives. ``stop_after``: stop (after
    saving the partial state) once this many steps are done, without finishing the run; returns
    None then. For tests of the resume path.
    """
    from kmas_ultra.loop import TrainingLoop, load_state, make_loss, make_negative_sampler, save_state

    from kmas_kernels.core.files import atomic_write_json

    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
    partial = run_dir / f"{config.name}.partial.pth"
    device = graphs.train[0].edge_index.device
    model = make_model(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)  # graph choice and batch rows (CPU)
    negative_generator = torch.Generator(device=device).manual_seed(config.seed + 1)  # strict random negatives
    probs = graph_probabilities(graphs.edges)
    draw = make_negative_sampler(config.sampler, model, graphs.train, config.steps, seed=config.seed,
                                 kmas_options=config.kmas_options() if config.sampler == "kmas" else None,
                                 generator=negative_generator)
    kmas = getattr(draw, "sampler", None)  # one similarity cache per training graph
    graph_counts = [0] * len(graphs.train)
    # rows whose relation had no similarity row (one-hot) / a borrowed one, while hard negatives were due
    row_counts = {"rows_with_hard_negatives_due": 0, "fallback_rows_with_hard_negatives_due": 0,
                  "borrowed_rows_with_hard_negatives_due": 0}

    def next_batch():
        g = int(torch.multinomial(probs, 1, generator=generator))
        data = graphs.train[g]
        rows = torch.randperm(data.target_edge_type.shape[0], generator=generator)[: config.batch].to(device)
        return data, torch.cat([data.target_edge_index[:, rows], data.target_edge_type[rows].unsqueeze(0)]).t(), g

    def sample(data, batch, k):
        batch = draw(data, batch, k)
        if kmas is not None:
            stats = kmas.stats()
            if stats["num_hard"] > 0:
                row_counts["rows_with_hard_negatives_due"] += stats["rows"]
                row_counts["fallback_rows_with_hard_negatives_due"] += stats["fallback_rows"]
                row_counts["borrowed_rows_with_hard_negatives_due"] += stats["borrowed_rows"]
        return batch

    def run_validation(step: int) -> dict:
        if kmas is not None:
            with kmas.paused():
                metrics = validate(model, graphs, eval_batch_size)
        else:
            metrics = validate(model, graphs, eval_batch_size)
        log(f"{config.name} step {step}: valid mrr {metrics['mrr']:.4f} hits@10 {metrics['hits@10']:.4f}")
        return metrics

    def save_partial() -> None:
        save_state({
            **loop.state_dict(), "digest": config.digest(), "generator": generator.get_state(),
            "negative_generator": negative_generator.get_state(), "history": json.dumps(loop.history),
            "graph_counts": graph_counts, "seconds": loop.seconds,
            "kmas": kmas.state_dict() if kmas is not None else {}, "row_counts": dict(row_counts),
        }, partial)

    def count_graph(g: int, loss: float) -> None:
        graph_counts[g] += 1

    loop = TrainingLoop(model, optimizer, steps=config.steps, batches=next_batch, sample=sample, num_negative=config.negatives,
                        loss=make_loss(config.loss, kmas), validate=run_validation, valid_every=valid_every,
                        validate_first=True, save=save_partial, save_every=save_every, after_step=count_graph,
                        stop=lambda: "stop_after" if stop_after is not None and stop_after <= loop.step < config.steps else None,
                        postfix=lambda g: {"graph": Path(graphs.names[g]).name}, progress=progress, desc=config.name)
    if partial.is_file():
        state = load_state(partial, map_location=device)
        if state["digest"] != config.digest():
            raise ValueError(f"{partial} belongs to another configuration (digest {state['digest']} != {config.digest()}): remove it")
        loop.load_state_dict(state)
        generator.set_state(state["generator"].cpu())
        negative_generator.set_state(state["negative_generator"].cpu())
        loop.history = json.loads(state["history"])
        loop.validated_at = loop.history[-1]["step"] if loop.history else None
        graph_counts[:], loop.seconds = list(state["graph_counts"]), float(state["seconds"])
        row_counts.update(state.get("row_counts", {}))
        if kmas is not None:
            kmas.load_state_dict(state["kmas"])  # seed, step and every graph's similarity cache
        log(f"{config.name}: resumed at step {loop.step}")
    try:
        if loop.run() is not None:
            return None  # stopped after stop_after steps, the partial state saved
    finally:
        if kmas is not None:
            kmas.close()
    step, losses, history, seconds = loop.step, loop.losses, loop.history, loop.seconds
    best = max(history, key=lambda h: h["mrr"])
    save_state({"model": {k: v.cpu() for k, v in model.state_dict().items()}, "architecture": architecture(config),
               "run": asdict(config), "step": step, "valid": history[-1]}, checkpoint_path)
    result = {
        "run": config.name, "config": asdict(config), "label": config.label, "digest": config.digest(),
        "training_graphs": graphs.names, "graph_probabilities": probs.tolist(), "graph_steps": graph_counts,
        "valid": history, "final_valid_mrr": history[-1]["mrr"], "best_valid_mrr": best["mrr"], "best_valid_step": best["step"],
        "losses": losses, "train_seconds": seconds, "seconds_per_step": seconds / max(1, step),
        "checkpoint": checkpoint_path.name, "architecture": architecture(config),
        "sampler_options": sampler_options(kmas),
        "sampler_rows": row_counts if kmas is not None else None,
    }
    atomic_write_json(result, run_dir / f"{config.name}.json")
    if partial.is_file():
        partial.unlink()
    return result


def run_all(configs: list[RunConfig], graphs: StudyGraphs, out: Path, stem: str, *, valid_every: int, save_every: int = 0,
            progress: bool = True, log=print) -> list[dict]:
    """Every run not finished yet (a finished run's JSON exists with the same configuration digest)."""
    run_dir = out / stem
    run_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for config in configs:
        done = run_dir / f"{config.name}.json"
        if done.is_file():
            previous = json.loads(done.read_text())
            if previous.get("digest") != config.digest():
                raise ValueError(f"{done} holds another configuration of {config.name} (a different budget?): "
                                 "use another --name or remove it")
            log(f"{config.name}: finished before, skipped")
            results.append(previous)
            continue
        result = run_one(config, graphs, run_dir, out / f"{stem}_{config.name}.pth", valid_every=valid_every,
                         save_every=save_every, progress=progress, log=log)
        results.append(result)
    return results


def finished_run(run_dir: Path, config: RunConfig) -> dict:
    """The result of a finished run of ``config`` under ``run_dir``; exits with a message if it is
    missing or was trained with another configuration (digest)."""
    path = run_dir / f"{config.name}.json"
    if not path.is_file():
        sys.exit(f"kmas-pretrain test: run {config.name} is not finished ({path} missing)")
    result = json.loads(path.read_text())
    if result.get("digest") != config.digest():
        sys.exit(f"kmas-pretrain test: {path} was trained with another configuration (digest {result.get('digest')} != "
                 f"{config.digest()}): check --steps/--batch/--negatives/--dim/--layers")
    return result


# ---------------------------------------------------------------- zero-shot test

def load_test_graph(root: Path, spec: dict, limit: int | None):
    """(name, data, filter, queries) of one zero-shot test graph of the study file."""
    from kmas_ultra import load_inductive, load_transductive, triples_of

    if spec["protocol"] == "inductive":
        split = load_inductive(root / spec["train_dir"], root / spec["inference_dir"])
    else:
        split = load_transductive(root / spec["dir"])
    return spec["name"], split.test, split.test_filter, _subset(triples_of(split.test), limit, TEST_SUBSET_SEED)


def entity_names(folder: Path) -> set[str]:
    names = set()
    for part in ("train.txt", "valid.txt", "test.txt"):
        path = folder / part
        if path.is_file():
            for line in path.read_text().splitlines():
                fields = line.split("\t") if "\t" in line else line.split()
                if len(fields) >= 3:
                    names.update((fields[0], fields[2]))
    return names


def zero_shot(checkpoints: dict[str, Path], root: Path, test_specs: list[dict], training_graphs: list[str], *,
              limit: int | None, batch_size: int = 16, device: str = "cpu", progress: bool = True, log=print) -> dict:
    """MRR / Hits@10 of every checkpoint (run name -> path) on every test graph; entity overlaps recorded."""
    from tqdm import tqdm

    from kmas_ultra import evaluate, load_checkpoint

    seen = set().union(*(entity_names(root / g) for g in training_graphs))
    graphs = [load_test_graph(root, spec, limit) for spec in test_specs]
    overlap = {}
    for spec in test_specs:
        folder = root / (spec.get("inference_dir") or spec["dir"])
        names = entity_names(folder)
        overlap[spec["name"]] = len(names & seen) / max(1, len(names))
    per_run = {}
    bar = tqdm(total=len(checkpoints) * len(graphs), desc="zero-shot", disable=not progress)
    for run, path in checkpoints.items():
        model = load_checkpoint(path).to(device)
        per_run[run] = {}
        for name, data, filt, queries in graphs:
            m = evaluate(model, data.to(device), queries.to(device), filt.to(device), batch_size=batch_size)
            per_run[run][name] = {k: m[k] for k in ("mrr", "hits@1", "hits@3", "hits@10", "num_ranks")}
            log(f"{run} {name}: mrr {m['mrr']:.4f} hits@10 {m['hits@10']:.4f}")
            bar.update(1)
    bar.close()
    return {"per_run": per_run, "entity_overlap_with_training_graphs": overlap,
            "num_queries": {name: int(q.shape[0]) for name, _, _, q in graphs}, "query_limit": limit}


def spread(values: list[float]) -> dict:
    n = len(values)
    mean = sum(values) / n if n else float("nan")
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "n": n}


def summarise(results: list[dict], test: dict | None) -> dict:
    """Per configuration label: final / best validation MRR over seeds; zero-shot MRR and Hits@10 per graph."""
    labels = sorted({r["label"] for r in results})
    summary = {}
    for label in labels:
        mine = [r for r in results if r["label"] == label]
        entry = {"seeds": [r["config"]["seed"] for r in mine],
                 "final_valid_mrr": spread([r["final_valid_mrr"] for r in mine]),
                 "best_valid_mrr": spread([r["best_valid_mrr"] for r in mine]),
                 "seconds_per_step": spread([r["seconds_per_step"] for r in mine])}
        if test:
            per_graph = {}
            runs = [test["per_run"][r["run"]] for r in mine if r["run"] in test["per_run"]]
            for graph in (runs[0] if runs else {}):
                per_graph[graph] = {metric: spread([run[graph][metric] for run in runs]) for metric in ("mrr", "hits@10")}
            if per_graph:
                entry["zero_shot"] = per_graph
                entry["zero_shot_mean_mrr"] = spread([sum(run[g]["mrr"] for g in run) / len(run) for run in runs])
        summary[label] = entry
    return summary


def paired_differences(results: list[dict], test: dict, baseline: str) -> dict:
    """Per configuration other than ``baseline``: zero-shot MRR minus the baseline's, paired by seed,
    per test graph and for the mean over graphs (mean, std over seeds; how many graphs are above)."""
    by = {(r["label"], r["config"]["seed"]): test["per_run"][r["run"]] for r in results if r["run"] in test["per_run"]}
    out = {}
    for label in sorted({r["label"] for r in results} - {baseline}):
        seeds = sorted(s for (lab, s) in by if lab == label and (baseline, s) in by)
        if not seeds:
            continue
        graphs = list(by[label, seeds[0]])
        per_graph = {g: spread([by[label, s][g]["mrr"] - by[baseline, s][g]["mrr"] for s in seeds]) for g in graphs}
        mean = spread([sum(by[label, s][g]["mrr"] - by[baseline, s][g]["mrr"] for g in graphs) / len(graphs) for s in seeds])
        out[label] = {"baseline": baseline, "seeds": seeds, "mrr_per_graph": per_graph, "mean_over_graphs": mean,
                      "graphs_above": sum(d["mean"] > 0 for d in per_graph.values()),
                      "graphs_below": sum(d["mean"] < 0 for d in per_graph.values()), "num_graphs": len(graphs)}
    return out


# ---------------------------------------------------------------- plots

def plot(result: dict, path: Path) -> None:
    """Validation MRR over steps (a line per run, colour per configuration) and zero-shot MRR per graph."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    labels = sorted({r["label"] for r in runs})
    colors = {label: plt.get_cmap("tab10")(i % 10) for i, label in enumerate(labels)}
    has_test = any("zero_shot" in s for s in result["summary"].values())
    fig, axes = plt.subplots(1, 2 if has_test else 1, figsize=(13 if has_test else 7, 4.2), squeeze=False)
    ax = axes[0][0]
    for r in runs:
        steps = [h["step"] for h in r["valid"]]
        ax.plot(steps, [h["mrr"] for h in r["valid"]], marker=".", color=colors[r["label"]], alpha=0.8,
                label=r["label"] if r["config"]["seed"] == min(x["config"]["seed"] for x in runs if x["label"] == r["label"]) else None)
    later = [h["mrr"] for r in runs for h in r["valid"] if h["step"] > 0]
    if later:  # zoom on training after the first validation: the step-0 point (untrained model) is far below
        low, high = min(later), max(later)
        ax.set_ylim(low - 0.1 * (high - low + 0.01), high + 0.1 * (high - low + 0.01))
        ax.set_xlim(left=min(h["step"] for r in runs for h in r["valid"] if h["step"] > 0) * 0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("validation MRR (mean over the validation graphs)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if has_test:
        ax = axes[0][1]
        graphs = list(next(s["zero_shot"] for s in result["summary"].values() if "zero_shot" in s))
        width = 0.8 / max(1, len(labels))
        for i, label in enumerate(labels):
            z = result["summary"][label].get("zero_shot")
            if not z:
                continue
            xs = [j + i * width for j in range(len(graphs))]
            ax.bar(xs, [z[g]["mrr"]["mean"] for g in graphs], width, yerr=[z[g]["mrr"]["std"] for g in graphs],
                   color=colors[label], label=f"{label} (n={z[graphs[0]]['mrr']['n']})", capsize=2)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(graphs))])
        ax.set_xticklabels(graphs, rotation=30, fontsize=7)
        ax.set_ylabel("zero-shot MRR (mean ± std over seeds)")
        ax.legend(fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    p = result["parameters"]
    fig.suptitle(f"pre-training on {', '.join(Path(g).name for g in p['training_graphs'])}: {p['steps']} steps, B={p['batch']}, "
                 f"k={p['negatives']}, dim {p['dim']} x {p['num_layers']} layers", fontsize=9)
    fig.tight_layout()
    from kmas_kernels.core.files import atomic_output

    with atomic_output(path) as temp:
        fig.savefig(temp, dpi=110, format="png")
    plt.close(fig)


# ---------------------------------------------------------------- command line

def add_parsers(sub, common) -> None:
    from kmas_ultra.arguments import device, non_negative_int, positive_float, positive_int, seed_int

    for command, text in (("run", "pre-train (resumable); validation MRR over steps"),
                          ("test", "zero-shot test of finished runs (once, for the chosen setting)")):
        p = sub.add_parser(command, help=text)
        common(p)
        p.add_argument("--study", type=Path, default=None, help="the study's design file (default: the one shipped in kmas_bench/study/)")
        p.add_argument("--configs", nargs="+", default=["strict", "kmas"],
                       help="'strict', 'kmas' or 'kmas:T=0.1,top=3,max=0.5,final=0.1,warm=0.1,peak=0.4,loss=share,fallback=shared,dir=separate' (unset: package defaults)")
        p.add_argument("--seeds", type=seed_int, nargs="+", default=[0], help="one run per configuration and seed (default 0)")
        p.add_argument("--steps", type=positive_int, default=1000, help="training steps per run (default 1000)")
        p.add_argument("--batch", type=positive_int, default=16, help="training triples per step (default 16)")
        p.add_argument("--negatives", type=positive_int, default=64, help="negatives per triple (default 64)")
        p.add_argument("--lr", type=positive_float, default=5e-4, help="AdamW learning rate (default 5e-4)")
        p.add_argument("--dim", type=positive_int, default=64, help="model width (ultra_3g: 64)")
        p.add_argument("--layers", type=positive_int, default=6, help="layers per NBFNet (ultra_3g: 6)")
        p.add_argument("--graphs", nargs="+", default=None, help="training graphs relative to the data root (default: the study's)")
        p.add_argument("--valid-queries", type=positive_int, default=None, help="validation queries per graph (default: the study's)")
        p.add_argument("--valid-every", type=non_negative_int, default=100, help="validate every N steps (default 100; 0: start and end)")
        p.add_argument("--save-every", type=non_negative_int, default=50, help="steps between resumable partial states (0: none)")
        p.add_argument("--test-queries", type=non_negative_int, default=None, help="test queries per graph (default: the study's; 0: all)")
        p.add_argument("--test-graphs", nargs="+", default=None, help="names of the study's test graphs to use (default: all)")
        p.add_argument("--eval-batch-size", type=positive_int, default=16, help="queries per evaluation forward (default 16)")
        p.add_argument("--device", type=device, default="cpu", help="cpu, cuda, cuda:1 ... (the whole run on this device)")
        if command == "run":
            p.add_argument("--test", action="store_true", help="also run the zero-shot test when every run is finished")
        else:
            p.add_argument("--baseline", default=None, metavar="NAME:CONFIG",
                           help="also test the finished runs of CONFIG (same seeds and budget) kept under --out/NAME, "
                           "e.g. pretrain_stage2:strict, and report each configuration's paired difference to them")


def main(args) -> int:
    from kmas_kernels.core.files import atomic_write_json

    from .cli import default_out
    from .measure import machine_info
    from .locations import data_root, study_file

    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    root = args.data_root or data_root()
    if root is None:
        sys.exit("kmas-pretrain: no data folder (set --data-root or KMAS_SHARED, the folder holding data/)")
    root = Path(root)
    study_path = args.study or study_file()
    study = json.loads(Path(study_path).read_text())
    training = args.graphs or study["train_graphs"]
    valid_queries = study["validation"]["queries_per_graph"] if args.valid_queries is None else args.valid_queries
    budget = dict(steps=args.steps, batch=args.batch, negatives=args.negatives, lr=args.lr, dim=args.dim, num_layers=args.layers)
    try:
        configs = [RunConfig(**parse_config(spec, seed=seed, **budget)) for spec in args.configs for seed in args.seeds]
    except ValueError as error:  # a bad --configs entry is a user error: one line, exit 2
        from kmas_ultra.arguments import user_error

        user_error(f"kmas-pretrain {args.command}", f"argument --configs: {error}")
    out = args.out or default_out()
    stem = args.name or "pretrain"
    graphs = load_study_graphs(root, training, valid_queries, args.device)
    started = time.perf_counter()
    progress = not args.no_progress
    baseline = None  # label of the --baseline runs (test only)
    if args.command == "run":
        results = run_all(configs, graphs, out, stem, valid_every=args.valid_every, save_every=args.save_every,
                          progress=progress, log=log)
    else:
        results = [finished_run(out / stem, c) for c in configs]
        if args.baseline:
            other, _, spec = args.baseline.partition(":")
            try:
                base = [RunConfig(**parse_config(spec, seed=seed, **budget)) for seed in args.seeds]
            except ValueError as error:
                from kmas_ultra.arguments import user_error

                user_error("kmas-pretrain test", f"argument --baseline: {error}")
            results += [finished_run(out / other, c) for c in base]
            baseline = base[0].label
    test = None
    if args.command == "test" or getattr(args, "test", False):
        specs = [s for s in study["zero_shot_test"]["graphs"] if not args.test_graphs or s["name"] in args.test_graphs]
        limit = study["zero_shot_test"]["queries_per_graph"] if args.test_queries is None else (args.test_queries or None)
        test = zero_shot({r["run"]: out / r["checkpoint"] for r in results}, root, specs, training, limit=limit,
                         batch_size=args.eval_batch_size, device=args.device, progress=progress, log=log)
    result = {
        "tool": "kmas-pretrain",
        "command": ["kmas-pretrain", *sys.argv[1:]],
        "machine": machine_info(args.device),
        "study": Path(study_path).name,
        "study_file": str(Path(study_path).resolve()),  # the package's own copy unless --study
        "parameters": {"training_graphs": training, "validation_queries_per_graph": valid_queries,
                       "valid_every": args.valid_every, "configs": args.configs, "seeds": args.seeds, **budget},
        "runs": [{k: v for k, v in r.items() if k != "losses"} for r in results],
        "zero_shot": test,
        "summary": summarise(results, test),
        "paired_to_baseline": paired_differences(results, test, baseline) if test and baseline else None,
        "seconds": time.perf_counter() - started,
    }
    name = f"{stem}_test" if test else stem
    path = out / f"{name}.json"
    atomic_write_json(result, path)
    try:
        plot(result, out / f"{name}.png")
    except ImportError as error:
        log(f"no plot: {error}")
    for label, s in result["summary"].items():
        line = f"{label:40s} final valid MRR {s['final_valid_mrr']['mean']:.4f} ± {s['final_valid_mrr']['std']:.4f} (n={s['final_valid_mrr']['n']})"
        if "zero_shot_mean_mrr" in s:
            line += f"  zero-shot mean MRR {s['zero_shot_mean_mrr']['mean']:.4f} ± {s['zero_shot_mean_mrr']['std']:.4f}"
        print(line)
    for label, d in (result["paired_to_baseline"] or {}).items():
        m = d["mean_over_graphs"]
        print(f"{label} - {d['baseline']}: zero-shot MRR {m['mean']:+.4f} ± {m['std']:.4f} (paired, n={m['n']}), "
              f"above on {d['graphs_above']} of {d['num_graphs']} graphs, below on {d['graphs_below']}")
    print(f"wrote {path}")
    return 0
