"""The ULTRA reference loop (python/kmas_ultra): checkpoints, filtered ranking, training, CLIs."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import shared_dir

try:
    import kmas_ultra  # noqa: F401  (installed with the package)
except ImportError:  # running from a checkout without `pip install .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from kmas_ultra import (Ultra, build_relation_graph, evaluate, load_checkpoint, load_inductive, make_graph,
                        negative_sampling, strict_negative_mask, synthetic_split, triples_of)
from kmas_ultra.tasks import self_adversarial_bce
from kmas_ultra.train import make_negative_sampler, train_step

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


CHECKPOINTS = shared_dir() / "checkpoints"
GRAIL = shared_dir() / "data" / "grail"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not found (set KMAS_SHARED to the shared folder with checkpoints/ and data/)")
    return path


# ----------------------------------------------------------------------------- model / checkpoints

@pytest.mark.parametrize("name", ["ultra_3g", "ultra_4g", "ultra_50g"])
def test_checkpoint_loads_strict(name):
    path = need(CHECKPOINTS / f"{name}.pth")
    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    model = Ultra()
    model.load_state_dict(state, strict=True)  # raises on any missing / unexpected / mis-shaped tensor
    assert len(model.state_dict()) == len(state) == 82
    assert sum(p.numel() for p in model.parameters()) == 168_705
    assert hasattr(model, "relation_model") and hasattr(model, "entity_model")


def test_fresh_model_has_checkpoint_layout():
    model = Ultra()
    assert len(model.state_dict()) == 82
    assert sum(p.numel() for p in model.parameters()) == 168_705


def test_relation_encoder_shape():
    split = synthetic_split(40, 3, 3, 150, seed=1)
    model = Ultra()
    query = torch.tensor([0, 1, 5])
    out = model.relation_model(split.train.relation_graph, query=query)
    assert out.shape == (3, split.train.num_relations, 64)


# ----------------------------------------------------------------------------- data protocol

def test_relation_graph_matches_definition():
    g = torch.Generator().manual_seed(0)
    n, r0 = 12, 3
    triples = torch.stack([torch.randint(n, (30,), generator=g), torch.randint(n, (30,), generator=g),
                           torch.randint(r0, (30,), generator=g)], dim=1)  # [h, t, r]
    data = make_graph(triples, n, r0)
    assert data.num_relations == 2 * r0 and data.num_edges == 60
    heads = {r: set() for r in range(2 * r0)}
    tails = {r: set() for r in range(2 * r0)}
    for (u, v), r in zip(data.edge_index.t().tolist(), data.edge_type.tolist()):
        heads[r].add(u)
        tails[r].add(v)
    expected = set()
    for a in range(2 * r0):
        for b in range(2 * r0):
            for kind, (x, y) in enumerate([(heads, heads), (tails, tails), (heads, tails), (tails, heads)]):
                if x[a] & y[b]:
                    expected.add((a, b, kind))
    rel = build_relation_graph(data.edge_index, data.edge_type, n, 2 * r0)
    got = {(a, b, k) for (a, b), k in zip(rel.edge_index.t().tolist(), rel.edge_type.tolist())}
    assert got == expected and len(got) == rel.num_edges


def test_grail_protocol():
    need(GRAIL / "fb237_v1_ind")
    split = load_inductive(GRAIL / "fb237_v1", GRAIL / "fb237_v1_ind")
    lines = lambda p: sum(1 for line in open(p) if line.strip())  # noqa: E731
    ind = GRAIL / "fb237_v1_ind"
    assert split.test.num_edges == 2 * lines(ind / "train.txt")
    assert split.test.target_edge_type.numel() == lines(ind / "valid.txt") + lines(ind / "test.txt")
    assert split.test_filter.num_edges == lines(ind / "train.txt") + split.test.target_edge_type.numel()
    assert split.test.num_relations == split.train.num_relations  # relation ids from the training graph


def test_strict_negatives_avoid_known_answers():
    split = synthetic_split(50, 4, 4, 400, seed=2)
    data = split.train
    known = set(map(tuple, triples_of(data).tolist()))
    batch = triples_of(data)[:16]
    out = negative_sampling(data, batch, 64, strict=True)
    assert out.shape == (16, 65, 3)
    assert torch.equal(out[:, 0], batch)
    for b in range(16):
        for h, t, r in out[b, 1:].tolist():
            assert (h, t, r) not in known
        if b < 8:
            assert (out[b, 1:, 0] == batch[b, 0]).all()
        else:
            assert (out[b, 1:, 1] == batch[b, 1]).all()
    t_mask, h_mask = strict_negative_mask(data, batch)
    assert t_mask.shape == h_mask.shape == (16, data.num_nodes)


# ----------------------------------------------------------------------------- filtered ranking

def _first_principles_ranks(model, data, queries, known):
    """Score every entity one query at a time, filter known answers, count >= scores."""
    model.eval()
    ranks = []
    n = data.num_nodes
    every = torch.arange(n)
    with torch.no_grad():
        for h, t, r in queries.tolist():
            tail_scores = model(data, torch.stack([torch.full((n,), h), every, torch.full((n,), r)], -1)[None])[0]
            head_scores = model(data, torch.stack([every, torch.full((n,), t), torch.full((n,), r)], -1)[None])[0]
            tail_known = {x for (a, x, rr) in known if a == h and rr == r}
            head_known = {x for (x, b, rr) in known if b == t and rr == r}
            for scores, answer, excluded in ((tail_scores, t, tail_known), (head_scores, h, head_known)):
                rank = 1 + sum(1 for e in range(n) if e != answer and e not in excluded and scores[e] >= scores[answer])
                ranks.append(rank)
    return ranks


def _check_eval(model, split, num_queries):
    queries = triples_of(split.test)[:num_queries]
    known = set(map(tuple, torch.cat([split.test_filter.edge_index, split.test_filter.edge_type[None]]).t().tolist()))
    expected = _first_principles_ranks(model, split.test, queries, known)
    got = evaluate(model, split.test, queries, split.test_filter, batch_size=3)
    tails, heads = got["tail_ranks"].tolist(), got["head_ranks"].tolist()
    assert tails == expected[0::2]
    assert heads == expected[1::2]
    assert got["num_ranks"] == 2 * num_queries
    assert got["mrr"] == pytest.approx(sum(1 / x for x in expected) / len(expected), rel=1e-5)


def test_eval_matches_first_principles_synthetic():
    torch.manual_seed(0)
    _check_eval(Ultra(), synthetic_split(40, 3, 3, 200, seed=3), 5)


def test_eval_matches_first_principles_checkpoint():
    model = load_checkpoint(need(CHECKPOINTS / "ultra_3g.pth"))
    need(GRAIL / "fb237_v1_ind")
    split = load_inductive(GRAIL / "fb237_v1", GRAIL / "fb237_v1_ind")
    _check_eval(model, split, 4)


def test_checkpoint_beats_random_init_zero_shot():
    """A sanity bound (the fidelity table is in python/README.md): 24 queries of fb237_v1_ind."""
    model = load_checkpoint(need(CHECKPOINTS / "ultra_3g.pth"))
    need(GRAIL / "fb237_v1_ind")
    split = load_inductive(GRAIL / "fb237_v1", GRAIL / "fb237_v1_ind")
    queries = triples_of(split.test)[:24]
    trained = evaluate(model, split.test, queries, split.test_filter, batch_size=8)["mrr"]
    torch.manual_seed(0)
    untrained = evaluate(Ultra(), split.test, queries, split.test_filter, batch_size=8)["mrr"]
    assert trained > 0.3 and trained > untrained + 0.1


# ----------------------------------------------------------------------------- training

@pytest.mark.parametrize("mode", ["random", "strict", "kmas"])
def test_training_lowers_loss(mode):
    torch.manual_seed(0)
    split = synthetic_split(50, 4, 4, 300, seed=4)
    data = split.train
    model = Ultra()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    triples = triples_of(data)
    gen = torch.Generator().manual_seed(1)
    probe = negative_sampling(data, triples[:32], 16, strict=True, generator=gen)

    def probe_loss():
        with torch.no_grad():
            return float(self_adversarial_bce(model(data, probe)))

    before = probe_loss()
    sample = make_negative_sampler(mode, model, data, total_steps=25, seed=0)
    model.train()
    for step in range(25):
        idx = torch.randint(len(triples), (16,), generator=gen)
        train_step(model, optimizer, data, triples[idx], sample, 16)
    after = probe_loss()
    if mode == "kmas":  # the drop-in advanced once per step and its schedule did mine hard negatives
        assert sample.sampler.step == 25
        assert max(sample.sampler.schedule(s) for s in range(25)) > 0
        sample.sampler.close()
    assert after < before - 0.05, (before, after)


# ----------------------------------------------------------------------------- CLIs

def _cli(name):
    exe = Path(sys.executable).parent / name
    if exe.exists():
        return [str(exe)]
    if shutil.which(name):
        return [shutil.which(name)]
    return [sys.executable, "-m", "kmas_ultra.cli", name.split("-")[1]]


def _run(cmd):
    cmd = cmd + ["--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_cli_eval_synthetic():
    out = _run(_cli("kmas-eval") + ["--limit", "4", "--batch-size", "2"])
    assert {"mrr", "hits@1", "hits@3", "hits@10", "num_ranks"} <= set(out)
    assert out["num_ranks"] == 8 and out["dataset"] == "synthetic"


def test_cli_train_synthetic(tmp_path):
    out = _run(_cli("kmas-train") + ["--steps", "3", "--batch-size", "8", "--num-negative", "8", "--negatives", "kmas",
                                     "--valid-every", "2", "--valid-limit", "4", "--out-dir", str(tmp_path), "--no-progress"])
    assert out["steps"] == 3 and len(out["valid"]) == 2
    assert (tmp_path / "best.pth").exists() and (tmp_path / "model_step_2.pth").exists()
    state = torch.load(tmp_path / "best.pth", weights_only=True)
    Ultra().load_state_dict(state["model"], strict=True)


def test_cli_eval_checkpoint_inductive():
    ckpt = need(CHECKPOINTS / "ultra_3g.pth")
    need(GRAIL / "WN18RR_v1_ind")
    out = _run(_cli("kmas-eval") + ["--checkpoint", str(ckpt), "--inductive", str(GRAIL / "WN18RR_v1"),
                                    str(GRAIL / "WN18RR_v1_ind"), "--limit", "6", "--no-progress"])
    assert out["num_ranks"] == 12 and 0.0 < out["mrr"] <= 1.0


def test_kmas_train_top_relations_takes_a_count_or_all():
    import argparse

    from kmas_ultra.cli import top_relations_arg

    assert top_relations_arg("all") == "all" and top_relations_arg("3") == 3
    for bad in ("0", "-2", "many", "2.5"):
        with pytest.raises(argparse.ArgumentTypeError, match="positive integer or 'all'"):
            top_relations_arg(bad)
