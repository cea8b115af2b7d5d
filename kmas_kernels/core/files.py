"""Files written atomically, and torch files read without running their code.

Atomic: every write goes to a temporary file in the destination's folder, is flushed and fsynced,
then renamed over the destination (``os.replace``, atomic on POSIX and Windows), and the folder is
fsynced so the rename itself survives a power cut. At any instant the destination is either the
complete old file or the complete new one; a kill leaves at most a stray temporary file, named
``.<name>.tmp-<pid>-<random>`` (never ``*.pth`` / ``*.json``), that no loader reads.

Safe loading: :func:`load_torch_file` always calls ``torch.load(..., weights_only=True)``, whose
unpickler accepts tensors and plain containers only and refuses any other global before creating
it, so a crafted file cannot run code. Every failure is a :class:`CheckpointError` naming the file
and what is wrong with it.

Test hook (tests only): with ``KMAS_TEST_ONLY_DIE_DURING_WRITE=<file name>:<n>`` in the
environment, the n-th atomic write (1-based, counted per process) to a file with that name
truncates its temporary file to half and ends the process with ``os._exit(TEST_DIE_EXIT_CODE)``
before the rename: a kill in the middle of writing, reproducible. Unset, it costs one dict lookup.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import secrets
from pathlib import Path
from typing import Any, Iterator

import torch

TEST_DIE_ENV = "KMAS_TEST_ONLY_DIE_DURING_WRITE"
TEST_DIE_EXIT_CODE = 86
_writes_by_name: dict[str, int] = {}


class CheckpointError(ValueError):
    """A file that is not a loadable checkpoint; the message names the file and the problem."""


def temp_name_prefix(path: str | os.PathLike) -> str:
    """The prefix of the temporary files that writes to ``path`` create (for cleaning up after a kill)."""
    return f".{Path(path).name}.tmp-"


def _fsync_dir(folder: Path) -> None:
    if os.name == "nt":  # folders cannot be opened for fsync on Windows; NTFS journals the rename
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _maybe_die_during_write(path: Path, temp: Path) -> None:
    """The test hook described in the module docstring."""
    spec = os.environ.get(TEST_DIE_ENV)
    if not spec:
        return
    name, _, nth = spec.rpartition(":")
    if name != path.name:
        return
    _writes_by_name[name] = _writes_by_name.get(name, 0) + 1
    if _writes_by_name[name] == int(nth):
        size = temp.stat().st_size
        with open(temp, "r+b") as f:
            f.truncate(size // 2)
            f.flush()
            os.fsync(f.fileno())
        os._exit(TEST_DIE_EXIT_CODE)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; on a clean exit it is fsynced and renamed over ``path``.

    For writers that want a file name (``fig.savefig(tmp)``). On an exception the temporary file
    is removed and ``path`` is untouched.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {folder} does not exist")
    temp = folder / f"{temp_name_prefix(path)}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        yield temp
        with open(temp, "rb+") as f:
            os.fsync(f.fileno())
        _maybe_die_during_write(path, temp)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    _fsync_dir(folder)


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_output(path) as temp:
        with open(temp, "wb") as f:
            f.write(data)
            f.flush()


def atomic_write_text(text: str, path: str | os.PathLike, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically."""
    atomic_write_bytes(text.encode(encoding), path)


def atomic_write_json(obj: Any, path: str | os.PathLike, *, indent: int | None = 2, **dumps_options: Any) -> None:
    """``json.dumps(obj)`` plus a newline, written to ``path`` atomically."""
    atomic_write_text(json.dumps(obj, indent=indent, **dumps_options) + "\n", path)


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)``, atomically.

    Save tensors and plain containers only (dict, list, tuple, str, int, float, bool, None), so
    that :func:`load_torch_file` can read the file back.
    """
    with atomic_output(path) as temp:
        with open(temp, "wb") as f:
            torch.save(obj, f)
            f.flush()


def load_torch_file(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with errors that name the file and the problem.

    Raises :class:`CheckpointError` for a missing file, a folder, a truncated or corrupt file, and
    a file whose unpickling needs anything beyond tensors and plain containers (nothing in such a
    file is run: the restricted unpickler stops at the first foreign global).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path}: is a directory, not a checkpoint file")
    try:
        with open(path, "rb") as f:
            empty = not f.read(1)
    except OSError as error:
        raise CheckpointError(f"checkpoint {path}: cannot be read ({error.strerror or error})") from None
    if empty:
        raise CheckpointError(f"checkpoint {path}: the file is empty (a write that never finished?)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:  # torch's restricted unpickler refused something
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        detail = next((line for line in lines if "GLOBAL" in line or "Unsupported" in line), lines[-1] if lines else "")
        if "GLOBAL" in detail:  # the file asks for a Python class or function: the road to running code
            raise CheckpointError(
                f"checkpoint {path}: refused, it holds Python objects beyond tensors and plain containers, "
                f"and loading those could run code ({detail}). Only files loadable with "
                f"torch.load(weights_only=True) are accepted; re-save the state dicts alone if you trust the file."
            ) from None
        raise CheckpointError(f"checkpoint {path}: truncated or corrupt, or a pickle torch.load(weights_only=True) "
                              f"cannot read ({detail})") from None
    except Exception as error:  # noqa: BLE001  (torch raises RuntimeError, OSError, EOFError, KeyError ... on damaged files)
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(
            f"checkpoint {path}: truncated or corrupt, not a file torch.save wrote ({type(error).__name__}: {message})"
        ) from None
