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
    ("kmas-train", ["--num-negative", "100000"], "--num-negative"),  # 60 entities: checked once the graph is loaded
    ("kmas-eval", ["--limit", "-5"], "--limit"),
    ("kmas-eval", ["--limit", "0"], "--limit"),
    ("kmas-eval", ["--transductive", "{empty}"], "--transductive"),
    ("kmas-bench", ["--negatives", "0"], "--negatives"),
    ("kmas-pretrain", ["run", "--steps", "0"], "--steps"),
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
    from kmas_kernels.backends import native

    monkeypatch.setattr(native, "cpu_available", lambda: "the _native_cpu extension is not next to the kmas_kernels "
                                                         "imported from the source tree /x/kmas_kernels")
    monkeypatch.setattr(installation, "_WARNED", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert installation.warn_if_shadowed("kmas-demo") and not installation.warn_if_shadowed("kmas-demo")
    assert len(caught) == 1 and "source tree" in str(caught[0].message) and caught[0].category is RuntimeWarning
    monkeypatch.setattr(native, "cpu_available", lambda: None)
    monkeypatch.setattr(installation, "_WARNED", False)
    assert installation.shadowed_reason() is None and not installation.warn_if_shadowed("kmas-demo")
