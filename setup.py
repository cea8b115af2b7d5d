"""Build script: the pure-Python package plus, where a compiler exists, native extensions.

Everything declarative lives in pyproject.toml. This file only decides which extensions to build:
``native_extensions()`` collects them from csrc/ (C++ CPU backend wherever a C++ compiler
exists; CUDA wherever nvcc exists), and each can be forced with an environment variable
(KMAS_BUILD_CPU / KMAS_BUILD_CUDA = 0 or 1). With nothing to build, the package installs as
pure Python and the reference backend serves every call.
"""

from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent


def native_extensions() -> list:
    """Extension modules to build; empty until csrc/ exists."""
    if not (ROOT / "csrc").is_dir():
        return []
    raise RuntimeError("csrc/ exists but setup.py does not know how to build it yet")


setup(ext_modules=native_extensions())
