"""Running from a checkout whose kmas_kernels has no compiled extension says so (README, "Development")."""

import shutil
import subprocess
import sys
from pathlib import Path

import kmas_kernels

# The probe drops editable-install finders: with `pip install -e .` (a developer's venv) they would
# resolve the missing extension to the developer's own build; a plain `pip install .` (CI, users)
# has none, which is the case this test stands for.
PROBE = """
import sys
sys.meta_path = [f for f in sys.meta_path if "Editable" not in getattr(f, "__name__", type(f).__name__)]
import warnings, torch, kmas_kernels
from kmas_kernels import hard_negatives, KGIndex
print("CPU:", kmas_kernels.available_backends()["cpu"])
index = KGIndex.from_triples([[0, 0, 1], [1, 0, 2], [2, 0, 3]])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    hard_negatives(index, torch.tensor([0]), torch.tensor([0]), num_negatives=1, seed=0)
print("WARN:", " | ".join(str(w.message) for w in caught))
"""


def test_source_tree_without_extension_is_named(tmp_path):
    checkout = tmp_path / "checkout"
    shutil.copytree(
        Path(kmas_kernels.__file__).parent, checkout / "kmas_kernels",
        ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"),
    )
    (checkout / "setup.py").write_text("# a checkout\n")
    (checkout / "csrc").mkdir()
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=checkout, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    cpu = next(line for line in result.stdout.splitlines() if line.startswith("CPU:"))
    assert "source tree" in cpu and "pip install -e ." in cpu and str(checkout) in cpu, cpu
    warning = next(line for line in result.stdout.splitlines() if line.startswith("WARN:"))
    assert "reference backend" in warning and "source tree" in warning, warning
