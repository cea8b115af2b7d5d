"""kmas-bench: a tiny CLI run writes the expected JSON; the hardness metrics on hand-made cases."""

import json
import math

import pytest
import torch

from kmas_kernels import KGIndex

from kmas_bench import hardness
from kmas_bench.cli import main
from kmas_bench.samplers import Problem, query_form, ultra_layout


# ---------------------------------------------------------------- hardness metrics, by hand

def test_expected_types_use_range_for_relations_and_domain_for_inverses():
    domain = torch.tensor([0, 1])  # R0 = 2
    rng = torch.tensor([2, 3])
    assert hardness.expected_types(torch.tensor([0, 1, 2, 3]), domain, rng).tolist() == [2, 3, 0, 1]


def test_type_consistency_counts_the_share_of_matching_types():
    entity_type = torch.tensor([0, 0, 1, 1, 2])
    negatives = torch.tensor([[0, 1, 2, 4],    # wanted type 0: entities 0, 1 match -> 2 / 4
                              [2, 3, 3, 0]])   # wanted type 1: 2, 3, 3 match -> 3 / 4
    assert hardness.type_consistency(negatives, entity_type, torch.tensor([0, 1])) == pytest.approx(5 / 8)
    assert math.isnan(hardness.type_consistency(torch.zeros(0, 3, dtype=torch.long), entity_type, torch.zeros(0, dtype=torch.long)))


def test_false_negative_rate_counts_held_out_triples_in_both_directions():
    n, r0 = 6, 2
    held_out = torch.tensor([[0, 0, 1],   # (0, r0, 1), so inverse (1, r0 + 2, 0)
                             [3, 1, 4]])  # (3, r1, 4), inverse (4, r1 + 2, 3)
    known = KGIndex.from_triples(held_out, num_entities=n, num_relations=r0)
    # tail corruption of (0, r0, ?): negative 1 is a held-out answer, 2 and 5 are not
    # head corruption of (?, r1, 4) = tail corruption of (4, r1 + 2, ?): negative 3 is held out
    query_entity = torch.tensor([0, 4])
    query_relation = torch.tensor([0, 3])
    negatives = torch.tensor([[1, 2, 5], [3, 3, 0]])
    assert hardness.false_negative_rate(known, query_entity, query_relation, negatives) == pytest.approx(3 / 6)
    # the wrong relation is not a hit: (0, r1, 1) is not held out
    assert hardness.false_negative_rate(known, torch.tensor([0]), torch.tensor([1]), torch.tensor([[1]])) == 0.0
    assert hardness.false_negative_rate(None, query_entity, query_relation, negatives) == 0.0


def test_range_consistency_uses_the_observed_tails_of_the_query_relation():
    n, r0 = 5, 1
    train = torch.tensor([[0, 0, 1], [2, 0, 3]])  # tails of r0: {1, 3}; tails of its inverse: {0, 2}
    index = KGIndex.from_triples(train, num_entities=n, num_relations=r0)
    share = hardness.range_consistency(index, torch.tensor([0, 1]), torch.tensor([[1, 4], [0, 2]]))
    assert share == pytest.approx(3 / 4)


def test_mean_model_score_separates_negatives_from_positives():
    scores = torch.tensor([[2.0, 1.0, 3.0], [0.0, -1.0, -3.0]])
    m = hardness.mean_model_score(scores)
    assert m["mean_score"] == pytest.approx(0.0)
    assert m["mean_positive_score"] == pytest.approx(1.0)
    assert m["share_scored_above_positive"] == pytest.approx(1 / 4)


