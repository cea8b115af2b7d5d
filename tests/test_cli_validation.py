"""Bad command-line values end each command with exit status 2 and one line naming the flag (issue 24's table)."""

import subprocess
import sys

import pytest

COMMANDS = [
    ("kmas-train", ["--num-negative", "0"], "--num-negative"),
    ("kmas-train", ["--threads", "0"], "--threads"),
    ("kmas-train", ["--batch-size", "0"], "--batch-size"),
    ("kmas-train", ["--lr", "-1"], "--lr"),
    ("kmas-train", ["--out-dir", "{file}"], "--out-dir"),
    ("kmas-train", ["--kmas-max-ratio", "2"], "--kmas-max-ratio"),
    ("kmas-train", ["--kmas-temperature", "0"], "--kmas-temperature"),
    ("kmas-train", ["--kmas-loss", "focal"], "--kmas-loss"),
    ("kmas-train", ["--kmas-fallback", "none"], "--kmas-fallback"),
    ("kmas-train", ["--kmas-directions", "both"], "--kmas-directions"),
    ("kmas-train", ["--num-negative", "100000"], "--num-negative"),  # 60 entities: checked once the graph is loaded
    ("kmas-eval", ["--limit", "-5"], "--limit"),
    ("kmas-eval", ["--limit", "0"], "--limit"),
    ("kmas-eval", ["--transductive", "{empty}"], "--transductive"),
    ("kmas-bench", ["--negatives", "0"], "--negatives"),
    ("kmas-pretrain", ["run", "--steps", "0"], "--steps"),
]
# python -m kmas_bench.screen (the study's fine-tuning screen): every option, on top of a valid command line
SCREEN_BASE = ["--configs", "strict", "--train-dir", "{graph}", "--test-dir", "{graph}", "--checkpoint", "{file}", "--out", "{out}"]
SCREEN = [
    (["--configs", "hard"], "--configs"),
    (["--configs", "kmas:temp=0.1"], "--configs"),
    (["--configs", "strict:T=0.1"], "--configs"),
    (["--configs", "kmas:T=0"], "--configs"),
    (["--configs", "kmas:top=0"], "--configs"),
    (["--configs", "kmas:max=1.5"], "--configs"),
    (["--configs", "kmas:warm=0.5,peak=0.2"], "--configs"),
    (["--configs", "kmas:loss=focal"], "--configs"),
    (["--seeds", "-1"], "--seeds"),
    (["--steps", "0"], "--steps"),
    (["--batch", "0"], "--batch"),
    (["--negatives", "0"], "--negatives"),
    (["--negatives", "100"], "--negatives"),  # 4 entities: checked once the graph is loaded
    (["--lr", "0"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--train-dir", "{missing}"], "--train-dir"),
    (["--test-dir", "{file}"], "--test-dir"),
    (["--checkpoint", "{missing}"], "--checkpoint"),
    (["--valid-queries", "-1"], "--valid-queries"),
    (["--test-queries", "0"], "--test-queries"),
    (["--threads", "0"], "--threads"),
    (["--out", "{file}"], "--out"),
    (["--name", "a/b"], "--name"),
    (["--name", ""], "--name"),
]
MODULES = {"kmas-train": "from kmas_ultra.cli import train_main as main", "kmas-eval": "from kmas_ultra.cli import eval_main as main",
           "kmas-bench": "from kmas_bench.cli import main", "kmas-pretrain": "from kmas_bench.pretrain_cli import main"}


@pytest.mark.parametrize("program,argv,flag", COMMANDS, ids=[f"{p} {' '.join(a)}" for p, a, _ in COMMANDS])
def test_bad_value_exits_2_with_one_line(tmp_path, program, argv, flag):
    (tmp_path / "a_file").write_text("x")
    empty = tmp_path / "empty"
    empty.mkdir()
    for part in ("train", "valid", "test"):
        (empty / f"{part}.txt").write_text("" if part == "train" else "a\tr\tb\n")
    argv = [a.format(file=tmp_path / "a_file", empty=empty) for a in argv]
    code = f"import sys; {MODULES[program]}; sys.exit(main({argv!r}))"
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and flag in errors[0] and "Traceback" not in result.stderr, result.stderr[-2000:]


@pytest.mark.parametrize("argv,flag", SCREEN, ids=[" ".join(a) for a, _ in SCREEN])
def test_screen_bad_value_exits_2_with_one_line(tmp_path, capsys, argv, flag):
    """The same contract for python -m kmas_bench.screen, in-process (a subprocess per case costs
    a torch import each; the exit status and stderr are what the command gives)."""
    from kmas_bench.screen import main

    (tmp_path / "a_file").write_text("x")
    graph = tmp_path / "graph"  # 4 entities, 2 relations
    graph.mkdir()
    for part in ("train", "valid", "test"):
        (graph / f"{part}.txt").write_text("a\tr\tb\nb\ts\tc\nc\tr\td\n")
    values = dict(file=tmp_path / "a_file", graph=graph, missing=tmp_path / "missing", out=tmp_path / "out")
    with pytest.raises(SystemExit) as exit_info:
        main([a.format(**values) for a in SCREEN_BASE + argv])
    stderr = capsys.readouterr().err
    assert exit_info.value.code == 2, (exit_info.value.code, stderr[-2000:])
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and flag in errors[0] and errors[0].startswith("python -m kmas_bench.screen: error:"), stderr
    assert not (tmp_path / "out").exists()  # nothing written before the check


def test_cuda_without_cuda_says_so():
    import argparse

    import torch

    from kmas_ultra.arguments import device

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(argparse.ArgumentTypeError, match="no CUDA device"):
        device("cuda")
    assert device("cpu") == "cpu"


def test_study_design_ships_with_the_package():
    """kmas-pretrain finds its design file through package resources, not a repository path."""
    import json
    from importlib.resources import files

    from kmas_bench.pretrain_cli import study_file

    resource = files("kmas_bench.study") / "pretrain_study.json"
    assert resource.is_file()
    assert study_file().is_file() and "train_graphs" in json.loads(study_file().read_text())


def test_shadowed_source_tree_warns_once(monkeypatch):
    import warnings

    from kmas_kernels import installation
    from kmas_kernels.backends import registry

    monkeypatch.setattr(registry, "cpu_available", lambda: "the _native_cpu extension is not next to the kmas_kernels "
                                                         "imported from the source tree /x/kmas_kernels")
    monkeypatch.setattr(installation, "_WARNED", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert installation.warn_if_shadowed("kmas-demo") and not installation.warn_if_shadowed("kmas-demo")
    assert len(caught) == 1 and "source tree" in str(caught[0].message) and caught[0].category is RuntimeWarning
    monkeypatch.setattr(registry, "cpu_available", lambda: None)
    monkeypatch.setattr(installation, "_WARNED", False)
    assert installation.shadowed_reason() is None and not installation.warn_if_shadowed("kmas-demo")
