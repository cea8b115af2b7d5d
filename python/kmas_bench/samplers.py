"""The rows of the comparison: every way of drawing k negatives for a batch of training triples.

A batch follows ULTRA's convention: rows [0, B // 2) corrupt tails, rows [B // 2, B) corrupt
heads, which is corrupting the tail of the inverse triple (t, r + R0, h). Every sampler is a
zero-argument callable (a new seed per call) returning either ULTRA's (B, 1 + k, 3) [h, t, r]
layout (the ULTRA samplers, whose cost includes building it) or (B, k) negatives in query form;
:func:`query_form` turns either into (B, k).

    uniform-random    ULTRA's non-strict sampler (torch.randint over all entities)
    ultra-strict      ULTRA's strict sampler, as kmas_ultra.tasks implements it (B x N masks, every edge sorted)
    ultra-original    ULTRA's own ``ultra.tasks.negative_sampling`` from a checkout (--ultra-path);
                      needs torch_scatter and torch_geometric
    strict-rejection  our O(B·k) strict uniform sampler (the KMAS sampler's uniform share)
    kmas-<backend>    KMAS hard negatives (all k hard) on a backend of kmas_kernels.available_backends()
"""

from __future__ import annotations

import importlib.util
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

BASELINES = ("uniform-random", "ultra-strict", "ultra-original", "strict-rejection")
LABELS = {
    "uniform-random": "uniform random (ULTRA non-strict)",
    "ultra-strict": "strict random, ULTRA semantics (kmas_ultra)",
    "ultra-original": "strict random, ULTRA's own code",
    "strict-rejection": "strict random, O(B·k) rejection (ours)",
}


def label(name: str) -> str:
    return LABELS.get(name, f"KMAS hard, backend={name.removeprefix('kmas-')}" if name.startswith("kmas-") else name)


def kmas_backends(device: str) -> list[str]:
    """Backends usable for tensors on ``device`` (the C++ CPU backend only for CPU runs)."""
    from kmas_kernels import available_backends

    wanted = {"cpu": ("reference", "cpu"), "cuda": ("reference", "triton", "cuda")}[device.split(":")[0]]
    return [name for name, why in available_backends().items() if why is None and name in wanted]


def default_samplers(device: str) -> list[str]:
    return list(BASELINES) + [f"kmas-{name}" for name in kmas_backends(device)]


def unavailable(name: str, device: str, ultra_path: str | None) -> str | None:
    """Why ``name`` cannot run here (None when it can)."""
    if name == "ultra-original":
        if not ultra_path:
            return "no --ultra-path (a checkout of DeepGraphLearning/ULTRA) given"
        if not (Path(ultra_path) / "ultra" / "tasks.py").is_file():
            return f"{ultra_path}/ultra/tasks.py not found"
        missing = [m for m in ("torch_scatter", "torch_geometric") if importlib.util.find_spec(m) is None]
        if missing:
            return f"ULTRA's code needs {' and '.join(missing)}, not installed"
        return None
    if name.startswith("kmas-"):
        from kmas_kernels import available_backends

        backend = name.removeprefix("kmas-")
        reason = available_backends().get(backend, f"unknown backend {backend!r}")
        if reason is None and backend not in kmas_backends(device):
            reason = f"does not run on {device} tensors"
        return reason
    return None if name in BASELINES else f"unknown sampler {name!r}"


@dataclass
class Problem:
    """A graph, its index and a batch of training triples in query form."""

    index: object  # kmas_kernels.KGIndex over the training triples, inverses added
    graph: object  # ULTRA's data fields: edge_index / edge_type (inverses included), num_nodes
    rows: torch.Tensor  # (B, 3) [h, r, t] training triples
    query_entity: torch.Tensor
    query_relation: torch.Tensor
    positive: torch.Tensor
    embeddings: torch.Tensor | None  # relation embeddings (R, d) or (B, R, d); None: one-hot weights
    num_base_relations: int

    @property
    def half(self) -> int:
        return self.rows.shape[0] // 2


