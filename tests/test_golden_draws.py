"""Golden draws: the same seeds and options give integer-identical negatives, before and after a refactor.

tests/golden/draws.json holds sha256 digests (and the first values) of every case of
tests/golden_cases.py, recorded by tests/golden/make_golden.py on every CPU backend. Every case
runs here on the reference and the C++ backend; Triton (TRITON_INTERPRET=1, slow) runs a subset.
"""

import json
from pathlib import Path

import pytest

import golden_cases

GOLDEN = json.loads((Path(__file__).parent / "golden" / "draws.json").read_text())
try:
    import kmas_kernels.pykeen  # noqa: F401

    HAVE_PYKEEN = True
except ImportError:
    HAVE_PYKEEN = False
CASES = golden_cases.all_cases(with_pykeen=True)
# the interpreter takes ~1.5 s a call: a subset that still covers strict/non-strict, shared/per-row, top
TRITON_CASES = [name for name in CASES if name.startswith("hard_negatives/") and name.endswith("/seed=0")
                and "strict=True" in name] + ["KMASSampler/sparse/strict=True/shared/top=None/seed=0"]


def test_the_grid_is_recorded():
    assert sorted(GOLDEN["cases"]) == sorted(CASES)
    assert {"reference", "cpu"} <= set(GOLDEN["backends"])


@pytest.mark.parametrize("backend", ["reference", "cpu", "triton"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_draw(name, backend):
    if name.startswith("pykeen/") and not HAVE_PYKEEN:
        pytest.skip("PyKEEN is not installed")
    if backend not in golden_cases.cpu_backends():
        pytest.skip(f"backend {backend} is not available on CPU here")
    if backend == "triton" and name not in TRITON_CASES:
        pytest.skip("Triton interpreter: only the subset TRITON_CASES")
    draw = CASES[name](backend)
    expected = GOLDEN["cases"][name]
    assert list(draw.shape) == expected["shape"]
    assert draw.reshape(-1)[:24].tolist() == expected["head"]
    assert golden_cases.digest(draw) == expected["sha256"]
