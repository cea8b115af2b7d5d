"""Tests for kmas_kernels.data: triple-file loading and the synthetic typed KG."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import shared_dir

from kmas_kernels.data import (
    KGDataset,
    SyntheticKG,
    load_kg_folder,
    read_triples,
    synthetic_typed_kg,
)

# ---------------------------------------------------------------------------
# Loader on hand-written folders
# ---------------------------------------------------------------------------


def _write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")


def test_read_triples_skips_empty_lines(tmp_path):
    _write(tmp_path, "t.txt", "a\tr\tb\n\n  \nb\ts\tc\r\n")
    assert read_triples(tmp_path / "t.txt") == [("a", "r", "b"), ("b", "s", "c")]


def test_read_triples_column_order(tmp_path):
    _write(tmp_path, "t.txt", "r\ta\tb\n")
    assert read_triples(tmp_path / "t.txt", order="rht") == [("a", "r", "b")]
    with pytest.raises(ValueError, match="order"):
        read_triples(tmp_path / "t.txt", order="hrx")


@pytest.mark.parametrize("bad_line", ["a\tr", "a\tr\tb\tc", "a r b", "a\t\tb", "\tr\tb"])
def test_read_triples_malformed_line_names_file_and_line(tmp_path, bad_line):
    _write(tmp_path, "t.txt", f"a\tr\tb\n\n{bad_line}\nc\tr\td\n")
    with pytest.raises(ValueError, match=r"t\.txt:3"):
        read_triples(tmp_path / "t.txt")


def test_read_triples_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_triples(tmp_path / "nope.txt")


def test_load_kg_folder_contiguous_ids_in_order_of_appearance(tmp_path):
    _write(tmp_path, "train.txt", "x\tlikes\ty\ny\tlikes\tz\nz\thates\tx\n")
    _write(tmp_path, "valid.txt", "x\thates\tw\n")
    _write(tmp_path, "test.txt", "v\tknows\tx\n")
    ds = load_kg_folder(tmp_path)

    assert isinstance(ds, KGDataset)
    assert ds.name == tmp_path.name
    assert ds.entity_vocab == {"x": 0, "y": 1, "z": 2, "w": 3, "v": 4}
    assert ds.relation_vocab == {"likes": 0, "hates": 1, "knows": 2}
    assert ds.num_entities == 5 and ds.num_relations == 3
    assert ds.train.dtype == torch.long
    assert ds.train.tolist() == [[0, 0, 1], [1, 0, 2], [2, 1, 0]]
    assert ds.valid.tolist() == [[0, 1, 3]]
    assert ds.test.tolist() == [[4, 2, 0]]


def test_load_kg_folder_optional_splits_are_empty(tmp_path):
    _write(tmp_path, "train.txt", "a\tr\tb\n")
    ds = load_kg_folder(tmp_path)
    for split in (ds.valid, ds.test):
        assert split.shape == (0, 3) and split.dtype == torch.long


def test_load_kg_folder_shared_relation_vocab(tmp_path):
    _write(tmp_path / "g", "train.txt", "a\tr1\tb\nb\tr2\tc\n")
    _write(tmp_path / "g_ind", "train.txt", "p\tr2\tq\nq\tr3\tp\n")
    g = load_kg_folder(tmp_path / "g")
    ind = load_kg_folder(tmp_path / "g_ind", relation_vocab=g.relation_vocab)

    assert ind.relation_vocab == {"r1": 0, "r2": 1, "r3": 2}
    assert ind.train[:, 1].tolist() == [1, 2]
    assert g.relation_vocab == {"r1": 0, "r2": 1}  # caller's vocab is not mutated
    assert g.num_relations == 2 and ind.num_relations == 3
    assert ind.entity_vocab == {"p": 0, "q": 1}  # entities are not shared

    with pytest.raises(ValueError, match="relation_vocab"):
        load_kg_folder(tmp_path / "g", relation_vocab={"r1": 0, "r2": 5})


def test_load_kg_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing_kg"):
        load_kg_folder(tmp_path / "missing_kg")
    (tmp_path / "empty_kg").mkdir()
    with pytest.raises(FileNotFoundError, match="train.txt"):
        load_kg_folder(tmp_path / "empty_kg")
    _write(tmp_path / "bad_kg", "train.txt", "a\tr\tb\n")
    _write(tmp_path / "bad_kg", "valid.txt", "a\tr\tb\nbroken line\n")
    with pytest.raises(ValueError, match=r"valid\.txt:2"):
        load_kg_folder(tmp_path / "bad_kg")


# ---------------------------------------------------------------------------
# Loader on the real shared data (skipped when ../shared/data is absent)
# ---------------------------------------------------------------------------


def _shared_data() -> Path:
    root = shared_dir() / "data"
    if not root.is_dir():
        pytest.skip(f"{root} not found (set KMAS_SHARED to the shared folder that holds data/)")
    return root


def _line_count(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").split("\n") if line.strip())


def _check_real(ds: KGDataset, folder: Path) -> None:
    for split in ("train", "valid", "test"):
        t = getattr(ds, split)
        assert t.dtype == torch.long and t.dim() == 2 and t.shape[1] == 3
        assert t.shape[0] == _line_count(folder / f"{split}.txt")
        if t.numel():
            assert 0 <= t[:, [0, 2]].min() and t[:, [0, 2]].max() < ds.num_entities
            assert 0 <= t[:, 1].min() and t[:, 1].max() < ds.num_relations
    # vocab ids are exactly 0..n-1
    assert sorted(ds.entity_vocab.values()) == list(range(ds.num_entities))
    assert sorted(ds.relation_vocab.values()) == list(range(ds.num_relations))


def test_real_nations():
    folder = _shared_data() / "small" / "nations"
    # this copy of nations stores relation<TAB>head<TAB>tail
    ds = load_kg_folder(folder, order="rht")
    _check_real(ds, folder)
    assert ds.num_entities == 14  # the 14 nations
    assert "USA" in ds.entity_vocab


def test_real_codex_s():
    folder = _shared_data() / "codex-s"
    ds = load_kg_folder(folder)
    _check_real(ds, folder)
    assert ds.name == "codex-s"
    assert (ds.num_entities, ds.num_relations) == (2034, 42)


def test_real_grail_pair_shares_relations():
    root = _shared_data() / "grail"
    g = load_kg_folder(root / "fb237_v1")
    ind = load_kg_folder(root / "fb237_v1_ind", relation_vocab=g.relation_vocab)
    _check_real(g, root / "fb237_v1")
    _check_real(ind, root / "fb237_v1_ind")
    # every training relation keeps its id in the inductive graph
    assert all(ind.relation_vocab[r] == i for r, i in g.relation_vocab.items())
    assert ind.num_relations >= g.num_relations


# ---------------------------------------------------------------------------
# Synthetic typed KG
# ---------------------------------------------------------------------------


def _check_synthetic(kg: SyntheticKG) -> None:
    n, r, k = kg.num_entities, kg.num_relations, kg.num_types
    t = kg.triples
    assert t.dtype == torch.long and t.dim() == 2 and t.shape[1] == 3
    assert kg.entity_type.shape == (n,) and kg.relation_domain.shape == (r,)
    assert kg.relation_range.shape == (r,)
    # ids in range
    assert t[:, [0, 2]].min() >= 0 and t[:, [0, 2]].max() < n
    assert t[:, 1].min() >= 0 and t[:, 1].max() < r
    assert kg.entity_type.min() >= 0 and kg.entity_type.max() < k
    # type-consistent by construction
    assert torch.equal(kg.entity_type[t[:, 0]], kg.relation_domain[t[:, 1]])
    assert torch.equal(kg.entity_type[t[:, 2]], kg.relation_range[t[:, 1]])
    # unique rows, every relation has an edge, every type is non-empty
    assert torch.unique(t, dim=0).shape[0] == t.shape[0]
    assert (torch.bincount(t[:, 1], minlength=r) > 0).all()
    assert (torch.bincount(kg.entity_type, minlength=k) > 0).all()


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(num_entities=50, num_relations=7, num_types=50, num_edges=7),
        dict(num_entities=1, num_relations=3, num_types=1, num_edges=10),
        dict(num_entities=300, num_relations=40, num_types=3, num_edges=2000, popularity_skew=0),
        dict(num_entities=100_000, num_relations=50, num_types=20, num_edges=100_000, seed=7),
    ],
)
def test_synthetic_invariants(kwargs):
    kg = synthetic_typed_kg(**kwargs)
    _check_synthetic(kg)
    expected_edges = kwargs.get("num_edges", 10 * kwargs.get("num_entities", 10_000))
    assert kg.triples.shape[0] <= expected_edges


def test_synthetic_large_has_few_duplicates():
    kg = synthetic_typed_kg(num_entities=100_000, num_edges=100_000)
    assert kg.triples.shape[0] > 0.95 * 100_000


def test_synthetic_deterministic():
    a = synthetic_typed_kg(2000, 10, 5, seed=3)
    b = synthetic_typed_kg(2000, 10, 5, seed=3)
    c = synthetic_typed_kg(2000, 10, 5, seed=4)
    for name in ("triples", "entity_type", "relation_domain", "relation_range"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.entity_type, c.entity_type)
    assert torch.equal(a.split(seed=1).test, b.split(seed=1).test)


def test_synthetic_split():
    kg = synthetic_typed_kg(1000, 10, 4, num_edges=5000, seed=1)
    ds = kg.split(valid_fraction=0.1, test_fraction=0.2, seed=0)
    e = kg.triples.shape[0]
    assert isinstance(ds, KGDataset) and ds.name == "synthetic"
    assert ds.valid.shape == (round(0.1 * e), 3) and ds.test.shape == (round(0.2 * e), 3)
    assert ds.train.shape[0] + ds.valid.shape[0] + ds.test.shape[0] == e
    # the splits are a disjoint partition of the triples
    together = torch.cat([ds.train, ds.valid, ds.test])
    assert torch.equal(torch.unique(together, dim=0), torch.unique(kg.triples, dim=0))
    assert ds.num_entities == kg.num_entities and ds.num_relations == kg.num_relations
    assert ds.entity_vocab["17"] == 17 and ds.relation_vocab["3"] == 3

    empty = kg.split(valid_fraction=0.0, test_fraction=0.0)
    assert empty.valid.shape == (0, 3) and empty.train.shape[0] == e
    for bad in (dict(valid_fraction=-0.1), dict(test_fraction=1.0), dict(valid_fraction=0.6, test_fraction=0.5)):
        with pytest.raises(ValueError, match="fraction"):
            kg.split(**bad)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(num_entities=0), "num_entities"),
        (dict(num_entities=2.5), "num_entities"),
        (dict(num_entities=True), "num_entities"),
        (dict(num_relations=0), "num_relations"),
        (dict(num_types=-1), "num_types"),
        (dict(num_entities=5, num_types=6), "num_types"),
        (dict(num_edges=0), "num_edges"),
        (dict(num_relations=30, num_edges=10), "num_edges"),
        (dict(seed=1.5), "seed"),
        (dict(popularity_skew=-1.0), "popularity_skew"),
        (dict(num_entities=10**9, num_relations=10**2, num_edges=1000), "num_entities"),
    ],
)
def test_synthetic_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        synthetic_typed_kg(**kwargs)


# ---------------------------------------------------------------------------
# vectorised split (RangeVocab) and the on-device builder


# Recorded with the per-entity dict version of split() (before RangeVocab): the graph and its split
# must stay integer-identical for the same seed.
@pytest.mark.parametrize("args, seed, skew, expected", [
    ((50, 4, 3, 300), 0, 1.0, "c50dc2ce4b19622d"),
    ((1000, 10, 4, 5000), 1, 1.0, "13a892148ea0d441"),
    ((2000, 10, 5, None), 3, 0.0, "cd242274303eac38"),
])
def test_synthetic_output_is_unchanged(args, seed, skew, expected):
    import hashlib

    kg = synthetic_typed_kg(*args, seed=seed, popularity_skew=skew)
    ds = kg.split(seed=seed)
    h = hashlib.sha256()
    for t in (kg.triples, kg.entity_type, kg.relation_domain, kg.relation_range, ds.train, ds.valid, ds.test):
        h.update(t.numpy().tobytes())
    h.update(repr(sorted(dict(ds.entity_vocab).items())).encode())
    h.update(repr(sorted(dict(ds.relation_vocab).items())).encode())
    assert h.hexdigest()[:16] == expected


def test_range_vocab_is_the_identity_dict():
    from kmas_kernels.data import RangeVocab

    vocab = RangeVocab(12)
    expected = {str(i): i for i in range(12)}
    assert vocab == expected and expected == vocab and dict(vocab) == expected
    assert len(vocab) == 12 and list(vocab) == list(expected) and "11" in vocab
    for missing in ("12", "-1", "07", "+7", "1.0", " 1", "٣", 3, None):
        assert missing not in vocab
        with pytest.raises(KeyError):
            vocab[missing]
    assert vocab == RangeVocab(12) and vocab != RangeVocab(11)
    with pytest.raises(ValueError, match="n must be"):
        RangeVocab(-1)


def test_split_of_a_large_graph_builds_no_per_entity_dict():
    kg = synthetic_typed_kg(200_000, 5, 3, num_edges=20_000, seed=0)
    ds = kg.split(seed=0)
    assert ds.num_entities == 200_000 and ds.entity_vocab["199999"] == 199_999
    assert type(ds.entity_vocab).__name__ == "RangeVocab"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_synthetic_on_the_gpu():
    kg = synthetic_typed_kg(5000, 10, 4, num_edges=20_000, seed=2, device="cuda")
    assert kg.triples.is_cuda and kg.entity_type.is_cuda
    _check_synthetic(SyntheticKG(kg.triples.cpu(), kg.entity_type.cpu(), kg.relation_domain.cpu(), kg.relation_range.cpu(),
                                 kg.num_entities, kg.num_relations, kg.num_types))
    ds = kg.split(seed=0)
    assert ds.train.is_cuda


def test_synthetic_device_argument_on_cpu_is_the_default():
    a = synthetic_typed_kg(300, 4, 3, num_edges=1000, seed=5)
    b = synthetic_typed_kg(300, 4, 3, num_edges=1000, seed=5, device="cpu")
    assert torch.equal(a.triples, b.triples) and torch.equal(a.entity_type, b.entity_type)
