"""The drop-in inside the real ULTRA model's training step (DeepGraphLearning/ULTRA).

Needs a checkout of ULTRA (``ULTRA_PATH`` = the folder holding its ``ultra/`` package), its
dependencies torch-geometric and torch-scatter, ``../shared/data`` and ``../shared/checkpoints``.
Skips with a message otherwise. What it checks, on the GraIL fb237_v1 training graph with the
public ultra_3g weights: ULTRA's own ``negative_sampling`` and ours return the same layout; a
full training step (ULTRA forward, self-adversarial BCE, backward, AdamW) runs on our batch; no
negative is a known triple; the forward hook on ``model.relation_model`` filled the cache.
"""

import copy
import importlib
import os
import sys

import pytest
import torch

from conftest import shared_dir
from kmas_kernels.data import load_kg_folder
from kmas_kernels.ultra import KMASNegativeSampling

QUERIES = int(os.environ.get("KMAS_FIDELITY_QUERIES", "48"))  # test queries compared with ULTRA's code


@pytest.fixture(scope="module")
def ultra():
    path = os.environ.get("ULTRA_PATH")
    if not path:
        pytest.skip("set ULTRA_PATH to a checkout of DeepGraphLearning/ULTRA to run the drop-in inside the real model")
    for dependency in ("torch_scatter", "torch_geometric"):
        if importlib.util.find_spec(dependency) is None:
            pytest.skip(f"ULTRA needs {dependency}, not installed here (pip install kmas_kernels[ultra])")
    sys.path.insert(0, path)
    models = importlib.import_module("ultra.models")
    tasks = importlib.import_module("ultra.tasks")
    return models, tasks


@pytest.fixture(scope="module")
def graph_and_model(ultra):
    models, tasks = ultra
    data_dir = shared_dir() / "data" / "grail" / "fb237_v1"
    checkpoint = shared_dir() / "checkpoints" / "ultra_3g.pth"
    if not data_dir.is_dir() or not checkpoint.is_file():
        pytest.skip(f"needs {data_dir} and {checkpoint}")
    from torch_geometric.data import Data

    kg = load_kg_folder(data_dir)
    h, r, t = kg.train.unbind(1)
    r0 = kg.num_relations
    data = Data(
        edge_index=torch.stack([torch.cat([h, t]), torch.cat([t, h])]),
        edge_type=torch.cat([r, r + r0]),
        num_nodes=kg.num_entities,
        num_relations=2 * r0,
        target_edge_index=torch.stack([h, t]),
        target_edge_type=r,
    )
    data = tasks.build_relation_graph(data)
    layer = dict(input_dim=64, hidden_dims=[64] * 6, message_func="distmult", aggregate_func="sum", short_cut=True, layer_norm=True)
    model = models.Ultra(dict(layer, **{"class": "RelNBFNet"}), dict(layer, **{"class": "EntityNBFNet"}))
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    model.load_state_dict(state)
    return data, model