def test_tail_degree_and_hub_bias_by_hand():
    n, r0 = 5, 2
    # (0, r0, 1), (2, r0, 1), (0, r1, 3): with inverses, entity 1 is a tail of r0; 3 of r1;
    # 0 a tail of inverse r0 (=2) and inverse r1 (=3); 2 of inverse r0; 4 of nothing
    train = torch.tensor([[0, 0, 1], [2, 0, 1], [0, 1, 3]])
    index = KGIndex.from_triples(train, num_entities=n, num_relations=r0)
    assert hardness.tail_degree(index).tolist() == [2, 1, 1, 1, 0]
    negatives = torch.tensor([[0, 0, 4], [2, 1, 4]])  # degrees 2, 2, 0 | 1, 1, 0: mean 6 / 6 = 1
    positive = torch.tensor([4, 4])                    # degree 0: ratio undefined
    assert hardness.hub_bias(index, negatives, torch.tensor([1, 0]))["negative_tail_degree"] == pytest.approx(1.0)
    m = hardness.hub_bias(index, negatives, torch.tensor([1, 0]))  # answers' degrees 1, 2: mean 1.5
    assert m["positive_tail_degree"] == pytest.approx(1.5) and m["hub_bias"] == pytest.approx(1.0 / 1.5)
    assert math.isnan(hardness.hub_bias(index, negatives, positive)["hub_bias"])


def test_effective_relations_is_exp_entropy():
    w = torch.tensor([[1.0, 0.0, 0.0, 0.0],    # one relation: entropy 0, n_eff 1
                      [1.0, 1.0, 1.0, 1.0],    # uniform over 4: n_eff 4
                      [2.0, 2.0, 0.0, 0.0]])   # unnormalised, two equal: n_eff 2
    m = hardness.effective_relations(w)
    assert m["effective_relations"] == pytest.approx((1 + 4 + 2) / 3)
    assert m["mean_max_weight"] == pytest.approx((1 + 0.25 + 0.5) / 3)
    # weights 3/4, 1/4: entropy = -(3/4 ln 3/4 + 1/4 ln 1/4)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert hardness.effective_relations(torch.tensor([[3.0, 1.0]]))["effective_relations"] == pytest.approx(math.exp(h))
    with pytest.raises(ValueError, match="weights"):
        hardness.effective_relations(torch.tensor([[0.0, 0.0]]))
    with pytest.raises(ValueError, match="weights"):
        hardness.effective_relations(torch.tensor([[-1.0, 2.0]]))


def test_kmas_relation_weights_follow_temperature_and_top_relations():
    from types import SimpleNamespace

    index = KGIndex.from_triples(torch.tensor([[0, 0, 1], [1, 1, 2]]), num_entities=3, num_relations=2)  # R = 4
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # cos to relation 0: 1, 1, 0, -1
    problem = SimpleNamespace(index=index, embeddings=z, query_relation=torch.tensor([0]))
    w = hardness.kmas_relation_weights(problem, {"temperature": 1.0})
    expected = torch.softmax(torch.tensor([1.0, 1.0, 0.0, -1.0]), dim=0)
    assert torch.allclose(w[0], expected)
    w2 = hardness.kmas_relation_weights(problem, {"temperature": 1.0, "top_relations": 2})
    assert torch.allclose(w2[0], torch.tensor([0.5, 0.5, 0.0, 0.0]))
    assert hardness.effective_relations(w2)["effective_relations"] == pytest.approx(2.0)
    problem.embeddings = None  # no embeddings: one-hot on the query relation
    assert hardness.kmas_relation_weights(problem).tolist() == [[1.0, 0.0, 0.0, 0.0]]


def test_ultra_layout_and_query_form_round_trip():
    rows = torch.tensor([[0, 0, 1], [2, 1, 3], [4, 0, 5], [1, 1, 2]])  # [h, r, t]
    problem = Problem(index=None, graph=None, rows=rows, query_entity=None, query_relation=None, positive=None,
                      embeddings=None, num_base_relations=2)
    negatives = torch.arange(8).view(4, 2) + 10
    layout = ultra_layout(problem, negatives)
    assert layout.shape == (4, 3, 3)
    assert layout[:, 0].tolist() == [[0, 1, 0], [2, 3, 1], [4, 5, 0], [1, 2, 1]]  # [h, t, r] positives
    assert layout[0, 1:, 1].tolist() == [10, 11] and layout[2, 1:, 0].tolist() == [14, 15]
    assert torch.equal(query_form(problem, layout), negatives)


