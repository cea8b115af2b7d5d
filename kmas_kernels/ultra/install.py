"""``install``: patch a KGFM's ``tasks.negative_sampling`` with the drop-in (and undo it)."""

from __future__ import annotations

from typing import Any, Iterable

import torch

from .dropin import KMASNegativeSampling


def install(
    tasks_module: Any,
    model: torch.nn.Module | None = None,
    train_data: Any = None,
    total_steps: int | None = None,
    *,
    namespaces: Iterable[Any] = (),
    attribute: str = "negative_sampling",
    **options: Any,
) -> KMASNegativeSampling:
    """Replace ``tasks_module.negative_sampling`` (e.g. ``ultra.tasks``, ``trix.tasks``,
    ``motif.tasks``) by a KMASNegativeSampling, so an unmodified training script that calls
    ``tasks.negative_sampling(...)`` uses KMAS. ``namespaces`` (modules or dicts such as a
    script's ``globals()``) are patched too where they hold the original function (a script that
    did ``from ultra.tasks import negative_sampling``). ``close()`` on the result undoes it all.
    Other arguments as in KMASNegativeSampling.
    """
    original = getattr(tasks_module, attribute, None)
    if not callable(original):
        raise ValueError(f"{getattr(tasks_module, '__name__', tasks_module)!r} has no callable `{attribute}` to replace")
    if isinstance(original, KMASNegativeSampling):
        raise ValueError(f"{attribute} of {getattr(tasks_module, '__name__', tasks_module)!r} is already a KMASNegativeSampling")
    sampler = KMASNegativeSampling(model, train_data, total_steps, **options)
    for namespace in (tasks_module, *namespaces):
        current = namespace.get(attribute) if isinstance(namespace, dict) else getattr(namespace, attribute, None)
        if current is not original:
            continue
        sampler._patches.append((namespace, attribute, original))
        if isinstance(namespace, dict):
            namespace[attribute] = sampler
        else:
            setattr(namespace, attribute, sampler)
    return sampler
