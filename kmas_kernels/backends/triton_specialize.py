"""Which compiled variant a Triton launch would use, computed offline (no GPU, no launch).

Triton keys its kernel cache on the launch's *specialisation*: per argument, its type and, unless
the argument is ``do_not_specialize``, attributes of its value (an int equal to 1 becomes a
constant, one divisible by 16 or a 16-byte-aligned pointer gets a divisibility hint, an int that
fits int32 is typed i32). A new key means a new compile (1-4 s for the top-k kernel). This module
binds real launch arguments with Triton's own binder (``create_function_from_signature``, the code
``JITFunction.run`` executes) for a target that need not be present, so a CI test can count the
distinct keys a training run would produce, and ``benchmarks/triton_offline.py`` can compile
exactly those variants.

Works with the binder layout of Triton 3.6 .. 3.9 (same functions, same key); raises
:class:`SpecializationUnsupported` where the installed Triton lacks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class SpecializationUnsupported(RuntimeError):
    """The installed Triton has no binder this module knows how to drive."""


@dataclass(frozen=True)
class BoundLaunch:
    """One launch's specialisation. ``key``: the string Triton's cache would use (without the
    options Triton adds itself at run time); ``signature``/``constexprs``/``attrs``/``options``:
    what ``triton.compile`` needs to build that very variant."""

    key: str
    signature: dict
    constexprs: dict
    attrs: dict
    options: Any


def _triton():
    try:
        import triton
        from triton.backends.compiler import GPUTarget
        from triton.compiler import make_backend
        from triton.runtime.jit import JITFunction, create_function_from_signature
    except Exception as exc:  # ImportError, or a layout this module does not know
        raise SpecializationUnsupported(f"Triton's specialisation API is not importable: {type(exc).__name__}: {exc}") from exc
    return triton, GPUTarget, make_backend, JITFunction, create_function_from_signature


def jit_function(kernel):
    """The ``JITFunction`` behind ``kernel``; under ``TRITON_INTERPRET=1`` ``@triton.jit`` returns
    an interpreter object instead, rebuilt here from the same function and the same
    ``do_not_specialize`` lists (the only jit options that change the specialisation)."""
    _, _, _, JITFunction, _ = _triton()
    if isinstance(kernel, JITFunction):
        return kernel
    fn, kwargs = getattr(kernel, "fn", None), getattr(kernel, "kwargs", None)
    if fn is None or kwargs is None:
        raise SpecializationUnsupported(f"cannot find the Python function behind {kernel!r}")
    keep = {name: kwargs[name] for name in ("do_not_specialize", "do_not_specialize_on_alignment") if kwargs.get(name)}
    return JITFunction(fn, **keep)


def cuda_target(arch: int = 90):
    """``GPUTarget("cuda", arch, 32)``: the target to bind and compile for (sm_90: H100/H200)."""
    _, GPUTarget, _, _, _ = _triton()
    return GPUTarget("cuda", arch, 32)


def bind(kernel, args: tuple, meta: dict, target=None) -> BoundLaunch:
    """Bind ``kernel[grid](*args, **meta)`` as ``JITFunction.run`` would on ``target`` (default
    sm_90) and return its specialisation. Tensors may live on any device: only their dtype and
    address alignment are read."""
    _, _, make_backend, _, create_function_from_signature = _triton()
    fn = jit_function(kernel)
    backend = make_backend(target if target is not None else cuda_target())
    try:
        binder = create_function_from_signature(fn.signature, fn.params, backend)
        bound_args, specialization, options = binder(*args, **meta)
        options, signature, constexprs, attrs = fn._pack_args(backend, dict(options), bound_args, specialization, options)
    except (AttributeError, TypeError) as exc:
        raise SpecializationUnsupported(f"Triton {_triton()[0].__version__}: unexpected binder layout ({exc})") from exc
    key = repr(specialization) + repr(sorted(meta.items()))
    return BoundLaunch(key=key, signature=signature, constexprs=constexprs, attrs=attrs, options=options)


def compile_bound(kernel, bound: BoundLaunch, target=None):
    """``triton.compile`` of exactly the variant ``bound`` describes, for ``target`` (default
    sm_90); returns Triton's compiled kernel (``.asm["ptx"]`` etc.). Needs no GPU."""
    triton, _, _, _, _ = _triton()
    from triton.compiler import ASTSource

    fn = jit_function(kernel)
    source = ASTSource(fn, bound.signature, bound.constexprs, bound.attrs)
    return triton.compile(source, target=target if target is not None else cuda_target(), options=bound.options.__dict__)
