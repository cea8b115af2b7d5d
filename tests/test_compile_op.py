"""kmas::hard_negatives: the custom op, torch.compile(fullgraph=True) and torch.export give eager's result."""

import pytest
import torch

import importlib
from kmas_kernels import KGIndex, hard_negatives
from kmas_kernels.data import synthetic_typed_kg
from kmas_kernels.ops import OP_AVAILABLE
from kmas_kernels.ops.hard_negatives_op import INDEX_TENSORS

pytestmark = pytest.mark.skipif(not OP_AVAILABLE, reason="torch.library.custom_op needs torch >= 2.4")


@pytest.fixture(scope="module")
def graph():
    kg = synthetic_typed_kg(num_entities=200, num_relations=4, seed=0)
    index = KGIndex.from_triples(kg.triples)
    head, relation, tail = kg.triples[:16].unbind(1)
    return index, head, relation, tail


def op_args(index, query_entity, query_relation, *, embeddings=None, weights=None, positive=None, k=8,
            strict=True, temperature=0.1, top_relations=None, temperature_gumbel=1.0, seed=5, backend="auto"):  # fmt: skip
    return tuple(getattr(index, name) for name in INDEX_TENSORS) + (
        query_entity, query_relation, embeddings, weights, positive, index.num_entities, index.num_relations,
        index.inverse_offset, k, strict, temperature, top_relations, temperature_gumbel, seed, backend,
    )  # fmt: skip


@pytest.mark.parametrize(
    "case",
    ["embeddings", "weights", "one-hot, not strict, no positive", "top relations, deterministic", "reference backend"],
)
def test_opcheck(graph, case):
    index, head, relation, tail = graph
    r = index.num_relations
    options = {
        "embeddings": dict(embeddings=torch.randn(r, 8), positive=tail),
        "weights": dict(weights=torch.rand(head.numel(), r), positive=tail),
        "one-hot, not strict, no positive": dict(strict=False),
        "top relations, deterministic": dict(embeddings=torch.randn(r, 8), top_relations=2, temperature_gumbel=0.0),
        "reference backend": dict(positive=tail, backend="reference"),
    }[case]
    torch.library.opcheck(torch.ops.kmas.hard_negatives.default, op_args(index, head, relation, **options))


def test_the_op_is_the_eager_function(graph):
    index, head, relation, tail = graph
    z = torch.randn(index.num_relations, 8)
    got = torch.ops.kmas.hard_negatives(*op_args(index, head, relation, embeddings=z, positive=tail, seed=11))
    assert torch.equal(got, hard_negatives(index, head, relation, relation_embeddings=z, num_negatives=8, positive=tail, seed=11))


def test_eager_calls_do_not_go_through_the_op(graph, monkeypatch):
    index, head, relation, tail = graph

    def forbidden(*args, **kwargs):
        raise AssertionError("eager call went through the custom op")

    module = importlib.import_module("kmas_kernels.hard_negatives")  # the attribute of the package is the function
    monkeypatch.setattr(module, "hard_negatives_traced", forbidden)
    assert hard_negatives(index, head, relation, num_negatives=4, positive=tail, seed=0).shape == (16, 4)


class TinyModel(torch.nn.Module):
    """DistMult-like scores of KMAS negatives: relation embeddings feed the mining, scores the loss."""

    def __init__(self, index):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.index = index
        self.entity = torch.nn.Parameter(torch.randn(index.num_entities, 8, generator=g))
        self.relation = torch.nn.Parameter(torch.randn(index.num_relations, 8, generator=g))

    def forward(self, head, relation, tail, seed):
        negatives = hard_negatives(
            self.index, head, relation, relation_embeddings=self.relation, num_negatives=8, positive=tail, seed=seed
        )
        query = self.entity[head] * self.relation[relation]  # (B, d)
        positive_score = (query * self.entity[tail]).sum(-1)
        negative_score = torch.einsum("bd,bkd->bk", query, self.entity[negatives])
        loss = torch.nn.functional.softplus(negative_score).mean() + torch.nn.functional.softplus(-positive_score).mean()
        return negatives, loss


def test_training_step_compiles_fullgraph_and_matches_eager(graph):
    index, head, relation, tail = graph
    model = TinyModel(index)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    for seed in (0, 1, 2):  # a new seed each step: no graph break, no error
        eager_negatives, eager_loss = model(head, relation, tail, seed)
        eager_grad = torch.autograd.grad(eager_loss, model.entity)[0]
        negatives, loss = compiled(head, relation, tail, seed)
        grad = torch.autograd.grad(loss, model.entity)[0]
        assert torch.equal(negatives, eager_negatives)
        torch.testing.assert_close(loss, eager_loss)
        torch.testing.assert_close(grad, eager_grad)


def test_inductor_fullgraph_matches_eager(graph):
    index, head, relation, tail = graph

    def step(index, head, relation, tail, z):
        negatives = hard_negatives(index, head, relation, relation_embeddings=z * 2, num_negatives=8, positive=tail, seed=3)
        return negatives, negatives.sum(1)

    z = torch.randn(index.num_relations, 8)
    got = torch.compile(step, fullgraph=True)(index, head, relation, tail, z)
    want = step(index, head, relation, tail, z)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_compiled_seed_none_draws_from_torch_generator_like_eager(graph):
    index, head, relation, tail = graph

    def step(index, head, relation):
        return hard_negatives(index, head, relation, num_negatives=6)

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    torch.manual_seed(7)
    want = step(index, head, relation)
    torch.manual_seed(7)
    assert torch.equal(compiled(index, head, relation), want)


def test_compiled_bad_input_raises(graph):
    index, head, relation, tail = graph

    def step(index, head, relation, k):
        return hard_negatives(index, head, relation, num_negatives=k, seed=0)

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    with pytest.raises(ValueError, match="query_entity must hold ids"):  # a value check: when the op runs
        compiled(index, head + index.num_entities, relation, 4)
    # a Python-value check, while tracing: dynamo (fullgraph) reports it quoting our ValueError
    with pytest.raises(Exception, match="num_negatives must be an int >= 1"):
        compiled(index, head, relation, 0)


def test_export(graph):
    index, head, relation, tail = graph

    class Miner(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.index = index

        def forward(self, head, relation, tail, z):
            return hard_negatives(self.index, head, relation, relation_embeddings=z, num_negatives=8, positive=tail, seed=1)

    z = torch.randn(index.num_relations, 8)
    exported = torch.export.export(Miner(), (head, relation, tail, z))
    assert "kmas.hard_negatives" in exported.graph_module.code
    assert torch.equal(exported.module()(head, relation, tail, z), Miner()(head, relation, tail, z))
