"""Command-line value checks shared by kmas-train, kmas-eval, kmas-bench and kmas-pretrain.

Each function is an argparse ``type=``: it returns the converted value or raises
``argparse.ArgumentTypeError`` saying the accepted range, so a bad value ends the command at
parse time with exit status 2 and one line naming the flag (:class:`OneLineParser`). A new
flag is validated in one line: ``parser.add_argument("--x", type=positive_float)``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (no usage block), exit status 2."""

    def error(self, message: str):  # noqa: D401  (argparse's hook)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(kind, value: str):
    try:
        number = kind(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {value!r}") from None
    if kind is float and number != number:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}")
    return number


def bounded(kind, low=None, high=None, *, low_open: bool = False, high_open: bool = False, what: str | None = None):
    """An argparse type: ``kind`` (int or float) in [low, high] (open ends with ``*_open``)."""
    left = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
    right = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
    name = what or ("an integer" if kind is int else "a number")
    accepted = f"{name} {left}{' and ' if left and right else ''}{right}".strip()

    def convert(value: str):
        number = _number(kind, value)
        too_low = low is not None and (number <= low if low_open else number < low)
        too_high = high is not None and (number >= high if high_open else number > high)
        if too_low or too_high or (kind is float and number in (float("inf"), float("-inf"))):
            raise argparse.ArgumentTypeError(f"expected {accepted}, got {value!r}")
        return number

    convert.__name__ = accepted  # argparse names the type in its own messages
    return convert


positive_int = bounded(int, 1)
non_negative_int = bounded(int, 0)
positive_float = bounded(float, 0, low_open=True)
non_negative_float = bounded(float, 0)
unit_interval = bounded(float, 0, 1)  # a share / ratio in [0, 1]
fraction = bounded(float, 0, 1, high_open=True)  # a fraction of a run's steps, in [0, 1)
seed_int = bounded(int, 0, 2**63 - 1)


def device(value: str) -> str:
    """cpu, cuda or cuda:N; a CUDA device must exist here."""
    import torch

    kind, _, number = value.partition(":")
    if kind not in ("cpu", "cuda") or (number and not number.isdigit()) or (kind == "cpu" and number):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {value!r}")
    if kind == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
            raise argparse.ArgumentTypeError(f"{value!r} requested but torch sees no CUDA device (torch "
                                             f"{torch.__version__}, {build}); use --device cpu")
        if number and int(number) >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{value!r}: torch sees {torch.cuda.device_count()} CUDA device(s), "
                                             f"numbered 0..{torch.cuda.device_count() - 1}")
    return value


def existing_dir(value: str) -> str:
    """A folder that exists."""
    path = Path(value)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value!r} is not a folder" if path.exists() else f"{value!r}: no such folder")
    return value


def existing_file(value: str) -> str:
    """A file that exists."""
    path = Path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{value!r} is a folder, not a file" if path.exists() else f"{value!r}: no such file")
    return value


def output_dir(value: str) -> str:
    """A folder to write into: absent (created later) or a folder, never a file or under one."""
    path = Path(value).absolute()
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                raise argparse.ArgumentTypeError(f"{value!r}: {part} is a file, not a folder")
            break
    return value


def file_stem(value: str) -> str:
    """A file-name stem: not empty, no path separator, not '.' or '..'."""
    if not value or "/" in value or "\\" in value or value in (".", "..") or value != value.strip():
        raise argparse.ArgumentTypeError(f"expected a file-name stem (no '/', not empty), got {value!r}")
    return value


def user_error(program: str, message: str) -> None:
    """End the command with exit status 2 and one line (a user error found after parsing)."""
    sys.stderr.write(f"{program}: error: {message}\n")
    sys.exit(2)
