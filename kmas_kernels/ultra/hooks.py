"""The drop-in's encoder capture: forward hooks on the relation encoder that fill each graph's
similarity cache (kmas_kernels.ultra, module doc)."""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Any

import torch


def default_query(args: tuple, kwargs: dict) -> torch.Tensor | None:
    """The (B,) query relations of a relation-encoder call, or None when its inputs carry none.

    ULTRA and MOTIF pass ``query=`` (B,); TRIX passes the (B, 1 + k, 3) batch, whose column
    [:, 0, 2] is the query relation. Float tensors (e.g. the inputs of SEMMA's fusion) are skipped.
    """
    candidates = [kwargs.get("query"), *args[1:], kwargs.get("batch")]
    for value in candidates:
        if isinstance(value, torch.Tensor) and not value.is_floating_point() and value.dim() in (1, 3):
            return value[:, 0, 2] if value.dim() == 3 else value
    return None


def default_output(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    raise TypeError(f"the relation encoder returned {type(output).__name__}, not a tensor: pass output_transform=")


@dataclass
class _HookCounters:
    captured: int = 0
    eval_mode: int = 0  # outputs of forwards in eval mode: not cached
    unattributed: int = 0  # before any drop-in call, on a graph not given to it: not cached
    rejected: int = 0
    last_rejection: str | None = None


class EncoderHooks:
    """Mixin of :class:`~kmas_kernels.ultra.KMASNegativeSampling`: hooks its relation encoder.

    Reads ``self._paused``, ``self._by_object``, ``self._pending``, ``self._pending_relations``,
    ``self.step``, ``self.output_transform``, ``self.query_from_inputs``; counts in ``self._hooks``.
    """

    def _register_hooks(self, model: torch.nn.Module | None, relation_module: Any) -> list:
        classes = relation_module if isinstance(relation_module, tuple) else (relation_module,)
        if all(isinstance(c, type) for c in classes):
            if not all(issubclass(c, torch.nn.Module) for c in classes):
                raise TypeError(f"relation_module classes must be torch.nn.Module subclasses, got {relation_module!r}")
            self._target = "/".join(c.__name__ for c in classes)
            if model is None:  # hook every module of these classes, process-wide
                def capture_if_instance(module, args, kwargs, output):
                    if isinstance(module, classes):
                        self._capture(module, args, kwargs, output)

                hook = torch.nn.modules.module.register_module_forward_hook
                return [hook(capture_if_instance, with_kwargs=True)]
            modules = [m for m in model.modules() if isinstance(m, classes)]
            if not modules:
                raise ValueError(f"relation_module={self._target}: {type(model).__name__} has no such submodule")
        else:
            if model is None and not isinstance(relation_module, torch.nn.Module):
                raise ValueError("model=None needs relation_module to be a module or a class, not an attribute path")
            modules = [self._resolve_module(model, relation_module)]
            self._target = relation_module if isinstance(relation_module, str) else type(relation_module).__name__
        return [m.register_forward_hook(self._capture, with_kwargs=True) for m in modules]

    @staticmethod
    def _resolve_module(model: torch.nn.Module, relation_module: str | torch.nn.Module) -> torch.nn.Module:
        if isinstance(relation_module, torch.nn.Module):
            return relation_module
        if not isinstance(relation_module, str):
            raise TypeError(f"relation_module must be an attribute path, a module or a class, got {type(relation_module).__name__}")
        module = model
        for name in relation_module.split("."):
            if not hasattr(module, name):
                raise ValueError(f"relation_module={relation_module!r}: {type(module).__name__} has no attribute {name!r}")
            module = getattr(module, name)
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"relation_module={relation_module!r} is a {type(module).__name__}, not a torch.nn.Module")
        return module

    def _capture(self, module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        """Forward hook: cache the encoder's output for its graph. Never raises (a drop-in must not
        fail where the original would not): a rejected output is counted and warned about once."""
        if self._paused:
            return
        if not module.training:
            self._hooks.eval_mode += 1
            return
        try:
            first = args[0] if args else next(iter(kwargs.values()), None)
            state = self._by_object.get(id(first))
            if state is None:
                state = self._pending
            if state is None:  # before any drop-in call, on a graph not given to it: not ours to cache
                self._hooks.unattributed += 1
                return
            embeddings = self.output_transform(output)
            query = self.query_from_inputs(args, kwargs)
            if query is None:
                if state is not self._pending or embeddings.shape[0] != self._pending_relations.numel():
                    raise ValueError(
                        "the encoder's inputs carry no query relations and its output "
                        f"{tuple(embeddings.shape)} does not match the latest drop-in batch: pass query_from_inputs="
                    )
                query = self._pending_relations
            state.cache.update(embeddings, query, step=max(self.step - 1, 0))
        except Exception as error:  # noqa: BLE001 - reported, never raised into the user's forward
            self._reject(module, error)
            return
        state.captures += 1
        self._hooks.captured += 1

    def _reject(self, module: torch.nn.Module, error: Exception) -> None:
        self._hooks.rejected += 1
        self._hooks.last_rejection = f"{type(error).__name__}: {error}"
        if not self._warned_rejection:
            self._warned_rejection = True
            warnings.warn(
                f"KMASNegativeSampling: an output of {type(module).__name__} (relation_module={self._target}) was not "
                f"cached ({self._hooks.last_rejection}); hard negatives of relations without a cached row come from "
                "the one-hot fallback. stats() counts these.",
                RuntimeWarning,
                stacklevel=2,
            )

    @contextlib.contextmanager
    def paused(self):
        """Forwards inside this block leave the cache alone (e.g. measuring it)."""
        previous, self._paused = self._paused, True
        try:
            yield self
        finally:
            self._paused = previous

    temperature = property(lambda self: self.options.temperature)
    top_relations = property(lambda self: self.options.top_relations)

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