# ---------------------------------------------------------------- the CLI, tiny

def test_cli_smoke_writes_the_table_json_and_plots(tmp_path, capsys):
    argv = ["--quick", "--entities", "600", "--sizes", "300", "--batch", "8", "--negatives", "16", "--repeats", "1",
            "--hardness-batches", "1", "--samplers", "ultra-strict", "strict-rejection", "kmas-reference",
            "--overhead-entities", "200", "--overhead-batch", "4", "--overhead-negatives", "8", "--overhead-steps", "1",
            "--no-checkpoint", "--no-progress", "--out", str(tmp_path), "--name", "smoke"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "KMAS hard, backend=reference" in printed and "false-neg rate" in printed
    result = json.loads((tmp_path / "smoke.json").read_text())
    for key in ("machine", "parameters", "graph", "table", "sweep", "overhead", "training", "seconds"):
        assert key in result, key
    assert {"cpu", "torch", "device", "device_name", "backends"} <= set(result["machine"])
    assert result["parameters"]["batch"] == 8 and result["parameters"]["negatives"] == 16
    rows = {row["sampler"]: row for row in result["table"]["rows"]}
    assert set(rows) == {"ultra-strict", "strict-rejection", "kmas-reference"}
    for row in rows.values():
        assert row["cost"]["seconds_per_call"] > 0 and "extra_peak_bytes" in row["cost"]
        assert 0 <= row["hardness"]["type_consistency"] <= 1
        assert 0 <= row["hardness"]["false_negative_rate"] <= row["hardness"]["false_negative_rate_all"] <= 1
        assert row["hardness"]["hub_bias"] > 0 and row["hardness"]["positive_tail_degree"] > 0
    # strict samplers never return a known training triple; hard negatives are type-consistent far more often
    assert rows["strict-rejection"]["hardness"]["train_triple_rate"] == 0
    # without a checkpoint KMAS mixes one relation (the query's own tail set): n_eff = 1
    assert rows["kmas-reference"]["hardness"]["effective_relations"] == pytest.approx(1.0)
    assert "effective_relations" not in rows["ultra-strict"]["hardness"]
    assert "hub bias" in printed and "n_eff(w)" in printed
    assert rows["kmas-reference"]["hardness"]["type_consistency"] > rows["ultra-strict"]["hardness"]["type_consistency"] + 0.2
    assert {r["num_entities"] for r in result["sweep"]} == {300, 600}
    over = result["overhead"]
    assert set(over["modes"]) == {"strict", "kmas"} and "comparison" in over, over
    assert 0 < over["modes"]["kmas"]["mining_share"] < 1
    assert (tmp_path / "smoke_table.png").is_file() and (tmp_path / "smoke_sweep.png").is_file()
    assert (tmp_path / "smoke_overhead.png").is_file()
    # busy machines are marked and warned about on stdout; no raw JSON between the progress lines
    assert isinstance(result["busy"]["any"], bool) and result["busy"]["cpu_count"] >= 1
    assert all("busy" in row["cost"] and "load_average_1min" in row["cost"] for row in result["table"]["rows"])
    assert ("WARNING: the machine was busy" in printed) == result["busy"]["any"]
    assert not any(line.lstrip().startswith("{") for line in printed.splitlines())
    (tmp_path / "smoke_table.png").unlink()
    assert main(["--replot", str(tmp_path / "smoke.json")]) == 0 and (tmp_path / "smoke_table.png").is_file()


def test_busy_warning_and_plot_titles_have_no_paths(tmp_path):
    from kmas_bench import report

    result = {"busy": {"any": True, "max_load_average_1min": 7.5, "cpu_count": 2, "busy_measurements": ["kmas-cpu"]}}
    assert "busy" in report.busy_warning(result) and "kmas-cpu" in report.busy_warning(result)
    assert report.busy_warning({"busy": {"any": False}}) == ""
    assert report._short("fine-tune on /work/shared/data/grail/fb237_v1, test on /x/y_ind") == "fine-tune on fb237_v1, test on y_ind"
