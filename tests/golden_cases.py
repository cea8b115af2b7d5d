"""The golden grid: fixed small inputs and the integer negatives every sampler draws from them.

``cases()`` yields (name, thunk); each thunk returns the drawn int64 tensor. Every option is passed
explicitly (never a default), so a change of defaults does not change these draws; only a change of
what a given set of options draws does. tests/golden/make_golden.py records the digests in
tests/golden/draws.json; tests/test_golden_draws.py recomputes them. The same case is run on every
backend available on CPU and must give the same draw on each (docs/semantics.md: the same seed
gives the same negatives on every backend), so one digest per case covers them all.
"""

from __future__ import annotations

import hashlib
import types

import torch
from torch import nn

from conftest import queries_from_edges, random_triples
from kmas_kernels import HardRatioSchedule, KGIndex, KMASSampler, available_backends, hard_negatives

# (entities, base relations, edges, batch): a sparse graph and a dense one (short rows, fill path)
GRAPHS = {"sparse": (60, 4, 150, 12), "dense": (12, 2, 60, 8)}
SEEDS = (0, 7, 123456789)
TEMPERATURE = 0.2
TEMPERATURE_GUMBEL = 1.0
SCHEDULE = dict(total_steps=6, warmup_steps=1, peak_step=3, max_ratio=0.75, final_ratio=0.25)
STEPS = 6


def cpu_backends() -> list[str]:
    """The top-k backends usable on CPU tensors here (triton only under TRITON_INTERPRET=1)."""
    return [name for name, reason in available_backends().items() if reason is None and name != "cuda"]


def digest(tensor: torch.Tensor) -> str:
    array = tensor.detach().to("cpu", torch.int64).contiguous().numpy()
    return hashlib.sha256(array.tobytes() + str(tuple(array.shape)).encode()).hexdigest()


def graph(name: str) -> tuple[KGIndex, torch.Tensor, torch.Tensor, torch.Tensor]:
    n, r0, edges, batch = GRAPHS[name]
    index = KGIndex.from_triples(random_triples(n, r0, edges, seed=11), num_entities=n, num_relations=r0)
    q, r, a = queries_from_edges(index, batch, seed=12)
    return index, q, r, a


def embeddings(index: KGIndex, batch: int, per_row: bool, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 + seed)
    shape = (batch, index.num_relations, 8) if per_row else (index.num_relations, 8)
    return torch.randn(*shape, generator=g)


def _hard_negatives_case(graph_name, k, strict, per_row, top, seed, backend):
    index, q, r, a = graph(graph_name)
    z = embeddings(index, q.numel(), per_row, seed)
    return hard_negatives(
        index, q, r, relation_embeddings=z, relation_weights=None, num_negatives=k, positive=a, strict=strict,
        temperature=TEMPERATURE, top_relations=top, temperature_gumbel=TEMPERATURE_GUMBEL, seed=seed, backend=backend,
    )


def hard_negatives_cases():
    """name -> (thunk(backend) -> (B, k)), over graphs x strict x shared/per-row x top_relations x seeds."""
    out = {}
    for graph_name in GRAPHS:
        k = 5  # dense: k above the support of many rows (12 entities), so the uniform fill runs
        for strict in (True, False):
            for per_row in (False, True):
                for top in (None, 3):
                    for seed in SEEDS:
                        name = f"hard_negatives/{graph_name}/k{k}/strict={strict}/{'per_row' if per_row else 'shared'}/top={top}/seed={seed}"
                        out[name] = (lambda backend, g=graph_name, k=k, s=strict, p=per_row, t=top, sd=seed:
                                     _hard_negatives_case(g, k, s, p, t, sd, backend))
    return out


def _schedule() -> HardRatioSchedule:
    return HardRatioSchedule(**SCHEDULE)


def _sampler_case(graph_name, strict, per_row, top, seed, backend):
    index, q, r, a = graph(graph_name)
    sampler = KMASSampler(
        index, 6, _schedule(), strict=strict, temperature=TEMPERATURE, top_relations=top,
        temperature_gumbel=TEMPERATURE_GUMBEL, seed=seed, backend=backend, step=0,
    )
    draws = []
    for step in range(STEPS):
        z = embeddings(index, q.numel(), per_row, seed + step)
        draws.append(sampler.sample(q, r, a, relation_embeddings=z, relation_weights=None, num_negatives=6, strict=strict))
    return torch.stack(draws)  # (steps, B, k)


def sampler_cases():
    out = {}
    for graph_name in GRAPHS:
        for strict in (True, False):
            for per_row, top in ((False, None), (True, 3)):
                for seed in SEEDS[:2]:
                    name = f"KMASSampler/{graph_name}/strict={strict}/{'per_row' if per_row else 'shared'}/top={top}/seed={seed}"
                    out[name] = (lambda backend, g=graph_name, s=strict, p=per_row, t=top, sd=seed:
                                 _sampler_case(g, s, p, t, sd, backend))
    return out


