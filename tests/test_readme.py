"""README.md runs as written: its Python snippets and its `kmas-train` command, read from the README.

The snippets are taken from the README at test time, so the test follows every edit. The ULTRA
drop-in snippet is a fragment of ULTRA's own loop; it runs with that loop's names bound to
kmas_ultra's stand-ins (model, training graph, a batch of triples, cfg).
"""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

# ULTRA's loop names used by the drop-in snippet, bound to kmas_ultra's stand-ins
ULTRA_CONTEXT = """
import types
from kmas_ultra import Ultra, synthetic_split, triples_of
split = synthetic_split(num_entities=60, num_relations=4, num_edges=300, seed=0)
model, train_data, num_steps = Ultra(), split.train, 10
batch = triples_of(split.train)[:8]  # (B, 3) [h, t, r], ULTRA's layout
cfg = types.SimpleNamespace(task=types.SimpleNamespace(num_negative=16, strict_negative=True, adversarial_temperature=1))
"""
ULTRA_CHECK = """
assert batch.shape == (8, 17, 3), batch.shape
"""


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=900)


def test_python_snippets_run_as_written(tmp_path):
    python = _blocks("python")
    assert len(python) >= 3, "the README's quick start, schedule and ULTRA snippets"
    quick_start, schedule, *rest = python
    result = _run(quick_start + schedule + "\nassert negatives.shape == (64, 512)\nprint('ok')", tmp_path)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
    helper = next(block for block in rest if "relation_embeddings(model" in block)
    result = _run(helper + "\nassert negatives.shape == (8, 16) and z.shape == (8, 8, 64)\nprint('ok')", tmp_path)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
    drop_in = next(block for block in rest if "KMASNegativeSampling" in block)
    result = _run(ULTRA_CONTEXT + drop_in + ULTRA_CHECK + "print('ok')", tmp_path)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
    # the loss line that replaces ULTRA's inline loss, after a drawn batch, as install() leaves it
    loss_line = next(block for block in rest if "link_prediction_loss" in block)
    loss_context = ("import kmas_kernels.loss\ntasks = types.SimpleNamespace(negative_sampling=negative_sampling)\n"
                    "pred = model(train_data, batch)\n")
    loss_check = ("import torch\nassert loss.ndim == 0 and torch.isfinite(loss) and loss.requires_grad\n"
                  "assert tasks.negative_sampling.hard_counts.shape == (8,)\n")
    result = _run(ULTRA_CONTEXT + drop_in + loss_context + loss_line + loss_check + "print('ok')", tmp_path)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def _readme_command(program: str) -> list[str]:
    for block in _blocks("bash"):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith(program + " "):
                return shlex.split(line)
    raise AssertionError(f"README.md has no `{program}` command")


def test_kmas_train_command_runs_to_the_end(tmp_path):
    """`kmas-train --negatives kmas` on the default synthetic graph (fewer steps; the schedule
    scales, so the hard share still outgrows what the 60-entity graph's rows can give)."""
    command = _readme_command("kmas-train")
    assert command[:3] == ["kmas-train", "--negatives", "kmas"], command
    script = Path(sys.executable).parent / "kmas-train"
    if not script.exists():
        pytest.skip(f"kmas-train is not installed next to {sys.executable} (pip install .)")
    result = subprocess.run(
        [str(script), *command[1:], "--steps", "40", "--no-progress"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert '"steps": 40' in result.stdout and '"negatives": "kmas"' in result.stdout, result.stdout[-2000:]
