"""Which kmas_kernels is running: say once when a source tree shadows the installed build.

Python puts the current directory first on ``sys.path``, so ``python -m kmas_kernels`` (or any
entry point started from the repository root) imports the checkout, which holds no compiled
extension unless it was installed in place (``pip install -e .``). Everything then runs on the
B x N reference backend; :func:`warn_if_shadowed` says so once, before any work starts, so a slow
run is not a silent one (README, "Development").
"""

from __future__ import annotations

import warnings

_WARNED = False


def shadowed_reason() -> str | None:
    """Why the imported kmas_kernels lacks its CPU extension because it is a source tree, else None."""
    from .backends.registry import cpu_available

    reason = cpu_available()
    return reason if reason is not None and "source tree" in reason else None


def warn_if_shadowed(program: str) -> bool:
    """Warn (RuntimeWarning, once per process) when ``program`` runs on a source tree without the
    compiled extension; returns whether it warned."""
    global _WARNED
    reason = shadowed_reason()
    if reason is None or _WARNED:
        return False
    _WARNED = True
    warnings.warn(f"{program}: {reason}; the fused CPU backend is missing, so mining runs on the slow B x N "
                  "reference backend", RuntimeWarning, stacklevel=2)
    return True