class RelationEncoder(nn.Module):
    """(B, R, d) relation representations conditioned on the query relation; fixed by a seed."""

    def __init__(self, num_relations: int, seed: int, dim: int = 8):
        super().__init__()
        g = torch.Generator().manual_seed(2000 + seed)
        self.base = nn.Parameter(torch.randn(num_relations, dim, generator=g))
        self.condition = nn.Parameter(torch.randn(num_relations, dim, generator=g))

    def forward(self, rel_graph, query):
        return self.base[None] + 0.5 * self.condition[query][:, None]


class TinyUltra(nn.Module):
    def __init__(self, num_relations: int, seed: int):
        super().__init__()
        self.relation_model = RelationEncoder(num_relations, seed)

    def forward(self, data, batch):  # batch (B, 1 + k, 3) [h, t, r]
        return self.relation_model(data.relation_graph, query=batch[:, 0, 2]).sum()


def ultra_data(graph_name: str):
    """A PyG-style graph with inverse edges (ULTRA's convention) and a (B, 3) [h, t, r] batch."""
    n, r0, edges, batch = GRAPHS[graph_name]
    h, r, t = random_triples(n, r0, edges, seed=11).unbind(1)
    data = types.SimpleNamespace(
        edge_index=torch.stack([torch.cat([h, t]), torch.cat([t, h])]),
        edge_type=torch.cat([r, r + r0]),
        num_nodes=n,
        num_relations=2 * r0,
        relation_graph=types.SimpleNamespace(name="relation graph"),
    )
    g = torch.Generator().manual_seed(13)
    pick = torch.randint(edges, (batch,), generator=g)
    return data, torch.stack([h[pick], t[pick], r[pick]], dim=1)


def _ultra_case(graph_name, strict, mode, seed, backend):
    from kmas_kernels.ultra import KMASNegativeSampling

    data, batch = ultra_data(graph_name)
    model = TinyUltra(data.num_relations, seed) if mode == "cache" else None
    sampling = KMASNegativeSampling(
        model, data, None, schedule=_schedule(), relation_module=model.relation_model if model else nn.Identity(),
        temperature=TEMPERATURE, top_relations=3, temperature_gumbel=TEMPERATURE_GUMBEL, seed=seed, rank=0,
        backend=backend, step=0, fallback="one_hot", directions="mixed",
    )
    draws = []
    try:
        for step in range(STEPS):
            z = None
            if mode == "explicit":
                z = embeddings(KGIndex.from_data(data), batch.shape[0], True, seed + step)
            out = sampling(data, batch, 6, strict=strict, relation_embeddings=z)
            if model is not None:
                model(data, out)  # the forward whose hook fills the cache for the next steps
            draws.append(out)
    finally:
        sampling.close()
    return torch.stack(draws)  # (steps, B, 1 + k, 3)


def ultra_cases():
    out = {}
    for graph_name in GRAPHS:
        for strict in (True, False):
            for mode in ("explicit", "cache"):
                for seed in SEEDS[:2]:
                    name = f"ultra/{graph_name}/strict={strict}/{mode}/seed={seed}"
                    out[name] = lambda backend, g=graph_name, s=strict, m=mode, sd=seed: _ultra_case(g, s, m, sd, backend)
    return out


class TinyPykeenModel(nn.Module):
    """What KMASNegativeSampler reads of a PyKEEN model: relation_representations[0](indices=None)."""

    def __init__(self, num_relations: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(3000 + seed)
        weight = nn.Parameter(torch.randn(num_relations, 8, generator=g))

        class Representation(nn.Module):
            def __init__(self):
                super().__init__()
                self.weight = weight

            def forward(self, indices=None):
                return self.weight if indices is None else self.weight[indices]

        self.relation_representations = nn.ModuleList([Representation()])


def _pykeen_case(graph_name, strict, k, seed, backend):
    from kmas_kernels.pykeen import KMASNegativeSampler

    n, r0, edges, batch = GRAPHS[graph_name]
    hrt = random_triples(n, r0, edges, seed=11)[:, [0, 1, 2]]  # [h, r, t]
    model = TinyPykeenModel(r0, seed)
    sampler = KMASNegativeSampler(
        mapped_triples=hrt, num_entities=n, num_relations=r0, num_negs_per_pos=k, model=model, schedule=_schedule(),
        refresh_every=1, corruption_scheme=("head", "tail"), strict=strict, temperature=TEMPERATURE, top_relations=3,
        temperature_gumbel=TEMPERATURE_GUMBEL, seed=seed, backend=backend, step=0, filtered=False,
    )
    g = torch.Generator().manual_seed(14)
    draws = []
    for _ in range(STEPS):
        positives = hrt[torch.randint(edges, (batch,), generator=g)]
        draws.append(sampler.corrupt_batch(positives))
    return torch.stack(draws)  # (steps, B, k, 3)


def pykeen_cases():
    out = {}
    for graph_name in GRAPHS:
        for strict in (True, False):
            for k in (1, 4):
                for seed in SEEDS[:2]:
                    name = f"pykeen/{graph_name}/strict={strict}/k{k}/seed={seed}"
                    out[name] = lambda backend, g=graph_name, s=strict, k=k, sd=seed: _pykeen_case(g, s, k, sd, backend)
    return out


def all_cases(with_pykeen: bool = True) -> dict:
    cases = {**hard_negatives_cases(), **sampler_cases(), **ultra_cases()}
    if with_pykeen:
        cases.update(pykeen_cases())
    return cases
