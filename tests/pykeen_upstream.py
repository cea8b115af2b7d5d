"""PyKEEN's own test cases, fetched from its source distribution at the installed version.

``upstream_cases("test_sampling")`` downloads ``pykeen==<installed>``'s sdist once
(``pip download --no-deps --no-binary :all:``) into a cache folder (``$KMAS_PYKEEN_SDIST`` or
``~/.cache/kmas_kernels/pykeen-sdist``), and imports ``tests/<package>/cases.py`` from it by file
location (PyKEEN's ``tests`` package name would clash with ours). Nothing of PyKEEN's is kept in
this repository. Skips the calling module, with the reason, when PyKEEN, unittest-templates or the
download is not available.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest


def _sdist_tests(version: str) -> Path:
    cache = Path(os.environ.get("KMAS_PYKEEN_SDIST", Path.home() / ".cache" / "kmas_kernels" / "pykeen-sdist")) / version
    tests = cache / f"pykeen-{version}" / "tests"
    if tests.is_dir():
        return tests
    cache.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", f"pykeen=={version}", "-d", str(cache)]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as error:
        pytest.skip(f"cannot download PyKEEN {version}'s sdist: {error}", allow_module_level=True)
    archives = sorted(cache.glob(f"pykeen-{version}.tar.gz"))
    if out.returncode != 0 or not archives:
        pytest.skip(f"cannot download PyKEEN {version}'s sdist: {out.stderr.strip()[-400:]}", allow_module_level=True)
    with tarfile.open(archives[0]) as archive:
        members = [m for m in archive.getmembers() if m.name.startswith(f"pykeen-{version}/tests/") and (m.isfile() or m.isdir())]
        archive.extractall(cache, members=members, filter="data")
    return tests


def upstream_cases(package: str):
    """PyKEEN's ``tests/<package>/cases.py`` as a module (skips the caller's module when impossible)."""
    pytest.importorskip("pykeen", reason="PyKEEN is not installed (pip install '.[pykeen]')")
    pytest.importorskip("unittest_templates", reason="unittest-templates is not installed (pip install '.[test]')")
    version = importlib.metadata.version("pykeen")
    path = _sdist_tests(version) / package / "cases.py"
    if not path.is_file():
        pytest.skip(f"PyKEEN {version}'s sdist has no tests/{package}/cases.py", allow_module_level=True)
    name = f"pykeen_upstream_{package}_cases"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
