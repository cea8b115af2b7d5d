import os
from pathlib import Path

import pytest
import torch

from kmas_kernels import KGIndex


def shared_dir() -> Path:
    """The shared folder with data/ and checkpoints/: $KMAS_SHARED, else ../shared beside the repository.

    KMAS_SHARED is the one variable the project reads for it (tests and kmas-bench alike).
    """
    env = os.environ.get("KMAS_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"


def pytest_sessionstart(session):
    """Say which kmas_kernels the tests import (installed copy or source tree) and its backends, even with -q."""
    import kmas_kernels

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        backends = ", ".join(f"{name}: {reason or 'yes'}" for name, reason in kmas_kernels.available_backends().items())
        reporter.write_line(f"kmas_kernels {kmas_kernels.__version__} from {Path(kmas_kernels.__file__).parent}; torch {torch.__version__}")
        reporter.write_line(f"backends: {backends}")


def random_triples(num_entities: int, num_relations: int, num_edges: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack(
        [
            torch.randint(num_entities, (num_edges,), generator=g),
            torch.randint(num_relations, (num_edges,), generator=g),
            torch.randint(num_entities, (num_edges,), generator=g),
        ],
        dim=1,
    )


def queries_from_edges(index: KGIndex, batch: int, seed: int):
    """(query_entity, query_relation, positive) of `batch` random known edges, inverses included."""
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(index.num_edges, (batch,), generator=g)
    key = index.known_keys[pick]
    n, r = index.num_entities, index.num_relations
    return key // n // r, (key // n) % r, key % n


def weight_inputs(mode: str, batch: int, num_relations: int, seed: int, device="cpu") -> dict:
    """The relation-weight keywords of a test problem: "shared" (R, 8) or "per_row" (B, R, 8)
    embeddings, "uniform"/"weights" (B, R) weights, anything else neither (one-hot on r_b)."""
    g = torch.Generator().manual_seed(seed)
    if mode == "shared":
        inputs = {"relation_embeddings": torch.randn(num_relations, 8, generator=g)}
    elif mode == "per_row":
        inputs = {"relation_embeddings": torch.randn(batch, num_relations, 8, generator=g)}
    elif mode in ("uniform", "weights"):
        inputs = {"relation_weights": torch.rand(batch, num_relations, generator=g)}
    else:
        inputs = {}
    return {key: value.to(device) for key, value in inputs.items()}


@pytest.fixture
def small_graph():
    triples = random_triples(40, 4, 120, seed=0)
    return triples, KGIndex.from_triples(triples, num_entities=40, num_relations=4)


@pytest.fixture
def one_thread():
    """Tiny graphs: one intra-op thread avoids OpenMP oversubscription on busy shared CPUs (10-40x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
