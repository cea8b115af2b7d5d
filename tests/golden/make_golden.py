"""Record tests/golden/draws.json: sha256 of every golden case's int64 draw plus its first rows.

    TRITON_INTERPRET=1 python tests/golden/make_golden.py

Runs each case (tests/golden_cases.py) on every backend available on CPU and refuses to write if
two backends disagree. Re-record only when a change of the draws is intended, and say so.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: conftest, golden_cases

import golden_cases  # noqa: E402

from kmas_kernels.core.files import atomic_write_text  # noqa: E402


def record() -> dict:
    try:
        import kmas_kernels.pykeen  # noqa: F401

        with_pykeen = True
    except ImportError:
        with_pykeen = False
    backends = golden_cases.cpu_backends()
    entries = {}
    for name, run in golden_cases.all_cases(with_pykeen).items():
        draws = {backend: run(backend) for backend in backends}
        digests = {backend: golden_cases.digest(draw) for backend, draw in draws.items()}
        if len(set(digests.values())) != 1:
            raise SystemExit(f"{name}: backends disagree: {digests}")
        first = next(iter(draws.values()))
        entries[name] = {"sha256": next(iter(digests.values())), "shape": list(first.shape),
                         "head": first.reshape(-1)[:24].tolist()}
    return {"backends": backends, "cases": entries}


if __name__ == "__main__":
    golden = record()
    path = HERE / "draws.json"
    atomic_write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n", path)
    print(f"{len(golden['cases'])} cases on {golden['backends']} -> {path}")
