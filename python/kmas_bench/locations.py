"""Where the pre-training study finds its data and its design file (kmas-pretrain's defaults).

Imported by both ``pretrain`` (the runner) and ``pretrain_cli`` (the command line), so that
neither imports the other for them.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_root() -> Path | None:
    """The shared data folder: $KMAS_SHARED/data (KMAS_SHARED: the one variable for the shared
    folder), else ../shared/data. $KMAS_SHARED_DATA, the former name, still works, with a warning."""
    import warnings

    from .cli import shared_dir

    env = os.environ.get("KMAS_SHARED_DATA")
    if env and not os.environ.get("KMAS_SHARED"):
        warnings.warn("KMAS_SHARED_DATA is deprecated: set KMAS_SHARED to the folder that holds data/", DeprecationWarning,
                      stacklevel=2)
        return Path(env)
    shared = shared_dir()
    return shared / "data" if shared and (shared / "data").is_dir() else None


def study_file() -> Path:
    """The study's design file, shipped inside the package (found after a plain ``pip install .``)."""
    from importlib.resources import files

    return Path(str(files("kmas_bench.study") / "pretrain_study.json"))
