"""Synthetic typed knowledge graphs for tests and benchmarks.

Every entity has one type; every relation has a domain type (of its heads) and
a range type (of its tails). Edges are sampled so they are type-consistent by
construction, which gives tests a ground truth: a good hard negative for
(h, r, ?) is an entity of type ``relation_range[r]``.

Everything is vectorised torch on a seeded ``torch.Generator``; 10^7 entities
and 10^7 edges build in a few seconds on a couple of CPU cores.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import torch

from .triples import KGDataset, RangeVocab


@dataclass
class SyntheticKG:
    """A typed KG: edges plus the type information they were sampled from.

    Attributes:
        triples: LongTensor (E, 3), [head, relation, tail]; unique rows, sorted,
            original relations only.
        entity_type: LongTensor (N,), type of each entity in [0, num_types).
        relation_domain: LongTensor (R,), the type of every head of relation r.
        relation_range: LongTensor (R,), the type of every tail of relation r.
    """

    triples: torch.Tensor = field(repr=False)
    entity_type: torch.Tensor = field(repr=False)
    relation_domain: torch.Tensor = field(repr=False)
    relation_range: torch.Tensor = field(repr=False)
    num_entities: int
    num_relations: int
    num_types: int

    def split(self, valid_fraction: float = 0.05, test_fraction: float = 0.05, seed: int = 0) -> KGDataset:
        """Random edge split into a KGDataset.

        valid/test get ``round(E * fraction)`` edges each, train the rest. The
        vocabs map str(id) -> id over all entities/relations (``RangeVocab``: no
        per-entity Python), so dataset ids equal the ids used by ``entity_type`` etc.
        The permutation is drawn on the CPU (the same split for the same seed
        wherever the graph lives); the splits stay on the triples' device.
        """
        for name, frac in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
            if not (isinstance(frac, (int, float)) and 0.0 <= frac < 1.0):
                raise ValueError(f"{name} must be in [0, 1), got {frac!r}")
        if valid_fraction + test_fraction >= 1.0:
            raise ValueError(
                f"valid_fraction + test_fraction must be < 1, got {valid_fraction} + {test_fraction}"
            )
        seed = _check_int("seed", seed, minimum=None)
        gen = torch.Generator().manual_seed(seed)
        num_edges = self.triples.shape[0]
        perm = torch.randperm(num_edges, generator=gen).to(self.triples.device)
        n_valid = round(num_edges * valid_fraction)
        n_test = round(num_edges * test_fraction)
        return KGDataset(
            train=self.triples[perm[n_valid + n_test :]],
            valid=self.triples[perm[:n_valid]],
            test=self.triples[perm[n_valid : n_valid + n_test]],
            entity_vocab=RangeVocab(self.num_entities),
            relation_vocab=RangeVocab(self.num_relations),
            name="synthetic",
        )

    def __repr__(self) -> str:
        return (
            f"SyntheticKG(num_entities={self.num_entities}, num_relations={self.num_relations}, "
            f"num_types={self.num_types}, num_edges={self.triples.shape[0]})"
        )


def _check_int(name: str, value, minimum: int | None = 1) -> int:
    """Return value as an int, or raise ValueError naming the argument."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        value = operator.index(value)  # accepts int and numpy ints, rejects floats
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _zipf_probs(n: int, gen: torch.Generator, exponent: float = 1.0) -> torch.Tensor:
    """Zipf-like probabilities over n items, in random rank order: (n,) float64 on gen's device."""
    w = torch.arange(1, n + 1, dtype=torch.float64, device=gen.device).pow(-exponent)
    return (w / w.sum())[torch.randperm(n, generator=gen, device=gen.device)]


def _sample_categorical(probs: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """n draws from a categorical distribution by inverse CDF: (n,) int64.

    searchsorted instead of torch.multinomial: it has no sample-count limits
    and is fast for 10^7 draws.
    """
    cdf = probs.cumsum(0)
    u = torch.rand(n, generator=gen, dtype=torch.float64, device=gen.device) * cdf[-1]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=probs.numel() - 1)


def _type_sizes(num_entities: int, num_types: int, gen: torch.Generator) -> torch.Tensor:
    """Zipf-skewed type sizes, each >= 1, summing to num_entities: (T,) int64."""
    # One entity per type guarantees non-empty types; the rest is split by
    # rounding a cumulative Zipf share, which sums exactly to the remainder.
    rest = num_entities - num_types
    cum = torch.floor(_zipf_probs(num_types, gen).cumsum(0) * rest).long()
    cum[-1] = rest
    return 1 + torch.diff(cum, prepend=cum.new_zeros(1))


