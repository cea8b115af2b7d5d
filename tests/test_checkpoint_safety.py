"""Checkpoints cannot run code, and bad ones give clear errors (README "Checkpoints and resuming").

A crafted .pth whose unpickling would run a shell command (creating a marker file) is refused by
every loading entry point: load_checkpoint, load_training_state / load_torch_file, kmas-eval
--checkpoint, kmas-train --checkpoint and kmas-train --resume; the marker never appears. A control
shows that the payload is live: plain pickle does run it.
"""

from __future__ import annotations

import os
import pickle
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

try:
    import kmas_ultra  # noqa: F401
except ImportError:  # a checkout without `pip install .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from kmas_kernels.core.files import (CheckpointError, atomic_save, atomic_write_json, atomic_write_text, load_torch_file,
                                     temp_name_prefix)
from kmas_ultra import Ultra, load_checkpoint
from kmas_ultra.model import architecture_of
from kmas_ultra.train import load_training_state


class ShellPayload:
    """Unpickling this runs ``touch <marker>`` through the shell."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def _cli(name: str) -> list[str]:
    exe = Path(sys.executable).parent / name
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "kmas_ultra.cli", name.split("-")[1]]


@pytest.fixture
def crafted(tmp_path):
    """(zip .pth as torch.save writes, legacy pickle .pth, the marker its payload would create)."""
    marker = tmp_path / "payload_ran"
    tiny = Ultra(dim=4, num_layers=1).state_dict()
    modern = tmp_path / "crafted.pth"
    torch.save({"model": tiny, "format": "kmas_ultra.train/1", "extra": ShellPayload(marker)}, modern)
    legacy = tmp_path / "crafted_legacy.pth"
    with open(legacy, "wb") as f:
        pickle.dump({"model": {}, "extra": ShellPayload(marker)}, f, protocol=2)
    return modern, legacy, marker


def test_the_payload_is_live(crafted, tmp_path):
    """Control: a plain unpickler does run the command (so the refusals below mean something)."""
    modern, _, marker = crafted
    control = tmp_path / "control_ran"
    pickle.loads(pickle.dumps(ShellPayload(control), protocol=2))  # noqa: S301  (the point of the control)
    assert control.exists()
    with zipfile.ZipFile(modern) as archive:  # the torch.save'd file carries the same call
        inner = next(name for name in archive.namelist() if name.endswith("data.pkl"))
        assert b"system" in archive.read(inner)
    assert not marker.exists()


def test_library_entry_points_refuse_it(crafted):
    modern, legacy, marker = crafted
    for path in (modern, legacy):
        for load in (load_checkpoint, load_torch_file, load_training_state):
            with pytest.raises(CheckpointError, match="refused.*beyond tensors and plain containers") as error:
                load(path)
            assert str(path) in str(error.value)
    assert not marker.exists()


def test_command_line_entry_points_refuse_it(crafted, tmp_path):
    modern, legacy, marker = crafted
    resume_dir = tmp_path / "run"
    resume_dir.mkdir()
    (resume_dir / "last.pth").write_bytes(modern.read_bytes())
    base = ["--threads", "1", "--no-progress"]
    commands = [
        _cli("kmas-eval") + ["--checkpoint", str(modern), "--limit", "1"] + base,
        _cli("kmas-eval") + ["--checkpoint", str(legacy), "--limit", "1"] + base,
        _cli("kmas-train") + ["--checkpoint", str(modern), "--steps", "1"] + base,
        _cli("kmas-train") + ["--resume", str(resume_dir)] + base,
    ]
    for command in commands:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=180)
        assert proc.returncode == 2, (command, proc.stderr[-2000:])
        assert "refused" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert not marker.exists(), f"{command} ran the payload"


# ----------------------------------------------------------------------------- bad checkpoints

def test_bad_checkpoints_name_the_file_and_the_problem(tmp_path):
    good = tmp_path / "good.pth"
    model = Ultra(dim=4, num_layers=2)
    atomic_save({"model": model.state_dict(), "architecture": architecture_of(model)}, good)
    data = good.read_bytes()
    cases = {
        "missing.pth": (None, "no such file"),
        "folder.pth": ("dir", "is a directory"),
        "empty.pth": (b"", "empty"),
        "truncated.pth": (data[: len(data) // 2], "truncated or corrupt"),
        "junk.pth": (b"not a checkpoint at all", "truncated or corrupt"),
    }
    for name, (content, problem) in cases.items():
        path = tmp_path / name
        if content == "dir":
            path.mkdir()
        elif content is not None:
            path.write_bytes(content)
        with pytest.raises(CheckpointError, match=problem) as error:
            load_checkpoint(path)
        assert str(path) in str(error.value)

    def saved(name, obj):
        atomic_save(obj, tmp_path / name)
        return tmp_path / name

    other = Ultra(dim=8, num_layers=2)
    resnet_like = {"conv1.weight": torch.ones(2, 3), "fc.bias": torch.zeros(2)}
    missing = {k: v for k, v in model.state_dict().items() if "mlp" not in k}
    with pytest.raises(CheckpointError, match="does not fit.*missing"):
        load_checkpoint(saved("other_arch.pth", {"model": resnet_like}))
    with pytest.raises(CheckpointError, match="does not fit.*4 missing"):
        load_checkpoint(saved("missing_keys.pth", {"model": missing, "architecture": architecture_of(model)}))
    with pytest.raises(CheckpointError, match="another shape"):  # 8-d weights into a 4-d model
        load_checkpoint(saved("shapes.pth", {"model": other.state_dict()}), model=Ultra(dim=4, num_layers=2))
    with pytest.raises(CheckpointError, match="architecture .* differs"):
        load_checkpoint(saved("arch.pth", {"model": other.state_dict(), "architecture": architecture_of(other)}),
                        model=Ultra(dim=4, num_layers=2))
    with pytest.raises(CheckpointError, match="not a dict"):
        load_checkpoint(saved("list.pth", [1, 2, 3]))
    with pytest.raises(CheckpointError, match="non-empty state dict"):
        load_checkpoint(saved("no_model.pth", {"model": []}))
    with pytest.raises(CheckpointError, match="'architecture' must be a dict"):
        load_checkpoint(saved("bad_arch.pth", {"model": model.state_dict(), "architecture": {"depth": 3}}))
    with pytest.raises(CheckpointError, match="not a kmas-train training state"):
        load_training_state(good)  # a model checkpoint given where a training state is needed
    with pytest.raises(CheckpointError, match="no such file, so nothing to resume"):
        load_training_state(tmp_path)


def test_checkpoints_round_trip_and_infer_the_architecture(tmp_path):
    torch.manual_seed(0)
    model = Ultra(dim=4, num_layers=3)
    atomic_save({"model": model.state_dict(), "architecture": architecture_of(model)}, tmp_path / "with.pth")
    atomic_save({"model": model.state_dict()}, tmp_path / "without.pth")  # ULTRA's files store no architecture
    atomic_save(model.state_dict(), tmp_path / "bare.pth")
    for name in ("with.pth", "without.pth", "bare.pth"):
        loaded = load_checkpoint(tmp_path / name)
        assert architecture_of(loaded) == architecture_of(model)
        for key, tensor in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], tensor)


# ----------------------------------------------------------------------------- atomic writes

def test_atomic_writes_replace_whole_files(tmp_path):
    target = tmp_path / "result.json"
    atomic_write_json({"a": 1}, target)
    atomic_write_json({"a": 2, "b": [1.5]}, target)
    assert target.read_text() == '{\n  "a": 2,\n  "b": [\n    1.5\n  ]\n}\n'
    atomic_write_text("x", tmp_path / "note.txt")
    assert (tmp_path / "note.txt").read_text() == "x"

    class Boom(Exception):
        pass

    class Unsaveable:
        def __reduce__(self):
            raise Boom

    atomic_save({"w": torch.arange(3)}, tmp_path / "w.pth")
    with pytest.raises(Boom):  # a writer failing half-way leaves the old file and no temporary
        atomic_save({"w": torch.zeros(3), "bad": Unsaveable()}, tmp_path / "w.pth")
    assert torch.equal(load_torch_file(tmp_path / "w.pth")["w"], torch.arange(3))
    assert not list(tmp_path.glob(".*"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic_write_json({}, tmp_path / "no" / "such" / "folder.json")


def test_a_write_killed_half_way_leaves_the_old_file(tmp_path):
    """The test hook dies after writing half the temporary file, before the rename."""
    target = tmp_path / "state.pth"
    atomic_save({"version": 1}, target)
    code = ("import sys, torch; from kmas_kernels.core.files import atomic_save; "
            "atomic_save({'version': 2, 'w': torch.ones(1000)}, sys.argv[1])")
    env = {**os.environ, "KMAS_TEST_ONLY_DIE_DURING_WRITE": "state.pth:1"}
    proc = subprocess.run([sys.executable, "-c", code, str(target)], env=env, capture_output=True, timeout=120)
    from kmas_kernels.core.files import TEST_DIE_EXIT_CODE

    assert proc.returncode == TEST_DIE_EXIT_CODE, proc.stderr[-2000:]
    assert load_torch_file(target) == {"version": 1}
    (temp,) = tmp_path.glob(temp_name_prefix(target) + "*")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_torch_file(temp)


def test_no_unsafe_loading_anywhere_in_the_project():
    root = Path(__file__).resolve().parents[1]
    needle = "weights_only=" + "False"
    offenders = [str(path.relative_to(root)) for folder in ("kmas_kernels", "python", "benchmarks", "tests", "docs")
                 for path in (root / folder).rglob("*") if path.suffix in (".py", ".md") and needle in path.read_text()]
    offenders += [name for name in ("README.md",) if needle in (root / name).read_text()]
    assert not offenders


@pytest.mark.parametrize("name", ["ultra_3g", "ultra_4g", "ultra_50g"])
def test_public_ultra_checkpoints_load_safely(name):
    """ULTRA's published files hold tensors and plain containers only: they load with weights_only=True."""
    from conftest import shared_dir

    path = shared_dir() / "checkpoints" / f"{name}.pth"
    if not path.exists():
        pytest.skip(f"{path} not found (set KMAS_SHARED to the shared folder with checkpoints/)")
    model = load_checkpoint(path)
    assert architecture_of(model) == {"dim": 64, "num_layers": 6, "flow": "rspmm"}
    assert sum(p.numel() for p in model.parameters()) == 168_705
