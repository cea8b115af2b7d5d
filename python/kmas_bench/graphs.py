"""The graphs benchmarked: the embedded synthetic typed KG (default) or a data folder.

Synthetic: ``synthetic_typed_kg(N, 50 relations, 20 types, 5 N edges)`` split 90 / 5 / 5; the
samplers index the training part, valid + test are the held-out true triples that count as
false negatives. A folder: ``head<TAB>relation<TAB>tail`` train.txt / valid.txt / test.txt.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

EDGES_PER_ENTITY = 5
NUM_RELATIONS = 50
NUM_TYPES = 20


@dataclass
class BenchGraph:
    name: str
    train: torch.Tensor  # (E, 3) [h, r, t]
    valid: torch.Tensor
    test: torch.Tensor
    num_entities: int
    num_base_relations: int
    entity_type: torch.Tensor | None = None  # synthetic only
    relation_domain: torch.Tensor | None = None
    relation_range: torch.Tensor | None = None

    @property
    def typed(self) -> bool:
        return self.entity_type is not None

    def describe(self) -> dict:
        return {"name": self.name, "num_entities": self.num_entities, "num_relations": self.num_base_relations,
                "num_train": int(self.train.shape[0]), "num_valid": int(self.valid.shape[0]),
                "num_test": int(self.test.shape[0]), "typed": self.typed}


def synthetic_graph(num_entities: int, seed: int = 0) -> BenchGraph:
    from kmas_kernels.data import synthetic_typed_kg

    kg = synthetic_typed_kg(num_entities, num_relations=NUM_RELATIONS, num_types=min(NUM_TYPES, num_entities),
                            num_edges=max(EDGES_PER_ENTITY * num_entities, NUM_RELATIONS), seed=seed)
    ds = kg.split(0.05, 0.05, seed=seed)
    return BenchGraph(f"synthetic typed KG (N={num_entities})", ds.train, ds.valid, ds.test, kg.num_entities,
                      kg.num_relations, kg.entity_type, kg.relation_domain, kg.relation_range)


def folder_graph(path: str) -> BenchGraph:
    from kmas_kernels.data import load_kg_folder

    ds = load_kg_folder(path)
    return BenchGraph(str(path), ds.train, ds.valid, ds.test, ds.num_entities, ds.num_relations)


def load_graph(num_entities: int | None = None, data: str | None = None, seed: int = 0) -> BenchGraph:
    return folder_graph(data) if data else synthetic_graph(num_entities, seed)
