"""The pre-training study runner (kmas-pretrain), end to end at a tiny budget on synthetic graph folders."""

import json

import pytest
import torch

from kmas_bench import pretrain
from kmas_bench.pretrain_cli import main
from kmas_kernels.data import synthetic_typed_kg

BUDGET = dict(steps=4, batch=4, negatives=6, dim=8, num_layers=2)


def write_folder(path, num_entities, num_relations, num_edges, seed, prefix):
    """A head<TAB>relation<TAB>tail folder (train/valid/test) from the synthetic typed KG."""
    kg = synthetic_typed_kg(num_entities, num_relations, 3, num_edges, seed=seed)
    ds = kg.split(0.1, 0.1, seed=seed)
    path.mkdir(parents=True)
    for part in ("train", "valid", "test"):
        lines = [f"{prefix}e{h}\tr{r}\t{prefix}e{t}" for h, r, t in getattr(ds, part).tolist()]
        (path / f"{part}.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_folder(root / "g1", 30, 3, 150, 0, "a")
    write_folder(root / "g2", 24, 2, 60, 1, "b")
    write_folder(root / "unseen", 20, 3, 80, 2, "c")
    study = {"train_graphs": ["g1", "g2"], "validation": {"queries_per_graph": 4},
             "zero_shot_test": {"graphs": [{"name": "unseen", "protocol": "transductive", "dir": "unseen"},
                                           {"name": "g1_again", "protocol": "transductive", "dir": "g1"}],
                                "queries_per_graph": 4}}
    (root / "study.json").write_text(json.dumps(study))
    return root


def test_configs_parse_name_and_validate():
    c = pretrain.RunConfig(**pretrain.parse_config("kmas:T=0.03,top=3,max=0.25,warm=0.2", seed=2, **BUDGET))
    assert (c.temperature, c.top_relations, c.max_ratio, c.warmup_fraction) == (0.03, 3, 0.25, 0.2)
    assert c.name == "kmas_T0.03_top3_max0.25_warm0.2_seed2" and c.label == "kmas_T0.03_top3_max0.25_warm0.2"
    schedule = c.kmas_options()["schedule"]
    assert schedule.warmup_steps == round(0.2 * BUDGET["steps"]) and schedule.max_ratio == 0.25
    every = pretrain.RunConfig(**pretrain.parse_config("kmas:T=0.1,top=all", **BUDGET))  # stage 1's former defaults
    assert every.top_relations == "all" and every.label == "kmas_T0.1_topall"
    # unset stage-3 factors keep what stages 1-2 ran (one-hot fallback, mixed directions), whatever the package defaults
    stage12 = {"fallback": "one_hot", "directions": "mixed"}
    assert every.kmas_options() == {"temperature": 0.1, "top_relations": None, **stage12}  # None: every relation
    assert pretrain.RunConfig(**pretrain.parse_config("kmas", **BUDGET)).kmas_options() == stage12
    with pytest.raises(ValueError, match="top must be an integer or all"):
        pretrain.parse_config("kmas:top=many")
    assert pretrain.RunConfig("strict", **BUDGET).name == "strict_seed0"
    with pytest.raises(ValueError, match="key=value"):
        pretrain.parse_config("kmas:temp=0.1")
    with pytest.raises(ValueError, match="sampler"):
        pretrain.RunConfig("hard")
    with pytest.raises(ValueError, match="kmas sampler only"):
        pretrain.RunConfig("strict", temperature=0.1)
    assert pretrain.RunConfig("strict", seed=1).digest() != pretrain.RunConfig("strict", seed=2).digest()


def test_graph_probabilities_are_proportional_to_edges():
    assert pretrain.graph_probabilities([100, 300]).tolist() == pytest.approx([0.25, 0.75])


def record_draws(monkeypatch):
    """Every negative batch the runner draws (strict random or KMAS), in order."""
    import kmas_kernels.ultra
    import kmas_ultra.tasks

    draws = []
    strict, kmas_call = kmas_ultra.tasks.negative_sampling, kmas_kernels.ultra.KMASNegativeSampling.__call__

    def strict_recorded(*args, **kwargs):
        draws.append(strict(*args, **kwargs).clone())
        return draws[-1]

    def kmas_recorded(self, *args, **kwargs):
        draws.append(kmas_call(self, *args, **kwargs).clone())
        return draws[-1]

    monkeypatch.setattr(kmas_ultra.tasks, "negative_sampling", strict_recorded)
    monkeypatch.setattr(kmas_kernels.ultra.KMASNegativeSampling, "__call__", kmas_recorded)
    return draws


# KMAS with the hard share at 1 from the first step, so that every draw reads the similarity cache
@pytest.mark.parametrize("spec", ["strict", "kmas:T=0.1,top=2,max=1,final=1,warm=0,peak=0"])
def test_step_level_resume_draws_what_the_uninterrupted_run_draws(root, tmp_path, monkeypatch, spec):
    from kmas_kernels.core.files import load_torch_file

    graphs = pretrain.load_study_graphs(root, ["g1", "g2"], 4)
    config = pretrain.RunConfig(**pretrain.parse_config(spec, **{**BUDGET, "steps": 6}))
    quiet = dict(progress=False, log=lambda m: None)
    draws = record_draws(monkeypatch)
    straight = pretrain.run_one(config, graphs, tmp_path / "a", tmp_path / "a.pth", valid_every=2, **quiet)
    straight_draws = list(draws)
    draws.clear()
    (tmp_path / "b").mkdir()
    assert pretrain.run_one(config, graphs, tmp_path / "b", tmp_path / "b.pth", valid_every=2, stop_after=3, **quiet) is None
    partial = tmp_path / "b" / f"{config.name}.partial.pth"
    state = load_torch_file(partial)  # plain data: loads with weights_only=True
    if config.sampler == "kmas":  # the drop-in's whole state, each training graph's similarity cache included
        assert state["kmas"]["step"] == 3 and len(state["kmas"]["graphs"]) >= 1
        assert all(g["seen"].any() for g in state["kmas"]["graphs"])
    resumed = pretrain.run_one(config, graphs, tmp_path / "b", tmp_path / "b.pth", valid_every=2, **quiet)
    assert not partial.exists()
    assert len(draws) == len(straight_draws) == 6
    for got, want in zip(draws, straight_draws):  # integer draws: identical
        assert torch.equal(got, want)
    assert resumed["graph_steps"] == straight["graph_steps"]
    assert resumed["losses"] == pytest.approx(straight["losses"], rel=1e-5, abs=1e-6)
    assert [h["step"] for h in resumed["valid"]] == [0, 2, 4, 6]
    if config.sampler == "kmas":  # the options it ran with, written out (defaults resolved)
        assert resumed["sampler_options"] == {"temperature": 0.1, "top_relations": 2, "fallback": "one_hot", "directions": "mixed", "schedule": {
            "total_steps": 6, "warmup_steps": 0, "peak_step": 0, "max_ratio": 1.0, "final_ratio": 1.0}}
    else:
        assert resumed["sampler_options"] is None
    a = load_torch_file(tmp_path / "a.pth")["model"]
    b = load_torch_file(tmp_path / "b.pth")["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_partial_state_of_another_configuration_is_refused(root, tmp_path):
    graphs = pretrain.load_study_graphs(root, ["g1", "g2"], 4)
    config = pretrain.RunConfig("strict", **BUDGET)
    other = pretrain.RunConfig("strict", **{**BUDGET, "lr": 1e-3})
    pretrain.run_one(other, graphs, tmp_path / "c", tmp_path / "c.pth", valid_every=0, progress=False, log=lambda m: None, stop_after=1)
    partial = tmp_path / "c" / f"{other.name}.partial.pth"
    partial.rename(tmp_path / "c" / f"{config.name}.partial.pth")
    with pytest.raises(ValueError, match="another configuration"):
        pretrain.run_one(config, graphs, tmp_path / "c", tmp_path / "c.pth", valid_every=0, progress=False, log=lambda m: None)


def test_cli_runs_tests_writes_results_and_skips_finished_runs(root, tmp_path, capsys, monkeypatch):
    argv = ["run", "--data-root", str(root), "--study", str(root / "study.json"), "--configs", "strict", "kmas:T=0.1,top=2",
            "--steps", "4", "--batch", "4", "--negatives", "6", "--dim", "8", "--layers", "2", "--valid-every", "2",
            "--save-every", "0", "--test", "--out", str(tmp_path), "--name", "tiny", "--no-progress"]
    assert main(argv) == 0
    result = json.loads((tmp_path / "tiny_test.json").read_text())
    assert (tmp_path / "tiny_test.png").is_file()
    assert {r["run"] for r in result["runs"]} == {"strict_seed0", "kmas_T0.1_top2_seed0"}
    for run in result["runs"]:
        assert [h["step"] for h in run["valid"]] == [0, 2, 4]
        assert set(run["valid"][-1]["per_graph"]) == {"g1", "g2"}
        assert sum(run["graph_steps"]) == 4 and run["architecture"]["dim"] == 8
        # the final checkpoint says its architecture and loads as it is
        from kmas_ultra import load_checkpoint

        model = load_checkpoint(tmp_path / run["checkpoint"])
        assert model.relation_model.dim == 8 and len(model.entity_model.layers) == 2
    zero = result["zero_shot"]
    assert zero["entity_overlap_with_training_graphs"] == {"unseen": 0.0, "g1_again": 1.0}
    assert set(zero["per_run"]["strict_seed0"]) == {"unseen", "g1_again"}
    assert 0 < zero["per_run"]["strict_seed0"]["unseen"]["mrr"] <= 1
    summary = result["summary"]["kmas_T0.1_top2"]
    assert summary["zero_shot"]["unseen"]["mrr"]["n"] == 1 and "zero_shot_mean_mrr" in summary
    # kmas-eval loads the checkpoint as it is
    from kmas_ultra.cli import eval_main

    capsys.readouterr()
    assert eval_main(["--checkpoint", str(tmp_path / "tiny_strict_seed0.pth"), "--transductive", str(root / "unseen"),
                      "--limit", "2", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["num_queries"] == 2
    # a relaunch trains nothing: every run is finished
    monkeypatch.setattr(pretrain, "run_one", lambda *a, **k: pytest.fail("a finished run was trained again"))
    assert main(argv) == 0
    # the same run name with another budget is refused
    with pytest.raises(ValueError, match="another configuration"):
        main([a if a != "4" else "5" for a in argv])


def test_test_reuses_baseline_runs_from_another_name_and_pairs_by_seed(root, tmp_path, capsys):
    common = ["--data-root", str(root), "--study", str(root / "study.json"), "--steps", "3", "--batch", "4",
              "--negatives", "6", "--dim", "8", "--layers", "2", "--valid-every", "0", "--save-every", "0",
              "--seeds", "0", "1", "--out", str(tmp_path), "--no-progress"]
    assert main(["run", *common, "--configs", "strict", "--name", "earlier"]) == 0
    assert main(["run", *common, "--configs", "kmas:loss=share", "--name", "later"]) == 0
    capsys.readouterr()
    assert main(["test", *common, "--configs", "kmas:loss=share", "--name", "later", "--baseline", "earlier:strict"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "later_test.json").read_text())
    assert {r["run"] for r in result["runs"]} == {"strict_seed0", "strict_seed1", "kmas_lossshare_seed0", "kmas_lossshare_seed1"}
    per_run = result["zero_shot"]["per_run"]
    paired = result["paired_to_baseline"]["kmas_lossshare"]
    assert paired["baseline"] == "strict" and paired["seeds"] == [0, 1] and paired["num_graphs"] == 2
    for graph in ("unseen", "g1_again"):
        diffs = [per_run[f"kmas_lossshare_seed{s}"][graph]["mrr"] - per_run[f"strict_seed{s}"][graph]["mrr"] for s in (0, 1)]
        assert paired["mrr_per_graph"][graph]["mean"] == pytest.approx(sum(diffs) / 2)
    assert paired["graphs_above"] + paired["graphs_below"] <= 2 and "kmas_lossshare - strict" in printed
    # a baseline trained with another budget is refused, naming the digest
    with pytest.raises(SystemExit, match="another configuration"):
        main(["test", *[a if a != "3" else "4" for a in common], "--configs", "strict", "--name", "earlier",
              "--baseline", "earlier:strict"])


def test_installed_console_script_finds_the_study_in_the_package(root, tmp_path):
    """`kmas-pretrain run` as installed (the console script, in a subprocess whose working folder
    is a temporary one, so the source tree cannot shadow the installed package) finds the study
    design inside the installed kmas_bench (no --study), runs, and writes its results JSON.

    Under CI's non-editable `pip install .` this proves the package data is in the install; under
    an editable install (or PYTHONPATH on the source tree) the package *is* the source tree: the
    test then says so (a warning) and still proves the lookup through importlib.resources."""
    import os
    import shutil
    import subprocess
    import sys
    import sysconfig
    import warnings
    from pathlib import Path

    script = shutil.which("kmas-pretrain", path=os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")]))
    if script is None:
        pytest.skip("the kmas-pretrain console script is not installed (pip install .)")
    work = tmp_path / "cwd"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("KMAS_SHARED", "KMAS_SHARED_DATA")}
    where = subprocess.run(
        [sys.executable, "-c", "import json, kmas_bench, importlib.metadata as m\n"
         "d = m.distribution('kmas_kernels')\n"
         "url = json.loads(d.read_text('direct_url.json') or '{}')\n"
         "print(json.dumps({'package': kmas_bench.__file__, 'editable': url.get('dir_info', {}).get('editable', False)}))"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert where.returncode == 0, where.stderr[-2000:]
    installed = json.loads(where.stdout.strip().splitlines()[-1])
    package = Path(installed["package"]).resolve().parent
    repo = Path(__file__).resolve().parents[1]
    # a source checkout (this one or another: python/kmas_bench beside pyproject.toml), not site-packages
    # (CI's venv, .ci-venv/, lies inside the repository, so "under the repository" would not tell)
    from_source_tree = package.parent.name == "python" and (package.parents[1] / "pyproject.toml").is_file()
    argv = [script, "run", "--data-root", str(root), "--graphs", "g1", "g2", "--configs", "strict", "--steps", "2",
            "--batch", "4", "--negatives", "6", "--dim", "8", "--layers", "2", "--valid-queries", "4", "--valid-every", "0",
            "--save-every", "0", "--out", str(tmp_path / "out"), "--name", "installed", "--no-progress", "--threads", "1"]
    result = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.returncode, result.stderr[-3000:])
    written = json.loads((tmp_path / "out" / "installed.json").read_text())
    assert written["study"] == "pretrain_study.json"
    assert Path(written["study_file"]) == package / "study" / "pretrain_study.json"  # the imported package's own copy
    assert [r["run"] for r in written["runs"]] == ["strict_seed0"] and sum(written["runs"][0]["graph_steps"]) == 2
    if from_source_tree or installed["editable"]:
        warnings.warn(f"kmas_bench is imported from a source tree ({package}; the installed kmas_kernels distribution "
                      f"is {'editable' if installed['editable'] else 'not editable'}): this run proves the lookup "
                      "through importlib.resources, not that a non-editable install ships the study file", UserWarning)
    else:  # the installed copy (site-packages), not the repository's file
        assert Path(written["study_file"]) != repo / "python" / "kmas_bench" / "study" / "pretrain_study.json"