def make_problem(train: torch.Tensor, num_entities: int, num_base_relations: int, batch: int, device: str = "cpu",
                 seed: int = 0, embeddings: torch.Tensor | str | None = "random", index=None) -> Problem:
    """Index ``train`` ([h, r, t]) and draw ``batch`` of its triples (seeded).

    ``embeddings="random"``: Gaussian (R, 64) relation embeddings (cost figures do not depend on
    their values much); a tensor is used as given; None gives one-hot relation weights. ``index``:
    reuse an index of the same triples.
    """
    from kmas_kernels import KGIndex

    index = index if index is not None else KGIndex.from_triples(train, num_entities=num_entities, num_relations=num_base_relations).to(device)
    g = torch.Generator().manual_seed(seed + 1)
    rows = train[torch.randint(train.shape[0], (batch,), generator=g)].to(device)
    if isinstance(embeddings, str):
        embeddings = torch.randn(index.num_relations, 64, generator=g)
    if embeddings is not None:
        embeddings = embeddings.to(device)
    head, rel, tail = rows.unbind(1)
    half = batch // 2
    h, r, t = train.to(device).unbind(1)
    graph = types.SimpleNamespace(edge_index=torch.stack([torch.cat([h, t]), torch.cat([t, h])]),
                                  edge_type=torch.cat([r, r + num_base_relations]), num_nodes=num_entities)
    return Problem(
        index=index,
        graph=graph,
        rows=rows,
        query_entity=torch.cat([head[:half], tail[half:]]),
        query_relation=torch.cat([rel[:half], index.inverse(rel[half:])]),
        positive=torch.cat([tail[:half], head[half:]]),
        embeddings=embeddings,
        num_base_relations=num_base_relations,
    )


def ultra_batch(problem: Problem) -> torch.Tensor:
    """The batch as ULTRA's loop holds it: (B, 3) [h, t, r]."""
    head, rel, tail = problem.rows.unbind(1)
    return torch.stack([head, tail, rel], dim=1)


def query_form(problem: Problem, out: torch.Tensor) -> torch.Tensor:
    """(B, k) negatives from ULTRA's (B, 1 + k, 3) layout (tails of the first half, heads of the rest) or as is."""
    if out.dim() == 2:
        return out
    half = problem.half
    return torch.cat([out[:half, 1:, 1], out[half:, 1:, 0]])


def ultra_layout(problem: Problem, negatives: torch.Tensor) -> torch.Tensor:
    """(B, 1 + k, 3) [h, t, r] with column 0 the positive, from (B, k) query-form negatives."""
    batch = ultra_batch(problem)
    k, half = negatives.shape[1], problem.half
    layout = batch[:, None, :].repeat(1, k + 1, 1)
    layout[:half, 1:, 1] = negatives[:half]
    layout[half:, 1:, 0] = negatives[half:]
    return layout


def _ultra_tasks(ultra_path: str):
    if str(ultra_path) not in sys.path:
        sys.path.insert(0, str(ultra_path))
    from ultra import tasks  # DeepGraphLearning/ULTRA

    return tasks


def make_sampler(name: str, problem: Problem, k: int, seed: int = 0, ultra_path: str | None = None,
                 kmas_options: dict | None = None) -> Callable[[], torch.Tensor]:
    """A zero-argument callable drawing k negatives for every row of the problem (new seed per call).

    ``kmas_options``: extra keyword arguments of ``hard_negatives`` for the KMAS rows
    (``temperature``, ``top_relations``, ``relation_weights`` ...); None: the package defaults.
    """
    from kmas_kernels import hard_negatives
    from kmas_kernels.core.philox import STREAM_UNIFORM
    from kmas_kernels.core.uniform import uniform_negatives

    p = problem
    calls = iter(range(seed * 1_000_003 + 1, 1 << 62))
    if name.startswith("kmas-"):
        backend = name.removeprefix("kmas-")
        options = dict(kmas_options or {})
        if "relation_weights" not in options:
            options["relation_embeddings"] = p.embeddings
        return lambda: hard_negatives(p.index, p.query_entity, p.query_relation, num_negatives=k, positive=p.positive,
                                      seed=next(calls), backend=backend, **options)
    if name == "strict-rejection":
        return lambda: uniform_negatives(p.index, p.query_entity, p.query_relation, p.positive, k, seed=next(calls),
                                         strict=True, stream=STREAM_UNIFORM)
    batch = ultra_batch(p)
    generator = torch.Generator(device=batch.device).manual_seed(seed)
    if name in ("uniform-random", "ultra-strict"):
        from kmas_ultra.tasks import negative_sampling

        strict = name == "ultra-strict"
        return lambda: negative_sampling(p.graph, batch, k, strict=strict, generator=generator)
    if name == "ultra-original":
        reason = unavailable(name, str(batch.device), ultra_path)
        if reason:
            raise RuntimeError(reason)
        tasks = _ultra_tasks(ultra_path)
        torch.manual_seed(seed)
        return lambda: tasks.negative_sampling(p.graph, batch, k, strict=True)
    raise ValueError(f"unknown sampler {name!r}")