def test_drop_in_runs_inside_a_real_ultra_training_step(ultra, graph_and_model):
    _, tasks = ultra
    data, model = graph_and_model
    model = copy.deepcopy(model)
    batch = torch.cat([data.target_edge_index, data.target_edge_type[None]]).T[:8]  # (B, 3) [h, t, r]
    sampler = KMASNegativeSampling(model, data, total_steps=4, schedule=0.5, seed=0, backend="reference")

    theirs = tasks.negative_sampling(data, batch, 32, strict=True)
    ours = sampler(data, batch, 32, strict=True)
    assert ours.shape == theirs.shape == (8, 33, 3)
    assert torch.equal(ours[:, 0], theirs[:, 0])
    assert torch.equal(ours[:4, :, 0], theirs[:4, :, 0]) and torch.equal(ours[4:, :, 1], theirs[4:, :, 1])

    known = set(zip(data.edge_index[0].tolist(), data.edge_type.tolist(), data.edge_index[1].tolist()))
    for b in range(8):
        for h, t, r in ours[b, 1:].tolist():
            assert (h, r, t) not in known, f"row {b}: known triple ({h}, {r}, {t}) among the negatives"

    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    model.train()
    for step in range(2):
        batch_negatives = sampler(data, batch, 32, strict=True)
        pred = model(data, batch_negatives)
        target = torch.zeros_like(pred)
        target[:, 0] = 1
        loss = torch.nn.functional.binary_cross_entropy_with_logits(pred, target, reduction="none")
        neg_weight = torch.ones_like(pred)
        neg_weight[:, 1:] = torch.softmax(pred[:, 1:].detach(), dim=-1)  # adversarial temperature 1
        loss = ((loss * neg_weight).sum(-1) / neg_weight.sum(-1)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss)
    state = sampler.graph(data).cache
    queried = batch[:, 2].unique()
    assert state.seen[queried].all() and state.seen[queried + data.num_relations // 2].all()
    assert torch.isfinite(state.similarity[queried]).all()
    sampler.close()


@pytest.mark.parametrize("split_name", ["fb237_v1", "WN18RR_v1"])
def test_reference_loop_ranks_like_real_ultra(ultra, split_name):
    """kmas_ultra's model and filtered ranking vs ULTRA's own code, ultra_3g zero-shot on a GraIL
    pair (first QUERIES test queries; the same data objects fed to both)."""
    models, tasks = ultra
    kmas_ultra = pytest.importorskip("kmas_ultra")
    train_dir, ind_dir = (shared_dir() / "data" / "grail" / name for name in (split_name, f"{split_name}_ind"))
    checkpoint = shared_dir() / "checkpoints" / "ultra_3g.pth"
    if not ind_dir.is_dir() or not checkpoint.is_file():
        pytest.skip(f"needs {ind_dir} and {checkpoint}")
    from torch_geometric.data import Data

    split = kmas_ultra.load_inductive(train_dir, ind_dir)
    ours = kmas_ultra.load_checkpoint(checkpoint)
    queries = kmas_ultra.triples_of(split.test)[:QUERIES]
    mine = kmas_ultra.evaluate(ours, split.test, queries, split.test_filter, batch_size=16)

    graph = split.test
    data = tasks.build_relation_graph(Data(edge_index=graph.edge_index, edge_type=graph.edge_type,
                                           num_nodes=graph.num_nodes, num_relations=graph.num_relations))
    filt = Data(edge_index=split.test_filter.edge_index, edge_type=split.test_filter.edge_type,
                num_nodes=split.test_filter.num_nodes)
    layer = dict(input_dim=64, hidden_dims=[64] * 6, message_func="distmult", aggregate_func="sum", short_cut=True, layer_norm=True)
    theirs = models.Ultra(dict(layer, **{"class": "RelNBFNet"}), dict(layer, **{"class": "EntityNBFNet"}))
    theirs.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["model"])
    theirs.eval()
    tail_ranks, head_ranks = [], []
    with torch.no_grad():
        for start in range(0, len(queries), 16):
            batch = queries[start:start + 16]
            t_batch, h_batch = tasks.all_negative(data, batch)
            t_mask, h_mask = tasks.strict_negative_mask(filt, batch)
            tail_ranks.append(tasks.compute_ranking(theirs(data, t_batch), batch[:, 1], t_mask))
            head_ranks.append(tasks.compute_ranking(theirs(data, h_batch), batch[:, 0], h_mask))
    ranks = torch.cat(tail_ranks + head_ranks).float()
    their_mrr = float((1 / ranks).mean())
    print(f"{split_name}_ind, first {len(queries)} queries: kmas_ultra MRR {mine['mrr']:.4f}, ULTRA code MRR {their_mrr:.4f}")
    assert abs(mine["mrr"] - their_mrr) <= 0.005, (mine["mrr"], their_mrr)
    same = (torch.cat(tail_ranks) == mine["tail_ranks"]).float().mean()
    assert same >= 0.9, f"only {float(same):.2f} of tail ranks agree"


@pytest.mark.parametrize("message_passing", ["auto", "reference"])
def test_training_step_matches_real_ultra(ultra, graph_and_model, message_passing):
    """kmas_ultra's training step (fused message passing by default) vs ULTRA's own code on the same
    batch: scores, loss and every parameter gradient equal to float rounding."""
    kmas_ultra = pytest.importorskip("kmas_ultra")
    data, theirs = graph_and_model
    theirs = copy.deepcopy(theirs)
    ours = kmas_ultra.Ultra(message_passing=message_passing)
    ours.load_state_dict(theirs.state_dict())
    graph = kmas_ultra.make_graph(torch.cat([data.target_edge_index, data.target_edge_type[None]]).T,
                                  data.num_nodes, data.num_relations // 2)
    assert torch.equal(graph.edge_index, data.edge_index) and torch.equal(graph.edge_type, data.edge_type)
    rows = torch.cat([data.target_edge_index, data.target_edge_type[None]]).T[:8]
    batch = kmas_ultra.negative_sampling(graph, rows, 32, strict=True, generator=torch.Generator().manual_seed(0))
    results = []
    for model, g in ((ours, graph), (theirs, data)):
        model.train()
        pred = model(g, batch)
        loss = kmas_ultra.self_adversarial_bce(pred)
        loss.backward()
        results.append((pred.detach(), loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    (pred_o, loss_o, grad_o), (pred_t, loss_t, grad_t) = results
    torch.testing.assert_close(pred_o, pred_t, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(loss_o, loss_t, atol=1e-5, rtol=1e-5)
    assert grad_o.keys() == grad_t.keys()
    for name in grad_o:
        scale = float(grad_t[name].abs().max()) + 1e-12
        assert float((grad_o[name] - grad_t[name]).abs().max()) <= 1e-3 * scale, name
