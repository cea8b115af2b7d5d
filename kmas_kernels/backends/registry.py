"""The one backend registry, shared by every op (top-k mining, relational message passing).

A backend here is a name, the device types it runs on and an availability probe: whether the
C++/CUDA extension imports (and sees a device), whether Triton can run on tensors of a device.
The ops (``kmas_kernels.hard_negatives``, ``kmas_kernels.graph_ops.relational_spmm``) keep their
own table of launchers per backend name and their own "auto" order; they ask this registry only
what is usable, and load the native extensions through :func:`load_extension`. Nothing here
knows about any op's public function.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

import torch

try:  # triton is optional: its backend reports itself unavailable without it
    import triton  # noqa: F401

    _TRITON_IMPORT_ERROR: str | None = None
except Exception as exc:  # pragma: no cover - depends on the environment
    _TRITON_IMPORT_ERROR = f"triton is not importable ({type(exc).__name__}: {exc})"

_MODULES: dict[str, ModuleType | str] = {}


def load_extension(name: str) -> ModuleType | str:
    """The extension module, or why it cannot be imported."""
    if name not in _MODULES:
        try:
            _MODULES[name] = importlib.import_module(f"kmas_kernels.{name}")
        except ImportError as err:
            _MODULES[name] = _why_missing(name, err)
    return _MODULES[name]


def _why_missing(name: str, err: ImportError) -> str:
    """Why the extension ``name`` cannot be imported, and what to do about it."""
    package = Path(__file__).resolve().parents[1]  # the kmas_kernels folder actually imported
    checkout = package.parent
    if (checkout / "setup.py").is_file() and (checkout / "csrc").is_dir():
        # Python imported the source tree (the current directory or PYTHONPATH comes first), which
        # holds no compiled extension unless it was installed in place
        installed = _installed_extension_dir(name, package)
        also = f"; an installed copy with the extension is at {installed}, shadowed by the source tree" if installed else ""
        return (
            f"the {name} extension is not next to the kmas_kernels imported from the source tree {package}"
            f"{also}: develop with `pip install -e .` in {checkout} (builds it in place), or run from outside the repository"
        )
    return f"the {name} extension is not built ({err}); reinstall with a C++ compiler" + (" and nvcc" if name == "_native_cuda" else "")


def _installed_extension_dir(name: str, imported: Path) -> Path | None:
    """The folder of an installed kmas_kernels that has the extension, other than ``imported``."""
    try:
        files = importlib.metadata.distribution("kmas_kernels").files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name.startswith(name + ".") and file.name.endswith((".so", ".pyd")):
            path = Path(file.locate()).resolve()
            if path.is_file() and path.parent != imported:
                return path.parent
    return None


def cpu_available() -> str | None:
    """None when the C++ CPU backend can run here, else the reason it cannot."""
    module = load_extension("_native_cpu")
    return module if isinstance(module, str) else None


def cuda_available() -> str | None:
    """None when the CUDA backend can run here, else the reason it cannot."""
    module = load_extension("_native_cuda")
    if isinstance(module, str):
        return module
    if not torch.cuda.is_available():
        return "no CUDA device visible to torch"
    if module.device_count() == 0:
        return "no CUDA device visible to the extension's CUDA runtime (driver too old?)"
    return None


def interpreting() -> bool:
    """True under ``TRITON_INTERPRET=1`` (Triton's interpreter runs kernels on CPU tensors)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_available(device: torch.device | str | None = None) -> str | None:
    """None when Triton kernels can run here, else the reason they cannot.

    Usable when triton imports and either CUDA is available (GPU tensors) or
    ``TRITON_INTERPRET=1`` is set (CPU tensors, through Triton's interpreter). With ``device``,
    answer for tensors on that device only.
    """
    if _TRITON_IMPORT_ERROR is not None:
        return _TRITON_IMPORT_ERROR
    if device is not None:
        device = torch.device(device)
        if device.type == "cuda":
            return None if torch.cuda.is_available() and not interpreting() else "CUDA tensors need a GPU and TRITON_INTERPRET unset"
        if device.type == "cpu":
            return None if interpreting() else "CPU tensors need TRITON_INTERPRET=1 (Triton's interpreter)"
        return f"Triton does not run on {device.type} tensors"
    if interpreting() or torch.cuda.is_available():
        return None
    return "no CUDA GPU, and TRITON_INTERPRET=1 is not set for CPU tensors"


@dataclass(frozen=True)
class Backend:
    name: str
    devices: tuple[str, ...]  # device types it runs on
    probe: Callable[[torch.device | None], str | None]  # None when usable (on that device), else why not

    def unusable(self, device: torch.device) -> str | None:
        """None when usable on tensors on ``device``, else why not."""
        if device.type not in self.devices:
            return f"it does not run on {device.type} tensors"
        return self.probe(device)


BACKENDS: dict[str, Backend] = {
    "reference": Backend("reference", ("cpu", "cuda"), lambda device=None: None),
    "cpu": Backend("cpu", ("cpu",), lambda device=None: cpu_available()),
    "cuda": Backend("cuda", ("cuda",), lambda device=None: cuda_available()),
    # CPU tensors only under TRITON_INTERPRET=1 (tests); "auto" never picks it for CPU tensors
    "triton": Backend("triton", ("cuda", "cpu"), triton_available),
}


def available_backends() -> dict[str, str | None]:
    """Every backend name -> None if usable on this machine, else the reason it is not."""
    return {name: backend.probe(None) for name, backend in BACKENDS.items()}
