"""Atomic writes (temp file in the same folder, flush + fsync, os.replace): a reader never sees half a file.

kmas_kernels.core.files (the checkpoint issue) will hold the package-wide version; the study's
runner uses this one until it lands.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def write_bytes_atomic(path: str | Path, write) -> Path:
    """Call ``write(file)`` on a temp file beside ``path``, fsync it, then rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the result is an ordinary file
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json_atomic(path: str | Path, obj) -> Path:
    data = (json.dumps(obj, indent=2) + "\n").encode()
    return write_bytes_atomic(path, lambda f: f.write(data))


def save_torch_atomic(path: str | Path, obj) -> Path:
    import torch

    return write_bytes_atomic(path, lambda f: torch.save(obj, f))