def _sample_members(
    members: torch.Tensor,
    offsets: torch.Tensor,
    sizes: torch.Tensor,
    types: torch.Tensor,
    skew: float,
    gen: torch.Generator,
) -> torch.Tensor:
    """For each type in ``types`` (E,), pick an entity of that type: (E,) int64.

    ``members`` lists entity ids grouped by type (type t occupies
    members[offsets[t] : offsets[t] + sizes[t]], in random order). The position
    inside the group is ``floor(size * u ** (1 + skew))``: uniform for skew=0,
    otherwise a power law favouring the first (randomly chosen) entities.
    """
    size = sizes[types]
    u = torch.rand(types.shape[0], generator=gen, dtype=torch.float64, device=gen.device)
    if skew:
        u = u.pow_(1.0 + skew)
    pos = torch.minimum((u * size).long(), size - 1)  # guard float rounding up to size
    return members[offsets[types] + pos]


def synthetic_typed_kg(
    num_entities: int = 10_000,
    num_relations: int = 20,
    num_types: int = 10,
    num_edges: int | None = None,
    seed: int = 0,
    *,
    popularity_skew: float = 1.0,
    device: torch.device | str | None = None,
) -> SyntheticKG:
    """Sample a random typed KG.

    Construction:
      * type sizes are Zipf-skewed (every type non-empty), entities are assigned
        to types by a random permutation;
      * each relation gets a uniformly random domain and range type, and a
        Zipf-skewed frequency;
      * the first ``num_relations`` edges use relations 0..R-1 once each (so
        every relation has an edge), the rest draw a relation by frequency;
      * the head is drawn among entities of the domain type, the tail among
        entities of the range type, with a power-law popularity skew
        (``popularity_skew=0`` gives uniform choice);
      * duplicate triples are removed, so E <= num_edges (close to it unless
        the typed graph is small and dense).

    Args:
        num_entities: N >= 1.
        num_relations: R >= 1.
        num_types: T, 1 <= T <= N.
        num_edges: number of sampled edges before dedup, >= R; default 10 * N.
        seed: seed of the torch.Generator; the result is deterministic in it.
        popularity_skew: >= 0, degree skew inside a type.
        device: where to build (default CPU). On a GPU the same construction runs
            on a generator of that device: a graph of the same law, built in a
            fraction of the time, but not the CPU graph of the same seed
            (each device has its own random stream). For GPU benchmarks.

    Returns:
        SyntheticKG with triples (E, 3) sorted by (head, relation, tail).
    """
    num_entities = _check_int("num_entities", num_entities)
    num_relations = _check_int("num_relations", num_relations)
    num_types = _check_int("num_types", num_types)
    if num_types > num_entities:
        raise ValueError(f"num_types must be <= num_entities, got {num_types} > {num_entities}")
    num_edges = 10 * num_entities if num_edges is None else _check_int("num_edges", num_edges)
    if num_edges < num_relations:
        raise ValueError(
            f"num_edges must be >= num_relations (every relation needs an edge), "
            f"got {num_edges} < {num_relations}"
        )
    seed = _check_int("seed", seed, minimum=None)
    if not (isinstance(popularity_skew, (int, float)) and not isinstance(popularity_skew, bool)
            and math.isfinite(popularity_skew) and popularity_skew >= 0):
        raise ValueError(f"popularity_skew must be a finite number >= 0, got {popularity_skew!r}")
    # the dedup key (h * R + r) * N + t must fit in int64
    if num_entities * num_entities * num_relations >= 2**63:
        raise ValueError("num_entities**2 * num_relations must be < 2**63 (int64 triple key)")

    device = torch.device("cpu" if device is None else device)
    gen = torch.Generator(device=device).manual_seed(seed)

    # Entities: members[i] has type sorted_types[i]; members is a random
    # permutation, so types are scattered over ids and groups are shuffled.
    sizes = _type_sizes(num_entities, num_types, gen)
    offsets = sizes.cumsum(0) - sizes
    members = torch.randperm(num_entities, generator=gen, device=device)
    entity_type = torch.empty(num_entities, dtype=torch.long, device=device)
    entity_type[members] = torch.repeat_interleave(torch.arange(num_types, device=device), sizes)

    # Relations: typed signature and skewed frequency.
    relation_domain = torch.randint(num_types, (num_relations,), generator=gen, device=device)
    relation_range = torch.randint(num_types, (num_relations,), generator=gen, device=device)
    rel = torch.cat([
        torch.arange(num_relations, device=device),
        _sample_categorical(_zipf_probs(num_relations, gen), num_edges - num_relations, gen),
    ])

    head = _sample_members(members, offsets, sizes, relation_domain[rel], popularity_skew, gen)
    tail = _sample_members(members, offsets, sizes, relation_range[rel], popularity_skew, gen)

    # Dedup on one int64 key; unique also sorts, making the output canonical.
    key = torch.unique((head * num_relations + rel) * num_entities + tail)
    tail = key % num_entities
    hr = key // num_entities
    triples = torch.stack([hr // num_relations, hr % num_relations, tail], dim=1)

    return SyntheticKG(
        triples=triples,
        entity_type=entity_type,
        relation_domain=relation_domain,
        relation_range=relation_range,
        num_entities=num_entities,
        num_relations=num_relations,
        num_types=num_types,
    )
