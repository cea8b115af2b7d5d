"""PyKEEN integration: ``KMASNegativeSampler``, hard negatives for any PyKEEN model.

KMAS needs only relation representations and the graph, so it serves every PyKEEN model that has
relation representations (DistMult, ComplEx, RotatE, TransE, ...). The sampler reads the model's
current ``relation_representations[0](indices=None)`` (detached, every ``refresh_every`` batches;
no forward of the entity side), mixes hard negatives from the tail (or head) sets of relations
similar to the query relation with uniform ones by a :class:`~kmas_kernels.HardRatioSchedule`
(the hybrid :class:`~kmas_kernels.KMASSampler`), and excludes every known training answer exactly
(strict, O(B·k), no Bloom filter), so PyKEEN's filtering is not needed.

Three ways to use it (PyKEEN 1.11):

    from kmas_kernels.pykeen import KMASNegativeSampler    # also registers the name "kmas"

    # 1. the training loop takes an instance as it is
    sampler = KMASNegativeSampler(mapped_triples=tf.mapped_triples, model=model, total_steps=steps)
    SLCWATrainingLoop(model=model, triples_factory=tf, optimizer=opt, negative_sampler=sampler)

    # 2. pipeline() with a model instance: by name and kwargs
    pipeline(dataset=ds, model=model, negative_sampler="kmas",
             negative_sampler_kwargs=dict(model=model, total_steps=steps))

    # 3. pipeline() with an instance and a model name: pipeline() turns an instance into its class
    #    and builds a new one, so the instance's callback puts it back and binds the model
    sampler = KMASNegativeSampler(mapped_triples=ds.training.mapped_triples, total_steps=steps)
    pipeline(dataset=ds, model="DistMult", negative_sampler=sampler,
             training_kwargs=dict(callbacks=sampler.callback(), ...))

Corruption follows PyKEEN's ``BasicNegativeSampler``: the (B·k) negatives are laid out positive by
positive, k each, and the flat sequence is split into equal consecutive parts, one per corrupted
side (heads first). Heads are corrupted through the inverse relation r + R0 of our index, whose
relation representation is that of r; similarities never mix directions (docs/semantics.md,
"PyKEEN sampler").
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Collection

import torch

try:
    from pykeen.sampling import NegativeSampler, negative_sampler_resolver
    from pykeen.training.callbacks import TrainingCallback, callback_resolver
except ImportError as error:  # pragma: no cover - exercised only without PyKEEN
    raise ImportError(
        "kmas_kernels.pykeen needs PyKEEN, which is not installed: "
        "pip install 'kmas_kernels[pykeen]' (or pip install pykeen)"
    ) from error

from .core.files import atomic_save, load_torch_file
from .core.index import KGIndex
from .core.philox import draw_seed, mix_seed
from .core.relation_weights import relation_weights_from_embeddings
from .core.uniform import uniform_negatives
from .core.validation import check_count, check_seed
from .core.options import SamplerOptions
from .sampler import KMASSampler
from .schedule import HardRatioSchedule, as_schedule, hard_count, ratio_at

__all__ = ["KMASNegativeSampler", "KMASTrainingCallback", "relation_matrix"]

# salt of the per-step seed that rounds the hard share (kept apart from the sampler's own seeds)
_ROUNDING_SALT = 0x4B4D4153  # "KMAS"
_SHORT_ROW_SALT = 0x53484F52  # seeds of the uniform negatives of rows too short for the hard share
_SIDES = {"h": 0, "head": 0, "t": 2, "tail": 2}


def relation_matrix(model: torch.nn.Module) -> torch.Tensor:
    """The model's current relation representations as a detached real (R, D) float32 matrix.

    ``model.relation_representations[0](indices=None)`` has shape (R, *shape), real or complex;
    complex entries become (real, imaginary) pairs, and every row is flattened, so that cosines
    between rows are defined for any PyKEEN model.
    """
    representations = getattr(model, "relation_representations", None)
    if representations is None or len(representations) == 0:
        raise TypeError(f"model must be a PyKEEN model with relation representations, got {type(model).__name__}")
    # in training mode read with autograd on: a module that caches its output (CompGCN's enriched
    # representations) then keeps a result the next training forward can backpropagate through;
    # a no_grad read there would leave a graph-less cache behind (docs/semantics.md, "PyKEEN sampler")
    with torch.set_grad_enabled(bool(getattr(model, "training", False))):
        z = representations[0](indices=None)
    z = z.detach()
    if z.is_complex():
        z = torch.view_as_real(z)
    if not z.is_floating_point():
        raise TypeError(f"the model's relation representations must be real or complex, got dtype {z.dtype}")
    return z.reshape(z.shape[0], -1).to(torch.float32)


class KMASNegativeSampler(NegativeSampler):
    """Hybrid hard + uniform negatives from a PyKEEN model's relation representations.

    ``corrupt_batch`` maps (*batch, 3) [h, r, t] to (*batch, num_negs_per_pos, 3) like PyKEEN's
    basic sampler; each call is one step of the schedule. Within a row the hard negatives come
    first. The hard share of a step is ``schedule(step) * k`` rounded stochastically (up with
    probability equal to its fractional part, from the seed and step), so that its expectation is
    the schedule's ratio even for PyKEEN's usual small k.

    Args:
        mapped_triples: (E, 3) the training triples, as PyKEEN passes them.
        num_entities, num_relations: as in PyKEEN (default: 1 + the largest id).
        num_negs_per_pos: k (default 1, PyKEEN's).
        model: the PyKEEN model whose relation representations define hardness; may be bound
            later (:meth:`bind_model` or the :meth:`callback`).
        total_steps: number of training batches, for the default ``HardRatioSchedule(total_steps)``.
        schedule: a HardRatioSchedule, a callable step -> ratio, or a constant ratio (overrides
            ``total_steps``).
        refresh_every: read the relation representations every this many steps (1: every batch).
        corruption_scheme: the sides to corrupt, in order: a subset of PyKEEN's ("head", "tail")
            ("h", "t" also work; default both). Relation corruption is not supported: KMAS mines
            entities.
        strict: exclude every known training answer (default); False excludes only the positive.
        temperature, top_relations: as in ``hard_negatives``, with the training defaults of
            ``KMASSampler`` (0.3 over the 10 most similar relations; ``top_relations=None``: all).
        temperature_gumbel, seed, backend: as in ``hard_negatives``.
        filtered, filterer, filterer_kwargs: PyKEEN's filtering, applied after us (redundant
            with ``strict``, which is exact).
        step: the first step (when resuming).
    """

    def __init__(
        self,
        *,
        mapped_triples: torch.Tensor,
        num_entities: int | None = None,
        num_relations: int | None = None,
        num_negs_per_pos: int | None = None,
        model: torch.nn.Module | None = None,
        total_steps: int | None = None,
        schedule: HardRatioSchedule | Callable[[int], float] | float | None = None,
        refresh_every: int = 1,
        corruption_scheme: Collection[str] | None = None,
        strict: bool = True,
        temperature: float = SamplerOptions.temperature,
        top_relations: int | None = SamplerOptions.top_relations,
        temperature_gumbel: float = SamplerOptions.temperature_gumbel,
        seed: int | None = None,
        backend: str = SamplerOptions.backend,
        step: int = 0,
        filtered: bool = False,
        filterer: Any = None,
        filterer_kwargs: Any = None,
    ) -> None:
        if not isinstance(mapped_triples, torch.Tensor) or mapped_triples.dim() != 2 or mapped_triples.shape[1] != 3:
            raise ValueError(f"mapped_triples must be an (E, 3) tensor of [h, r, t], got {getattr(mapped_triples, 'shape', type(mapped_triples))}")
        if num_negs_per_pos is not None:
            check_count(num_negs_per_pos, "num_negs_per_pos")
        super().__init__(
            mapped_triples=mapped_triples,
            num_entities=num_entities,
            num_relations=num_relations,
            num_negs_per_pos=num_negs_per_pos,
            filtered=filtered,
            filterer=filterer,
            filterer_kwargs=filterer_kwargs,
        )
        if schedule is None:
            if total_steps is None:
                raise ValueError(
                    "KMASNegativeSampler needs total_steps (number of training batches) or schedule; "
                    "note that pykeen.pipeline() rebuilds a sampler instance from its class with "
                    "negative_sampler_kwargs only: pass the instance's callback() in training_kwargs"
                )
            schedule = HardRatioSchedule(check_count(total_steps, "total_steps"))
        self.schedule = as_schedule(schedule)
        self.refresh_every = check_count(refresh_every, "refresh_every")
        options = SamplerOptions(strict=strict, temperature=temperature, top_relations=top_relations,
                                 temperature_gumbel=temperature_gumbel, backend=backend)
        scheme = ("head", "tail") if corruption_scheme is None else tuple(corruption_scheme)
        if not scheme or any(side not in _SIDES for side in scheme) or len({_SIDES[s] for s in scheme}) != len(scheme):
            raise ValueError(f"corruption_scheme must be a non-empty subset of ('head', 'tail') without repeats, got {corruption_scheme!r}")
        self.corruption_scheme = scheme
        # our index adds the inverse relations r + R0 (PyKEEN's triples have none, or carry their
        # own as ordinary relations): heads of (?, r, t) are the answers of (t, r + R0)
        self._triples = mapped_triples.detach().to("cpu", torch.int64)
        self._num_relations_given = num_relations
        self._inverse_added = False  # True once PyKEEN's inverse triples were added (bind_model)
        self.index = KGIndex.from_triples(self._triples, self.num_entities, self.num_relations, add_inverse=True)
        seed = check_seed(seed)
        self._kmas = KMASSampler.from_options(
            self.index, self.num_negs_per_pos, self._rounded_ratio, options,
            seed=draw_seed() if seed is None else seed, step=check_count(step, "step", allow_zero=True),
        )  # fmt: skip
        self._relations: torch.Tensor | None = None  # (R0, D) cached relation representations
        self._relations_step = -1
        # rows too short for the hard share (their hard negatives became uniform ones), and rows
        # with no strict negative at all (masked); see stats()
        self._counts = {"rows": 0, "short_rows": 0, "hard_replaced": 0, "empty_rows": 0}
        self._warned_short = False
        object.__setattr__(self, "_model", None)  # not a submodule: the sampler holds no parameters
        if model is not None:
            self.bind_model(model)

    # ------------------------------------------------------------------ model and schedule
    @property
    def model(self) -> torch.nn.Module | None:
        return self._model

    def bind_model(self, model: torch.nn.Module) -> "KMASNegativeSampler":
        """Use ``model``'s relation representations from the next batch on."""
        rows = relation_matrix(model).shape[0]
        self._match_relation_ids(model, rows)
        count = len(model.relation_representations)
        if count > 1:  # SE, PairRE, KG2E, SimplE, TransR, ...: documented choice, said once
            warnings.warn(
                f"{type(model).__name__} has {count} relation representations; KMASNegativeSampler reads "
                "relation_representations[0] only (docs/semantics.md, 'PyKEEN sampler')",
                UserWarning,
                stacklevel=2,
            )
        object.__setattr__(self, "_model", model)
        self._relations, self._relations_step = None, -1
        return self

    def _match_relation_ids(self, model: torch.nn.Module, rows: int) -> None:
        """Make the index's relation ids the model's; ValueError where strict exclusion would be wrong.

        A model trained with ``create_inverse_triples=True`` has 2·R relation ids (PyKEEN's relation
        inverter: r -> 2r, its inverse 2r + 1) and is fed triples in that space. Triples in the
        factory's ids (max id < R, as ``tf.mapped_triples``) get PyKEEN's mapping and inverse
        triples here; triples already in the model's space must hold every inverse triple.
        """
        triples, given = self._triples, self._num_relations_given
        max_id = int(triples[:, 1].max()) if triples.numel() else -1
        mismatch = ValueError(
            f"model has {rows} relation representations but the sampler's triples have "
            f"num_relations={self.num_relations} (largest relation id {max_id}): build both from the same triples factory"
        )
        inverter = getattr(model, "relation_inverter", None)
        if bool(getattr(model, "use_inverse_triples", False)) and inverter is not None and not self._inverse_added:
            if rows % 2 == 0 and max_id < rows // 2 and given in (None, rows // 2, rows):
                if self.filterer is not None:
                    raise ValueError("a filterer built from triples without PyKEEN's inverse triples cannot serve a model with create_inverse_triples=True: pass the triples with inverses")
                self._rebuild(torch.cat([inverter.map(batch=triples), inverter.map(batch=triples, invert=True).flip(1)]), rows)
                self._inverse_added = True
                return
            if rows != self.num_relations:
                raise mismatch
            inverse = inverter.is_inverse(triples[:, 1])
            forward = triples[~inverse]
            expected = torch.stack([forward[:, 2], inverter.get_inverse_id(forward[:, 1]), forward[:, 0]], 1)
            if not torch.equal(torch.unique(triples[inverse], dim=0), torch.unique(expected, dim=0)):
                raise ValueError(
                    f"model uses inverse triples ({rows} relation ids) but the sampler's triples neither use "
                    f"the factory's ids (all < {rows // 2}) nor hold every inverse triple: strict exclusion would be wrong"
                )
            return
        if rows == self.num_relations:
            return
        if given is None and max_id < rows and not self._inverse_added:
            self._rebuild(triples, rows)  # relations absent from the triples: the model's count
            return
        raise mismatch

    def _rebuild(self, triples: torch.Tensor, num_relations: int) -> None:
        self._triples, self.num_relations = triples, num_relations
        self.index = KGIndex.from_triples(triples, self.num_entities, num_relations, add_inverse=True)
        self._kmas.index = self.index

    def callback(self) -> "KMASTrainingCallback":
        """A PyKEEN training callback that installs this instance and binds the loop's model."""
        return KMASTrainingCallback(self)

    @property
    def step(self) -> int:
        """The next step (number of batches corrupted so far, plus the first step)."""
        return self._kmas.step

    @step.setter
    def step(self, value: int) -> None:
        self._kmas.step = check_count(value, "step", allow_zero=True)

    @property
    def seed(self) -> int:
        return self._kmas.seed

    def stats(self) -> dict[str, int]:
        """Counts since step 0: rows sampled, rows too short for the hard share (``short_rows``;
        ``hard_replaced`` hard negatives became uniform ones there), rows without any strict
        negative (``empty_rows``, masked)."""
        return dict(self._counts)

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """Everything a resumed run needs to draw what this sampler would draw next.

        seed, step, the cached relation representations (R0, D) with the step they were read at
        (None before the first read), and the counts of :meth:`stats`. Options are construction
        arguments, not state. Tensors and plain values only (safe to load with weights_only=True).
        """
        return {
            "kmas": self._kmas.state_dict(),
            "relations": None if self._relations is None else self._relations.detach().cpu(),
            "relations_step": self._relations_step,
            "counts": dict(self._counts),
        }

    def load_state_dict(self, state: dict[str, Any], strict: bool = True, assign: bool = False) -> None:  # type: ignore[override]
        """Restore :meth:`state_dict`'s output (ValueError naming the bad entry)."""
        if not isinstance(state, dict) or set(state) != {"kmas", "relations", "relations_step", "counts"}:
            raise ValueError(f"state must be KMASNegativeSampler.state_dict()'s output, got keys {sorted(map(str, state)) if isinstance(state, dict) else type(state).__name__}")
        relations = state["relations"]
        if relations is not None and (not isinstance(relations, torch.Tensor) or relations.dim() != 2 or relations.shape[0] != self.num_relations):
            raise ValueError(f"state['relations'] must be None or a ({self.num_relations}, D) tensor, got {getattr(relations, 'shape', type(relations))}")
        counts = state["counts"]
        if not isinstance(counts, dict) or set(counts) != set(self._counts):
            raise ValueError(f"state['counts'] must have keys {sorted(self._counts)}, got {counts!r}")
        self._kmas.load_state_dict(dict(state["kmas"]))
        self._relations = None if relations is None else relations.to(self.index.device, torch.float32)
        self._relations_step = int(state["relations_step"])
        self._counts = {key: int(counts[key]) for key in self._counts}

    def ratio(self, step: int | None = None) -> float:
        """The schedule's hard share at ``step`` (default: the current step), before rounding."""
        return ratio_at(self.schedule, self.step if step is None else step)

    def num_hard(self, step: int | None = None) -> int:
        """The number of hard negatives per row at ``step``: ratio·k rounded stochastically."""
        step = self.step if step is None else step
        draw = mix_seed(self.seed ^ _ROUNDING_SALT, step) / 2.0**63  # in [0, 1), fixed by (seed, step)
        return hard_count(self.ratio(step), self.num_negs_per_pos, draw=draw)

    def _rounded_ratio(self, step: int) -> float:
        # KMASSampler takes round(ratio · k) hard columns; an exact multiple of 1/k gives num_hard
        return self.num_hard(step) / self.num_negs_per_pos

    def _relation_weights(self, query_relation: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        """w (B, R) over the index's 2·R0 relations, direction kept: forward rows only on [0, R0)."""
        if self._model is None:
            raise ValueError(
                "KMASNegativeSampler has no model: pass model=, call bind_model(model), or with "
                "pykeen.pipeline() pass training_kwargs=dict(callbacks=sampler.callback())"
            )
        step = self.step
        if self._relations is None or step - self._relations_step >= self.refresh_every:
            self._relations = relation_matrix(self._model).to(self.index.device)
            self._relations_step = step
        r0 = self.num_relations
        forward = relation_weights_from_embeddings(
            self._relations, query_relation, self._kmas.temperature, self._kmas.top_relations
        )  # (B, R0)
        weights = torch.zeros(query_relation.numel(), 2 * r0, dtype=forward.dtype, device=forward.device)
        columns = torch.arange(r0, device=forward.device)[None, :] + r0 * inverse[:, None].to(torch.int64)
        return weights.scatter_(1, columns, forward)

    # ------------------------------------------------------------------ sampling
    def corrupt_batch(self, positive_batch: torch.Tensor) -> torch.Tensor:  # noqa: D102
        """(*batch, 3) [h, r, t] -> (*batch, num_negs_per_pos, 3), PyKEEN's layout, unfiltered."""
        return self._corrupt(positive_batch)[0]

    def sample(self, positive_batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(negatives, mask): mask (*batch, k) is False only where no strict negative exists.

        A row whose every entity is a known answer has no strict negative; its slots hold uniform
        entities other than the positive and are masked out, as PyKEEN's filterers mask known
        positives. PyKEEN's own filterer, when configured, is applied on top.
        """
        negatives, valid = self._corrupt(positive_batch)
        if self.filterer is not None:
            kept = self.filterer(negative_batch=negatives)
            valid = kept if valid is None else valid & kept
        return negatives, valid

    def _corrupt(self, positive_batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if torch.utils.data.get_worker_info() is not None:
            raise ValueError(
                "KMASNegativeSampler runs in a DataLoader worker, where the model's relation "
                "representations are a stale copy: train with num_workers=0"
            )
        if not isinstance(positive_batch, torch.Tensor) or positive_batch.shape[-1:] != (3,):
            raise ValueError(f"positive_batch must be a tensor of shape (*batch, 3), got {getattr(positive_batch, 'shape', type(positive_batch))}")
        batch_shape = positive_batch.shape[:-1]
        positives = positive_batch.reshape(-1, 3).to(self.index.device, torch.int64)
        k = self.num_negs_per_pos
        total = positives.shape[0] * k
        negatives = positives.repeat_interleave(k, dim=0)  # (B·k, 3): row i·k + j is negative j of positive i
        if total == 0:
            return negatives.view(*batch_shape, k, 3).to(positive_batch.device), None

        # BasicNegativeSampler's split: consecutive equal parts of the flat sequence, one per side
        part = math.ceil(total / len(self.corruption_scheme))
        parts = []  # (rows, column, start, stop): positives `rows` fill flat slots [start, stop) of `column`
        for side_number, side in enumerate(self.corruption_scheme):
            start, stop = side_number * part, min((side_number + 1) * part, total)
            if start < stop:
                rows = torch.arange(start // k, (stop - 1) // k + 1, device=positives.device)
                parts.append((rows, _SIDES[side], start, stop))
        all_rows = torch.cat([rows for rows, *_ in parts])
        head, relation, tail = positives[all_rows].unbind(1)
        corrupt_head = torch.cat([torch.full_like(rows, column == 0, dtype=torch.bool) for rows, column, *_ in parts])
        query_entity = torch.where(corrupt_head, tail, head)
        positive = torch.where(corrupt_head, head, tail)
        query_relation = torch.where(corrupt_head, relation + self.num_relations, relation)
        sampled, valid = self._sample_rows(query_entity, query_relation, positive, relation, corrupt_head)

        valid_flat = torch.ones(total, dtype=torch.bool, device=positives.device) if valid is not None else None
        offset = 0
        for rows, column, start, stop in parts:
            first = int(rows[0]) * k
            negatives[start:stop, column] = sampled[offset : offset + rows.numel()].reshape(-1)[start - first : stop - first]
            if valid is not None:
                valid_flat[start:stop] = valid[offset : offset + rows.numel()].repeat_interleave(k)[start - first : stop - first]
            offset += rows.numel()
        negatives = negatives.view(*batch_shape, k, 3).to(positive_batch.device)
        if valid_flat is not None:
            valid_flat = valid_flat.view(*batch_shape, k).to(positive_batch.device)
        return negatives, valid_flat

    def _sample_rows(
        self,
        query_entity: torch.Tensor,
        query_relation: torch.Tensor,
        positive: torch.Tensor,
        relation: torch.Tensor,
        corrupt_head: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(rows, k) negatives for the queries, one step; valid (rows,) where a row has none strict.

        Rows whose non-excluded entities are fewer than this step's hard share cannot hold that
        many distinct hard negatives (small graphs, e.g. Nations): they get k uniform non-excluded
        entities (with replacement); rows with none at all get uniform entities other than the
        positive, reported invalid. Every other row goes through KMASSampler.
        """
        n, k, step = self.index.num_entities, self.num_negs_per_pos, self.step
        strict = self._kmas.strict
        if strict:
            start, end = self.index.known_slices(query_entity, query_relation)
            positive_known = self.index.is_known(query_entity, query_relation, positive)
            allowed = n - (end - start) - (~positive_known).to(torch.int64)
        else:
            allowed = torch.full_like(query_entity, n - 1)
        num_hard = self.num_hard(step)
        short = allowed < max(num_hard, 1)
        self._counts["rows"] += int(query_entity.numel())
        if not bool(short.any()):
            weights = self._relation_weights(relation, corrupt_head)
            return self._kmas.sample(query_entity, query_relation, positive, relation_weights=weights), None

        sampled = torch.empty(query_entity.numel(), k, dtype=torch.int64, device=query_entity.device)
        roomy = torch.nonzero(~short).squeeze(1)
        if roomy.numel() > 0:
            weights = self._relation_weights(relation[roomy], corrupt_head[roomy])
            sampled[roomy] = self._kmas.sample(
                query_entity[roomy], query_relation[roomy], positive[roomy], relation_weights=weights
            )
        else:
            self._kmas.step += 1
        short = torch.nonzero(short).squeeze(1)
        empty = allowed[short] == 0
        replaced = int((~empty).sum()) if num_hard > 0 else 0
        self._counts["short_rows"] += replaced
        self._counts["hard_replaced"] += replaced * num_hard
        self._counts["empty_rows"] += int(empty.sum())
        if replaced and not self._warned_short:
            self._warned_short = True
            warnings.warn(
                f"KMASNegativeSampler: {replaced} of {query_entity.numel()} rows at step {step} have fewer "
                f"non-excluded entities than the hard share ({num_hard}) and get uniform negatives instead "
                "(small graph or large k); stats() counts them (warned once per sampler)",
                UserWarning,
                stacklevel=2,
            )
        sampled[short] = self._uniform_rows(query_entity[short], query_relation[short], positive[short], short, empty, step)
        valid = torch.ones(query_entity.numel(), dtype=torch.bool, device=query_entity.device)
        valid[short[empty]] = False
        return sampled, (valid if bool(empty.any()) else None)

    def _uniform_rows(self, query_entity, query_relation, positive, row_ids, empty, step) -> torch.Tensor:
        """(rows, k) uniform negatives with replacement: strict where possible, else any but the positive."""
        out = torch.empty(query_entity.numel(), self.num_negs_per_pos, dtype=torch.int64, device=query_entity.device)
        seed = mix_seed(self.seed ^ _SHORT_ROW_SALT, step)
        for rows, strict in ((~empty, self._kmas.strict), (empty, False)):
            rows = torch.nonzero(rows).squeeze(1)
            if rows.numel() > 0:
                out[rows] = uniform_negatives(
                    self.index, query_entity[rows], query_relation[rows], positive[rows],
                    self.num_negs_per_pos, seed=seed, strict=strict, row_ids=row_ids[rows],
                )
        return out


class KMASTrainingCallback(TrainingCallback):
    """Binds a PyKEEN training loop's model to its KMAS sampler, before the data loader is built.

    With a sampler instance, the loop is given that instance (``pykeen.pipeline()`` hands the
    loop only the instance's class); without one, the loop's ``negative_sampler_kwargs`` get
    ``model=`` for a KMASNegativeSampler that PyKEEN builds itself (``negative_sampler="kmas"``).
    """

    def __init__(self, sampler: KMASNegativeSampler | None = None) -> None:
        super().__init__()
        if sampler is not None and not isinstance(sampler, KMASNegativeSampler):
            raise TypeError(f"sampler must be a KMASNegativeSampler or None, got {type(sampler).__name__}")
        self.sampler = sampler

    def register_training_loop(self, training_loop: Any) -> None:  # noqa: D102
        super().register_training_loop(training_loop)
        if not hasattr(training_loop, "negative_sampler"):
            raise TypeError(f"KMASTrainingCallback needs an sLCWA training loop, got {type(training_loop).__name__}")
        if self.sampler is not None:
            current = training_loop.negative_sampler
            if not (current is self.sampler or (isinstance(current, type) and issubclass(current, KMASNegativeSampler))):
                raise ValueError(f"the training loop's negative_sampler is {current!r}, not this KMASNegativeSampler")
            training_loop.negative_sampler = self.sampler
            training_loop.negative_sampler_kwargs = None
            self.sampler.bind_model(training_loop.model)
            return
        kind = negative_sampler_resolver.lookup(training_loop.negative_sampler)
        if not issubclass(kind, KMASNegativeSampler):
            raise ValueError(f"the training loop's negative_sampler is {kind.__name__}, not KMASNegativeSampler")
        if isinstance(training_loop.negative_sampler, KMASNegativeSampler):
            training_loop.negative_sampler.bind_model(training_loop.model)
        else:
            training_loop.negative_sampler_kwargs = {**(training_loop.negative_sampler_kwargs or {}), "model": training_loop.model}


# ---------------------------------------------------------------------- PyKEEN checkpoints
# PyKEEN's training-loop checkpoint (TrainingLoop._save_state / _load_state) holds the model, the
# optimizer and the global random states, never the negative sampler, and an sLCWA loop rebuilds
# its sampler on every train() call. A KMAS sampler's seed, step and cached relation
# representations therefore travel in a file beside PyKEEN's: ``<checkpoint>.kmas`` (tensors and
# plain values, written atomically, read with weights_only=True). The hooks below act only for
# loops whose negative sampler is a KMASNegativeSampler; every other loop runs PyKEEN's code alone.
KMAS_CHECKPOINT_SUFFIX = ".kmas"


def sampler_state_path(checkpoint: str | os.PathLike) -> Path:
    """Where the KMAS sampler state of PyKEEN checkpoint ``checkpoint`` lives."""
    return Path(os.fspath(checkpoint) + KMAS_CHECKPOINT_SUFFIX)


def _uses_kmas(training_loop: Any) -> bool:
    hint = getattr(training_loop, "negative_sampler", None)
    if isinstance(hint, KMASNegativeSampler):
        return True
    if hint is None:
        return False
    try:
        kind = hint if isinstance(hint, type) else negative_sampler_resolver.lookup(hint)
    except (KeyError, ValueError, TypeError):
        return False
    return isinstance(kind, type) and issubclass(kind, KMASNegativeSampler)


def _wrap_save_state(original: Callable) -> Callable:
    @functools.wraps(original)
    def _save_state(self, path, *args, **kwargs):
        original(self, path, *args, **kwargs)
        sampler = self.__dict__.get("_kmas_current_sampler")
        if sampler is None or not _uses_kmas(self):
            return
        if not isinstance(path, (str, os.PathLike)):
            warnings.warn("PyKEEN saved a checkpoint to a file object: the KMAS sampler state is not saved with it, so resuming from it will not be exact", UserWarning, stacklevel=2)
            return
        atomic_save(sampler.state_dict(), sampler_state_path(path))

    return _save_state


def _wrap_load_state(original: Callable) -> Callable:
    @functools.wraps(original)
    def _load_state(self, path, *args, **kwargs):
        result = original(self, path, *args, **kwargs)
        if _uses_kmas(self):
            side = sampler_state_path(path)
            if side.is_file():
                state = load_torch_file(side)
                if isinstance(self.negative_sampler, KMASNegativeSampler):
                    self.negative_sampler.load_state_dict(state)
                else:  # the loop builds its sampler next, in _create_training_data_loader
                    self.__dict__["_kmas_pending_state"] = state
            else:
                warnings.warn(
                    f"PyKEEN checkpoint {path} has no KMAS sampler state ({side.name}): the sampler starts at "
                    "step 0 with a new seed, so this run does not continue the checkpointed one exactly",
                    UserWarning,
                    stacklevel=2,
                )
        return result

    return _load_state


def _wrap_create_loader(original: Callable) -> Callable:
    @functools.wraps(original)
    def _create_training_data_loader(self, *args, **kwargs):
        if not _uses_kmas(self):
            return original(self, *args, **kwargs)
        state = self.__dict__.pop("_kmas_pending_state", None)
        given = self.negative_sampler_kwargs
        if state is not None:
            # build the sampler with the saved seed, so that it draws nothing from torch's generator
            seed = state["kmas"]["seed"]
            if given and given.get("seed") is not None and given["seed"] != seed:
                raise ValueError(f"negative_sampler_kwargs seed={given['seed']} differs from the checkpoint's sampler seed {seed}")
            self.negative_sampler_kwargs = {**(given or {}), "seed": seed}
        try:
            loader = original(self, *args, **kwargs)
        finally:
            self.negative_sampler_kwargs = given
        sampler = getattr(loader.dataset, "negative_sampler", None)
        if isinstance(sampler, KMASNegativeSampler):
            if sampler.model is None:  # the loop's own model is the only sensible one
                sampler.bind_model(self.model)
            if state is not None:
                sampler.load_state_dict(state)
            self.__dict__["_kmas_current_sampler"] = sampler
        return loader

    return _create_training_data_loader


def _install_checkpoint_hooks() -> None:
    from pykeen.training import SLCWATrainingLoop, TrainingLoop

    targets = ((TrainingLoop, "_save_state", _wrap_save_state), (TrainingLoop, "_load_state", _wrap_load_state),
               (SLCWATrainingLoop, "_create_training_data_loader", _wrap_create_loader))
    for owner, name, wrap in targets:
        method = owner.__dict__.get(name)
        if method is None:
            warnings.warn(f"PyKEEN's {owner.__name__}.{name} is missing (PyKEEN changed): KMAS sampler state will not travel with PyKEEN checkpoints", UserWarning, stacklevel=2)
            continue
        if not getattr(method, "_kmas_hook", False):
            wrapped = wrap(method)
            wrapped._kmas_hook = True
            setattr(owner, name, wrapped)


_install_checkpoint_hooks()

# findable by name: negative_sampler="kmas", callbacks="kmas"
negative_sampler_resolver.register(KMASNegativeSampler, raise_on_conflict=False)
callback_resolver.register(KMASTrainingCallback, raise_on_conflict=False)
