"""kmas_ultra.loop.TrainingLoop, the one resumable loop of kmas-train and kmas-pretrain: its
validation / save / stop schedule, resuming from its state, argument errors, and the pre-training
partial-state layout that the study's files have (so that they keep resuming)."""

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

try:
    import kmas_ultra  # noqa: F401
except ImportError:  # a checkout without `pip install .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from kmas_ultra.loop import TrainingLoop, load_state, make_loss, make_negative_sampler, save_state

NUM_ENTITIES, BATCH, K = 12, 4, 3


class Toy(nn.Module):
    """Scores a (B, 1 + k, 3) batch from entity embeddings (the loop only needs model(data, batch))."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(NUM_ENTITIES, 4)

    def forward(self, data, batch):
        return (self.emb(batch[..., 0]) * self.emb(batch[..., 1])).sum(-1)


def toy_loop(steps: int, generator: torch.Generator, events: list, **hooks) -> TrainingLoop:
    model = Toy()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05)

    def batches():
        return "graph", torch.randint(NUM_ENTITIES, (BATCH, 3), generator=generator), None

    def sample(data, batch, k):
        assert data == "graph"
        negatives = batch.unsqueeze(1).repeat(1, 1 + k, 1)
        negatives[:, 1:, 1] = torch.randint(NUM_ENTITIES, (BATCH, k), generator=generator)
        return negatives

    loop = TrainingLoop(model, optimizer, steps=steps, batches=batches, sample=sample, num_negative=K, loss=make_loss(),
                        progress=False, **hooks)
    if "validate" not in hooks:
        loop.validate = lambda step: events.append(("valid", step)) or {"mrr": float(step)}
    if "save" not in hooks:
        loop.save = lambda: events.append(("save", loop.step))
    return loop


def test_validation_save_and_stop_schedule():
    events = []
    loop = toy_loop(7, torch.Generator().manual_seed(1), events, valid_every=3, save_every=2, validate_first=True)
    assert loop.run() is None
    assert [s for kind, s in events if kind == "valid"] == [0, 3, 6, 7]  # first, every 3 before the last, the last
    assert [s for kind, s in events if kind == "save"] == [2, 4, 6]  # every 2 before the last
    assert [h["step"] for h in loop.history] == [0, 3, 6, 7] and len(loop.losses) == loop.step == 7
    assert all(torch.isfinite(torch.tensor(loop.losses)))

    events.clear()
    loop = toy_loop(7, torch.Generator().manual_seed(1), events, valid_every=0, save_every=0,
                    stop=lambda: "asked" if loop.step == 5 else None)
    assert loop.run() == "asked"  # a stop saves, then ends the run without the last validation
    assert events == [("save", 5)] and loop.step == 5


def test_resumed_loop_continues_the_uninterrupted_run(tmp_path):
    straight = toy_loop(8, torch.Generator().manual_seed(2), [], valid_every=3)
    straight.run()

    generator = torch.Generator().manual_seed(2)
    first = toy_loop(8, generator, [], valid_every=3, stop=lambda: "stop" if first.step == 5 else None)
    first.save = lambda: save_state({**first.state_dict(), "generator": generator.get_state(), "history": first.history,
                                     "validated_at": first.validated_at}, tmp_path / "state.pth")
    assert first.run() == "stop"
    state = load_state(tmp_path / "state.pth")  # weights_only=True
    assert set(first.state_dict()) == {"model", "optimizer", "step", "losses"} and state["step"] == 5

    generator = torch.Generator().manual_seed(99)
    resumed = toy_loop(8, generator, [], valid_every=3)
    resumed.load_state_dict(state)
    generator.set_state(state["generator"])
    resumed.history, resumed.validated_at = state["history"], state["validated_at"]
    assert resumed.run() is None
    assert resumed.losses == pytest.approx(straight.losses, rel=1e-6, abs=1e-7)
    assert [h["step"] for h in resumed.history] == [h["step"] for h in straight.history] == [3, 6, 8]
    for name, tensor in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], tensor, rtol=1e-6, atol=1e-7)


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        toy_loop(0, torch.Generator(), [])
    with pytest.raises(ValueError, match="valid_every must be a non-negative integer"):
        toy_loop(3, torch.Generator(), [], valid_every=-1)
    with pytest.raises(ValueError, match="save_every must be a non-negative integer"):
        toy_loop(3, torch.Generator(), [], save_every=1.5)
    with pytest.raises(ValueError, match="negatives must be one of"):
        make_negative_sampler("hard", Toy(), None, 3)
    with pytest.raises(ValueError, match="hard_weighting must be one of"):
        make_loss("heaviest", kmas_sampler=object())


# the keys of <run>.partial.pth as the study's runs wrote them before the loop was shared: a partial
# state of another layout would no longer resume those runs
PARTIAL_KEYS = {"digest", "model", "optimizer", "generator", "negative_generator", "step", "losses", "history",
                "graph_counts", "seconds", "kmas", "row_counts"}


@pytest.mark.parametrize("spec", ["strict", "kmas:T=0.1,top=2,max=1,final=1,warm=0,peak=0,loss=share"])
def test_pretrain_partial_state_keeps_its_layout(tmp_path, spec):
    from kmas_bench import pretrain
    from kmas_ultra import synthetic_split, triples_of

    split = synthetic_split(30, 4, 4, 100, seed=3)
    graphs = pretrain.StudyGraphs(["toy"], [split.train], [(split.valid, split.valid_filter, triples_of(split.valid)[:4])],
                                  [split.train.num_edges])
    config = pretrain.RunConfig(**pretrain.parse_config(spec, steps=5, batch=4, negatives=3, dim=4, num_layers=1))
    assert pretrain.run_one(config, graphs, tmp_path, tmp_path / "final.pth", valid_every=2, stop_after=3,
                            progress=False, log=lambda m: None) is None
    state = load_state(tmp_path / f"{config.name}.partial.pth")
    assert set(state) == PARTIAL_KEYS
    assert state["digest"] == config.digest() and state["step"] == 3 and len(state["losses"]) == 3
    assert isinstance(state["history"], str) and isinstance(state["seconds"], float)  # history as JSON text
    assert sum(state["graph_counts"]) == 3 and (state["kmas"] != {}) == (config.sampler == "kmas")
    result = pretrain.run_one(config, graphs, tmp_path, tmp_path / "final.pth", valid_every=2, progress=False,
                              log=lambda m: None)
    assert [h["step"] for h in result["valid"]] == [0, 2, 4, 5] and len(result["losses"]) == 5
